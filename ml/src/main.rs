//! `edgewise-ml`: the cloud side of glucose forecasting.
//!
//! - `edgewise-ml train`: fit the model on recordings (held-out subjects
//!   left out), score it, write the model file the plugin signs as its asset.
//! - `edgewise-ml report`: replay the plugin with the model and the two
//!   baselines, write `docs/forecast.md` ([`edgewise_ml::report`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use edgewise_ml::data::DataSet;
use edgewise_ml::train;

#[derive(Debug, Parser)]
#[command(name = "edgewise-ml", about = "Train and evaluate the glucose forecasting model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fit the model on iglu recordings and write the model file.
    Train(TrainArgs),
    /// Replay the plugin with the model and the two baselines over held-out
    /// subjects; write docs/forecast.md and its plots.
    Report(edgewise_ml::report::ReportArgs),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// Recordings to train on (iglu CSV, or JSON lines for `*.jsonl`: what
    /// `edgewise record` and `edgewise export` write), repeatable; their
    /// held-out subjects are scored, never trained on [default: the shipped
    /// Hall2018].
    #[arg(long = "train", value_name = "FILE")]
    train: Vec<PathBuf>,
    /// Recordings of other subjects to score the model on, repeatable
    /// [default: the shipped ExampleData5Subjects].
    #[arg(long = "evaluate", value_name = "FILE")]
    evaluate: Vec<PathBuf>,
    /// Where to write the model file [default:
    /// plugins/glucose-forecast/model/forecast.json].
    #[arg(long, value_name = "FILE.json")]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Train(args) => train_command(args),
        Command::Report(args) => edgewise_ml::report::run(args),
    }
}

fn train_command(args: TrainArgs) -> anyhow::Result<()> {
    let root = edgewise_procs::workspace::root();
    let or_default = |files: Vec<PathBuf>, default: &str| {
        if files.is_empty() {
            vec![root.join(default)]
        } else {
            files
        }
    };
    let load = |files: Vec<PathBuf>| {
        files
            .iter()
            .map(|f| DataSet::load(f))
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let training = load(or_default(args.train, "tests/data/cgm/Hall2018_processed.csv"))?;
    let evaluation = load(or_default(args.evaluate, "tests/data/cgm/ExampleData5Subjects.csv"))?;
    let model = train::train(&training, &evaluation)?;
    let out = args
        .out
        .unwrap_or_else(|| root.join("plugins/glucose-forecast/model/forecast.json"));
    std::fs::write(&out, model.to_bytes()?).with_context(|| format!("cannot write {}", out.display()))?;
    for horizon in &model.horizons {
        if let Some(fit) = &horizon.fit {
            eprintln!(
                "{} min: lambda {}, {} samples, cross-validated RMSE {:.2} mg/dL",
                horizon.minutes, fit.lambda, fit.samples, fit.cv_rmse
            );
        }
    }
    for e in &model.evaluation {
        eprintln!(
            "{} ({} held-out subjects), {} min: RMSE {:.2} (last value {:.2}, linear {:.2}), MAE {:.2}, {} forecasts",
            e.data_set,
            e.subjects,
            e.horizon_min,
            e.rmse,
            e.rmse_last_value,
            e.rmse_linear_extrapolation,
            e.mae,
            e.forecasts
        );
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
