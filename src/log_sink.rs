//! Where the process's log lines go: stderr. A thread that writes many lines in a burst (the
//! admission log's writer) gathers them and writes them together, one write(2) for many lines;
//! on every other thread each line is written at once.

use std::cell::RefCell;
use std::io::Write;

thread_local! {
    /// On a gathering thread: the lines written since the last [`flush`].
    static GATHERED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The log subscriber's writer.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        GATHERED.with(|g| match g.borrow_mut().as_mut() {
            Some(lines) => {
                lines.extend_from_slice(buf);
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// From now on, this thread's lines are gathered until [`flush`]ed.
pub fn gather_on_this_thread(capacity: usize) {
    GATHERED.with(|g| *g.borrow_mut() = Some(Vec::with_capacity(capacity)));
}

/// Writes the lines this thread has gathered, if they are at least `min` bytes (and any).
pub fn flush(min: usize) {
    GATHERED.with(|g| {
        if let Some(lines) = g.borrow_mut().as_mut().filter(|l| l.len() >= min.max(1)) {
            let _ = std::io::stderr().lock().write_all(lines);
            lines.clear();
        }
    });
}
