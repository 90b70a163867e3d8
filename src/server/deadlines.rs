//! Read deadlines for one webhook connection, which hyper does not give separately:
//!
//! - **head**: once the first byte of an HTTP/1 request head has arrived, the whole head must
//!   arrive within this (slowloris); a new connection must also start its first request within
//!   it (a client that finishes the handshake and says nothing);
//! - **idle**: a keep-alive connection may wait this long for its next request. It is longer than
//!   kube-apiserver's own idle timeout (90 s), so the client closes first and never sends a
//!   request on a connection the server is closing — a race Go's HTTP client does not retry for
//!   POSTs. (hyper's own header timeout also closes idle keep-alive connections, after the head
//!   timeout; it is turned off in favour of this.)
//!
//! The wrapper only watches bytes: reads after a response was written start a new head, which
//! ends at the first blank line (`\r\n\r\n`). On HTTP/2 (framed, multiplexed) only the idle
//! deadline applies, measured from the last byte read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the connection is between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (the deadline depends on whether one came before).
    Waiting,
    /// Inside a request head; `tail` holds how much of `\r\n\r\n` the bytes so far end with.
    Head { tail: usize },
    /// Head complete: the body, then hyper's answer. The handler answers a late body with 408,
    /// measured from [`HeadStart`]; here only the idle deadline applies, as a backstop.
    Body,
}

/// When the HTTP/1 request head being read (or last read) on a connection began: the handler
/// measures the request deadline (head and body) from it. Shared between the connection's IO
/// wrapper, which sets it, and its service, which reads it. `None` before the first head (and
/// on HTTP/2, where a head is one frame and the handler's own start is as good).
pub type HeadStart = Arc<Mutex<Option<Instant>>>;

/// An IO stream with the head and idle deadlines above.
pub struct Deadlines<IO> {
    io: IO,
    head: Duration,
    idle: Duration,
    /// HTTP/1: heads are scanned. HTTP/2: only the idle deadline.
    http1: bool,
    phase: Phase,
    /// HTTP/1: whether a request has been read on this connection (picks the waiting deadline).
    served: bool,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    head_start: HeadStart,
}

impl<IO> Deadlines<IO> {
    pub fn new(io: IO, head: Duration, idle: Duration, http1: bool, head_start: HeadStart) -> Self {
        let deadline = Instant::now() + head;
        Deadlines {
            io,
            head,
            idle,
            http1,
            phase: Phase::Waiting,
            served: false,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            head_start,
        }
    }

    /// Follows the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.http1 {
            self.deadline = Instant::now() + self.idle;
            return;
        }
        if self.phase == Phase::Waiting {
            self.served = true;
            self.phase = Phase::Head { tail: 0 };
            let now = Instant::now();
            if let Ok(mut start) = self.head_start.lock() {
                *start = Some(now);
            }
            self.deadline = now + self.head;
        }
        if let Phase::Head { tail } = self.phase {
            match end_of_head(tail, bytes) {
                Ok(()) => {
                    self.phase = Phase::Body;
                    // The handler answers a late body (408); this only ends a connection that
                    // would otherwise wait for ever (bytes after an early answer read as a
                    // head that never gets one).
                    self.deadline = Instant::now() + self.idle;
                }
                Err(tail) => self.phase = Phase::Head { tail },
            }
        }
    }

    /// `n` bytes of a response were written: if any, what is read next starts a new request.
    /// (HTTP/2 writes say nothing about the client: its idle time counts from its last byte.)
    fn wrote(&mut self, n: usize) -> usize {
        if n > 0 && self.http1 {
            self.phase = Phase::Waiting;
            let wait = if self.served { self.idle } else { self.head };
            self.deadline = Instant::now() + wait;
        }
        n
    }
}

/// Scans for the blank line that ends a head, `tail` bytes of it already seen; `Err` carries
/// how much of it the bytes end with.
fn end_of_head(mut tail: usize, bytes: &[u8]) -> Result<(), usize> {
    const END: &[u8; 4] = b"\r\n\r\n";
    for &b in bytes {
        tail = if b == END[tail] {
            tail + 1
        } else if b == b'\r' {
            1
        } else {
            0
        };
        if tail == END.len() {
            return Ok(());
        }
    }
    Err(tail)
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlines<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
            if read.is_ok() {
                this.saw(&buf.filled()[before..]);
            }
            return Poll::Ready(read);
        }
        if this.timer.deadline() != this.deadline {
            this.timer.as_mut().reset(this.deadline);
        }
        ready!(this.timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "read deadline passed",
        )))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlines<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        Poll::Ready(Ok(this.wrote(n)))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        Poll::Ready(Ok(this.wrote(n)))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(120);

    /// An HTTP/1 connection with the deadlines above.
    fn open(io: tokio::io::DuplexStream) -> Deadlines<tokio::io::DuplexStream> {
        Deadlines::new(io, HEAD, IDLE, true, HeadStart::default())
    }

    async fn send(io: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) {
        io.write_all(bytes).await.unwrap();
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line_across_reads() {
        assert_eq!(
            end_of_head(0, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n{}"),
            Ok(())
        );
        let tail = end_of_head(0, b"POST / HTTP/1.1\r\nHost: x\r").unwrap_err();
        assert_eq!(tail, 1);
        assert_eq!(end_of_head(tail, b"\n\r"), Err(3));
        assert_eq!(end_of_head(3, b"\n"), Ok(()));
        // A bare \r\r\n\r\n still ends it; \r\n then text does not.
        assert_eq!(end_of_head(0, b"a\r\r\n\r\n"), Ok(()));
        assert_eq!(end_of_head(0, b"a\r\nb\r\nc"), Err(0));
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_requests() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = open(server);
        let mut buf = [0u8; 256];

        // The first request starts in time; its head is complete; during the body only the idle
        // deadline applies (the handler times the body itself).
        send(&mut client, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n").await;
        assert!(server.read(&mut buf).await.unwrap() > 0);
        assert_eq!(server.phase, Phase::Body);
        assert_eq!(server.deadline, Instant::now() + IDLE);
        // The answer: now idle, for up to `idle` (not `head`).
        send(&mut server, b"HTTP/1.1 200 OK\r\n\r\n").await;
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let r = server.read(&mut buf).await;
            (r.map(|_| ()), server)
        });
        tokio::time::sleep(HEAD * 3).await;
        assert!(
            !reading.is_finished(),
            "still open after 3 × head while idle"
        );
        send(&mut client, b"GET / HTTP/1.1\r\nHo").await;
        let (r, mut server) = reading.await.unwrap();
        r.unwrap();
        // A head trickled past `head` is cut off.
        let started = Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_and_a_long_idle_one_are_cut_off() {
        let (_client, server) = tokio::io::duplex(64);
        let mut silent = open(server);
        let started = Instant::now();
        let mut buf = [0u8; 64];
        assert!(silent.read(&mut buf).await.is_err());
        assert_eq!(started.elapsed(), HEAD);

        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = open(server);
        send(&mut client, b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(conn.read(&mut buf).await.unwrap() > 0);
        send(&mut conn, b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let started = Instant::now();
        assert!(conn.read(&mut buf).await.is_err());
        assert_eq!(started.elapsed(), IDLE);
    }

    /// Bytes that arrive after an early answer are read as a new head; if they hold a blank
    /// line, the connection is "in a body" that no handler reads: it must still end.
    #[tokio::test(start_paused = true)]
    async fn a_connection_never_waits_without_a_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = open(server);
        let mut buf = [0u8; 256];
        send(
            &mut client,
            b"POST /mutate HTTP/1.1\r\nContent-Length: 4\r\n\r\n",
        )
        .await;
        assert!(server.read(&mut buf).await.unwrap() > 0);
        send(&mut server, b"HTTP/1.1 404 Not Found\r\n\r\n").await;
        send(&mut client, b"\r\n\r\n").await;
        assert!(server.read(&mut buf).await.unwrap() > 0);
        let started = Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= IDLE);
    }
}
