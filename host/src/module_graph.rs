//! No host module imports from a module that imports it back: the graph of
//! which top-level module (`bus`, `run`, `outbox`, ...) names which, read
//! from the sources, has no cycle. A cycle is named, e.g. `bus -> run -> bus`.
//!
//! A module "names" another through a `crate::x` path (in a `use` or in
//! code), a `use crate::{x, y::z}` group, or a `super::` path that leaves its
//! own top-level module. Comments are skipped; the binary's `cli` is not part
//! of the library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file under `src` (`bus/ingest/mod.rs` → `bus::ingest`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The identifiers at the top of a `{...}` group starting at `text` (just
/// after its `{`): `{a, b::c, d::{e, f}}` → `a`, `b`, `d`.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut at_head, mut current) = (0usize, true, String::new());
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_head = true,
            c if depth == 0 && at_head && (c.is_alphanumeric() || c == '_') => current.push(c),
            _ if depth == 0 && at_head && !current.is_empty() => {
                heads.push(std::mem::take(&mut current));
                at_head = false;
            }
            _ => {}
        }
    }
    if !current.is_empty() {
        heads.push(current);
    }
    heads
}

/// The first identifier of `text`.
fn ident(text: &str) -> String {
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The top-level modules that `code` (of the module at `path`) names.
fn named_modules(code: &str, path: &[String]) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let code: String = code
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            named.extend(group_heads(group));
        } else {
            named.insert(ident(rest));
        }
    }
    for (at, _) in code.match_indices("super::") {
        // Count the `super::`s of this path, then resolve it from `path`.
        if code[..at].ends_with("super::") {
            continue;
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            ups += 1;
            rest = after;
        }
        if ups < path.len() {
            continue; // Still inside its own top-level module.
        }
        if let Some(group) = rest.strip_prefix('{') {
            named.extend(group_heads(group));
        } else {
            named.insert(ident(rest));
        }
    }
    named
}

/// The graph of the library under `src` (the binary's `main.rs` and `cli/` left out).
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    sources(src, &mut files);
    let top: BTreeSet<String> = files
        .iter()
        .filter_map(|file| module_path(src, file).first().cloned())
        .filter(|name| !["lib", "main", "cli"].contains(&name.as_str()))
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let path = module_path(src, file);
        let Some(own) = path.first() else { continue };
        if !top.contains(own) {
            continue;
        }
        let code = std::fs::read_to_string(file).unwrap();
        let edges = graph.entry(own.clone()).or_default();
        for name in named_modules(&code, &path) {
            if top.contains(&name) && name != *own {
                edges.insert(name);
            }
        }
    }
    graph
}

/// Every cycle of `graph` found by a depth-first search, each as
/// `a -> b -> a`.
fn cycles(graph: &Graph) -> Vec<String> {
    fn visit(node: &str, graph: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>, found: &mut Vec<String>) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            found.push(cycle.join(" -> "));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, found);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn no_host_module_imports_from_a_module_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.contains_key("run") && graph.contains_key("bus"), "{graph:?}");
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between host modules: {found:?}\ngraph: {graph:#?}"
    );
}

#[test]
fn the_graph_sees_paths_groups_and_super_across_folders() {
    let code = "use crate::{bus::{self, Subjects}, outbox};\nuse super::super::run::X;\n\
                // crate::worker is a comment\nlet x = crate::clock::now();\nuse super::sibling;";
    let named = named_modules(code, &["bus".to_owned(), "ingest".to_owned()]);
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    assert_eq!(named, ["bus", "clock", "outbox", "run"]);
    let mut graph = Graph::new();
    graph.entry("bus".into()).or_default().insert("run".into());
    graph.entry("run".into()).or_default().insert("bus".into());
    graph.entry("model".into()).or_default();
    assert_eq!(cycles(&graph), ["bus -> run -> bus"]);
}
