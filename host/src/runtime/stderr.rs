//! A plugin's stderr: the last bytes it wrote, kept for the message of a
//! trap (a Rust panic prints there). Writing never fails and never waits:
//! wasmtime-wasi's `MemoryOutputPipe` traps the plugin once it has written
//! its capacity in all, so a plugin that prints a little now and then would
//! fail after hours for no fault of its own.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of stderr kept (enough for a panic message).
pub(crate) const STDERR_TAIL_BYTES: usize = 16 << 10;

/// The tail of a plugin's stderr, shared by every stream the plugin opens on it.
#[derive(Clone, Default)]
pub(crate) struct StderrTail {
    inner: Arc<Mutex<Tail>>,
}

#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    /// Bytes written in all, kept or not.
    written: u64,
}

impl StderrTail {
    fn append(&self, data: &[u8]) {
        let mut tail = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        tail.written = tail.written.saturating_add(data.len() as u64);
        let keep = data.len().min(STDERR_TAIL_BYTES);
        tail.bytes.extend(&data[data.len() - keep..]);
        let excess = tail.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        tail.bytes.drain(..excess);
    }

    /// What was written after the first `seen` bytes (as much of it as is
    /// kept), and the count of bytes written so far.
    pub(crate) fn since(&self, seen: u64) -> (Vec<u8>, u64) {
        let tail = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = usize::try_from(tail.written.saturating_sub(seen)).unwrap_or(usize::MAX);
        let skip = tail.bytes.len().saturating_sub(fresh);
        (tail.bytes.iter().skip(skip).copied().collect(), tail.written)
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(STDERR_TAIL_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_kept_and_writing_never_fails() {
        let tail = StderrTail::default();
        let mut stream = tail.clone();
        stream.write(Bytes::from_static(b"hello ")).unwrap();
        assert_eq!(tail.since(0), (b"hello ".to_vec(), 6));
        // Far more than the capacity: only the end is kept, nothing fails.
        for _ in 0..100 {
            stream.write(Bytes::from(vec![b'x'; 1000])).unwrap();
        }
        stream.write(Bytes::from_static(b"panicked at the end")).unwrap();
        let (fresh, written) = tail.since(6);
        assert_eq!(written, 6 + 100_000 + 19);
        assert_eq!(fresh.len(), STDERR_TAIL_BYTES);
        assert!(fresh.ends_with(b"panicked at the end"));
        // Only what is new since the last look.
        stream.write(Bytes::from_static(b"again")).unwrap();
        assert_eq!(tail.since(written), (b"again".to_vec(), written + 5));
    }
}
