//! The server's log captured in memory, for tests (this crate's, and fluo-testkit's through
//! the `test-support` feature): a `tracing-subscriber` writer whose text can be read back.

use std::sync::{Arc, Mutex};

/// An in-memory log: every clone writes to, and reads, the same bytes.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// What was logged so far, a line an item.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(String::from).collect()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

/// Captures the process's log from here on as an operator gets it (fluo's default filter,
/// [`crate::log_filter`] without `RUST_LOG`), as the process's global subscriber: call it once
/// per test binary, before the server starts.
pub fn capture_operator_log() -> LogBuffer {
    let buf = LogBuffer::default();
    tracing_subscriber::fmt()
        .with_env_filter(crate::log_filter(None))
        .with_ansi(false)
        .with_writer(buf.clone())
        .init();
    buf
}
