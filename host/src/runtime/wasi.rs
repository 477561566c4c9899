//! The WASI surface a plugin gets, and why no WASI call can block.
//!
//! A component built with Rust's std imports most of WASI 0.2, so every
//! interface must link. But a host call cannot be interrupted by the epoch
//! deadline, and wasmtime-wasi's synchronous bindings wait inside host calls
//! (`pollable.block`, `poll`, the `blocking-*` stream methods) through
//! `in_tokio`, which also calls `Handle::block_on` and so panics ("cannot
//! start a runtime from within a runtime") when the calling thread is inside
//! a tokio runtime. This module links wasmtime-wasi, then shadows every such
//! function with a version that polls its future exactly once, without any
//! runtime: ready, it returns the result; not ready, the call traps with
//! [`WouldBlock`] (`blocking-call`). A plugin therefore never waits: no
//! `sleep`, no blocking read. The monotonic clock's `subscribe-*` are
//! shadowed too, so that timers follow the plugin's [`PluginClock`] rather
//! than tokio's. Sockets are refused (`access-denied`) without creating any;
//! there are no preopened directories, so no file can be reached; stdin is
//! empty. WASI resources live in a table bounded by
//! [`super::limits::MAX_WASI_RESOURCES`].
//!
//! [`PluginClock`]: super::clock::PluginClock

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi::p2::bindings::io::streams::{HostInputStream as _, HostOutputStream as _};
use wasmtime_wasi::p2::bindings::sockets::network::ErrorCode;
use wasmtime_wasi::p2::bindings::sync::io::streams::{Host as _, StreamError as WitStreamError};
use wasmtime_wasi::p2::bindings::sync::sockets::udp_create_socket::IpAddressFamily;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, Pollable, StreamError, UdpSocket, subscribe};

use super::clock::MonotonicClock;
use super::host_api::InstanceState;

/// The WASI 0.2 version wasmtime-wasi 48 defines; the linker matches any
/// 0.2.x import of a plugin to it. Shadowing must use this exact name.
const WASI: &str = "0.2.12";

/// A plugin called a WASI function that would have had to wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("called `{0}`, which would block")]
pub(crate) struct WouldBlock(pub(crate) &'static str);

/// Link WASI for plugins: wasmtime-wasi's synchronous bindings, with every
/// function that could block or enter a tokio runtime replaced.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let shadowed = shadow_poll(linker)
        .and_then(|()| shadow_streams(linker))
        .and_then(|()| shadow_clock(linker))
        .and_then(|()| shadow_sockets(linker));
    linker.allow_shadowing(false);
    shadowed
}

/// Poll `future` once, with no runtime and a waker that does nothing: its
/// output if it is ready now.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// The result of a stream operation as WIT sees it: a stream error becomes
/// the guest's `stream-error`, a trap stays a trap.
fn stream_result<T>(
    state: &mut InstanceState,
    result: Result<T, StreamError>,
) -> wasmtime::Result<Result<T, WitStreamError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(state.table.convert_stream_error(error)?)),
    }
}

type Store<'a> = StoreContextMut<'a, InstanceState>;

fn shadow_poll(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    let mut poll = linker.instance(&format!("wasi:io/poll@{WASI}"))?;
    poll.func_wrap(
        "poll",
        |mut store: Store<'_>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let table = &mut store.data_mut().table;
            match now_or_never(table.poll(pollables)) {
                Some(ready) => Ok((ready?,)),
                None => Err(WouldBlock("wasi:io/poll.poll").into()),
            }
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |mut store: Store<'_>, (pollable,): (Resource<DynPollable>,)| {
            let table = &mut store.data_mut().table;
            match now_or_never(table.ready(pollable)) {
                Some(ready) => Ok((ready?,)),
                // `ready` polls once itself; a future that still is not
                // done means not ready.
                None => Ok((false,)),
            }
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: Store<'_>, (pollable,): (Resource<DynPollable>,)| {
            let table = &mut store.data_mut().table;
            match now_or_never(table.block(pollable)) {
                Some(done) => done,
                None => Err(WouldBlock("wasi:io/poll.pollable.block").into()),
            }
        },
    )?;
    Ok(())
}

fn shadow_streams(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    let mut streams = linker.instance(&format!("wasi:io/streams@{WASI}"))?;
    // Dropping a stream cancels its background work: immediate for the
    // in-memory stdio streams plugins have.
    streams.resource(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut store, rep| {
            let table = &mut store.data_mut().table;
            let mut stream = table.delete(Resource::<DynOutputStream>::new_own(rep))?;
            now_or_never(stream.cancel());
            Ok(())
        },
    )?;
    streams.resource(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut store, rep| {
            let table = &mut store.data_mut().table;
            let mut stream = table.delete(Resource::<DynInputStream>::new_own(rep))?;
            now_or_never(stream.cancel());
            Ok(())
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Store<'_>, (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            let state = store.data_mut();
            let name = "wasi:io/streams.output-stream.blocking-write-and-flush";
            let result = now_or_never(state.table.blocking_write_and_flush(stream, bytes)).ok_or(WouldBlock(name))?;
            Ok((stream_result(state, result)?,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: Store<'_>, (stream, len): (Resource<DynOutputStream>, u64)| {
            let state = store.data_mut();
            let name = "wasi:io/streams.output-stream.blocking-write-zeroes-and-flush";
            let result =
                now_or_never(state.table.blocking_write_zeroes_and_flush(stream, len)).ok_or(WouldBlock(name))?;
            Ok((stream_result(state, result)?,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store: Store<'_>, (stream,): (Resource<DynOutputStream>,)| {
            let state = store.data_mut();
            let name = "wasi:io/streams.output-stream.blocking-flush";
            let result = now_or_never(state.table.blocking_flush(stream)).ok_or(WouldBlock(name))?;
            Ok((stream_result(state, result)?,))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: Store<'_>, (out, from, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let state = store.data_mut();
            let name = "wasi:io/streams.output-stream.blocking-splice";
            let result = now_or_never(state.table.blocking_splice(out, from, len)).ok_or(WouldBlock(name))?;
            Ok((stream_result(state, result)?,))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: Store<'_>, (stream, len): (Resource<DynInputStream>, u64)| {
            let state = store.data_mut();
            let name = "wasi:io/streams.input-stream.blocking-read";
            let result = now_or_never(state.table.blocking_read(stream, len)).ok_or(WouldBlock(name))?;
            Ok((stream_result(state, result)?,))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store: Store<'_>, (stream, len): (Resource<DynInputStream>, u64)| {
            let state = store.data_mut();
            let name = "wasi:io/streams.input-stream.blocking-skip";
            let result = now_or_never(state.table.blocking_skip(stream, len)).ok_or(WouldBlock(name))?;
            Ok((stream_result(state, result)?,))
        },
    )?;
    Ok(())
}

/// A deadline on the plugin's monotonic clock.
struct Deadline {
    clock: Arc<MonotonicClock>,
    at_ns: u64,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Deadline {
    async fn ready(&mut self) {
        if self.clock.now_ns() < self.at_ns {
            // Not yet: never resolves, so polling it once says "not ready".
            std::future::pending::<()>().await;
        }
    }
}

fn subscribe_at(state: &mut InstanceState, at_ns: u64) -> wasmtime::Result<(Resource<DynPollable>,)> {
    let deadline = Deadline {
        clock: state.monotonic.clone(),
        at_ns,
    };
    let deadline = state.table.push(deadline)?;
    Ok((subscribe(&mut state.table, deadline)?,))
}

fn shadow_clock(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    let mut clock = linker.instance(&format!("wasi:clocks/monotonic-clock@{WASI}"))?;
    clock.func_wrap("subscribe-duration", |mut store: Store<'_>, (duration,): (u64,)| {
        let state = store.data_mut();
        let at = state.monotonic.now_ns().saturating_add(duration);
        subscribe_at(state, at)
    })?;
    clock.func_wrap("subscribe-instant", |mut store: Store<'_>, (when,): (u64,)| {
        subscribe_at(store.data_mut(), when)
    })?;
    Ok(())
}

fn shadow_sockets(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    // wasmtime-wasi's version enters tokio before looking at permissions;
    // plugins get no network anyway (TCP and name lookup are refused by the
    // `WasiCtx`, see `instance::build_wasi`).
    linker
        .instance(&format!("wasi:sockets/udp-create-socket@{WASI}"))?
        .func_wrap(
            "create-udp-socket",
            |_store: Store<'_>, (_family,): (IpAddressFamily,)| {
                Ok((Err::<Resource<UdpSocket>, _>(ErrorCode::AccessDenied),))
            },
        )?;
    Ok(())
}
