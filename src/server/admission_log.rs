//! The admission log, written off the request's thread: a handler packs what it has to say into
//! one small record and hands it to a bounded queue; one writer thread formats and writes the
//! lines. When the writer falls behind, records are dropped and counted
//! (`rancher_remap_log_lines_dropped_total`) instead of making requests wait.
//!
//! Why not `tracing_appender::non_blocking` (lossy, its error counter as the dropped-lines
//! metric), which was tried (issue 22): it formats each line on the request's thread and wakes
//! its writer thread for each line; this queue carries a small record, and the writer drains it
//! every 2 ms while busy and writes many lines with one write(2). Measured with
//! `LOAD_SECONDS=5 cargo bench --bench load`, each run twice, alternated: the server's CPU per
//! `/mutate` request was 49.8–51.7 µs with this writer and 55.6–62.7 µs with tracing-appender
//! (about +8 µs, +16 %, in every one of the six paired rows); req/s on the shared 2-core VM
//! moved more between runs than between the two (BENCHMARKS.md, "The admission log: hand-written
//! writer kept").
//!
//! What is logged (level info): every admission that rewrites, denies or warns, and every refused
//! request body. Plain allows (nothing to rewrite, not in scope) are only counted in the metrics,
//! and logged at debug level when that is enabled.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::review::{Answer, Request, RequestOutcome};
use crate::log_sink;

/// Records waiting for the writer at most.
const QUEUE: usize = 4096;
/// Longest uid, kind, namespace, name or user a record keeps (Kubernetes names are at most 253).
const FIELD_MAX: usize = 256;
/// Formatted lines the writer gathers at most before it writes them, even while busy.
const BATCH_MAX: usize = 64 * 1024;

/// One admission, as the log line says it.
#[derive(Debug)]
pub struct Admission {
    endpoint: &'static str,
    verdict: RequestOutcome,
    operation: &'static str,
    dry_run: bool,
    rewrites: u32,
    unmapped: u32,
    warnings: bool,
    duration_us: u64,
    /// uid, kind, namespace, name, user, one after the other; `ends` says where each ends.
    strings: String,
    ends: [u32; 5],
}

impl Admission {
    /// The line of `req` answered with `answer`. The request's strings are packed into one
    /// buffer (one allocation), each cut to `FIELD_MAX` bytes: a client may send anything
    /// there, and queued records must stay small.
    pub fn new<O>(
        endpoint: &'static str,
        req: &Request<'_, O>,
        answer: &Answer,
        took: Duration,
    ) -> Admission {
        let fields = [
            &req.uid,
            &req.kind,
            &req.namespace,
            &req.name,
            &req.username,
        ]
        .map(|s| crate::text::prefix(s, FIELD_MAX));
        let mut strings = String::with_capacity(fields.iter().map(|s| s.len()).sum());
        let ends = fields.map(|s| {
            strings.push_str(s);
            strings.len() as u32
        });
        Admission {
            endpoint,
            verdict: answer.verdict,
            operation: operation_name(&req.operation),
            dry_run: req.dry_run,
            rewrites: answer.rewrites.iter().sum(),
            unmapped: answer.unmapped.iter().sum(),
            warnings: answer.warned,
            duration_us: took.as_micros() as u64,
            strings,
            ends,
        }
    }

    fn string(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.strings
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }
}

/// The operation for logs: one of the four kube-apiserver sends, else `other` (a client that
/// is not kube-apiserver may put anything there, and logs must not carry what it sent).
fn operation_name(operation: &str) -> &'static str {
    const SENT: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];
    SENT.into_iter()
        .find(|&o| o == operation)
        .unwrap_or("other")
}

/// What the writer writes.
#[derive(Debug)]
pub enum Record {
    /// An admission answered (info when it rewrote, denied or warned; else debug).
    Admission(Admission),
    /// A request refused before it was read as a review (413, 408, 400).
    Refused {
        endpoint: &'static str,
        status: u16,
        /// Never holds the request's text (see `review::ReviewError`).
        error: String,
    },
}

/// The handlers' end of the queue.
#[derive(Clone, Debug)]
pub struct AdmissionLog {
    tx: SyncSender<Record>,
    dropped: Counter,
}

impl AdmissionLog {
    /// Starts the writer thread; it ends when every handle is dropped, and then sends `()` on
    /// the receiver returned (to wait for at shutdown, until every record is written).
    pub fn start(dropped: Counter) -> (AdmissionLog, Receiver<()>) {
        let (tx, rx) = sync_channel(QUEUE);
        let (done_tx, done) = sync_channel(1);
        // A thread of its own, not a tokio worker: formatting and write(2) never take a worker
        // from the requests.
        let spawned = std::thread::Builder::new()
            .name("admission-log".into())
            .spawn(move || {
                write_all(rx);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the admission log writer; admissions are not logged");
        }
        (AdmissionLog { tx, dropped }, done)
    }

    /// Hands a record to the writer, or counts it dropped when the queue is full.
    pub fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.inc();
        }
    }

    /// Whether plain allows are logged (debug level enabled), so handlers skip packing them.
    pub fn wants_allows(&self) -> bool {
        tracing::enabled!(target: "rancher_remap::admission", tracing::Level::DEBUG)
    }
}

/// How long the writer waits between drains while records keep coming. Waiting (instead of
/// blocking on the queue) spares the handlers a thread wake-up per record; when a wait brings
/// nothing, the writer blocks until the next record.
const DRAIN_EVERY: Duration = Duration::from_millis(2);

/// Writes records as they come: blocks for the first of a burst, then drains the queue every
/// [`DRAIN_EVERY`] until a wait brings nothing.
fn write_all(rx: Receiver<Record>) {
    log_sink::gather_on_this_thread(BATCH_MAX);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(record) = next {
            write_record(record);
            log_sink::flush(BATCH_MAX);
            next = match rx.try_recv() {
                Ok(record) => Some(record),
                Err(TryRecvError::Empty) => {
                    log_sink::flush(0);
                    std::thread::sleep(DRAIN_EVERY);
                    rx.try_recv().ok()
                }
                Err(TryRecvError::Disconnected) => None,
            };
        }
    }
    log_sink::flush(0);
}

fn write_record(record: Record) {
    match record {
        Record::Admission(a) => {
            macro_rules! line {
                ($level:ident) => {
                    tracing::$level!(
                        target: "rancher_remap::admission",
                        endpoint = a.endpoint,
                        uid = a.string(0),
                        kind = a.string(1),
                        namespace = a.string(2),
                        name = a.string(3),
                        operation = a.operation,
                        user = a.string(4),
                        dry_run = a.dry_run,
                        verdict = a.verdict.as_str(),
                        rewrites = a.rewrites,
                        unmapped = a.unmapped,
                        warnings = a.warnings,
                        duration_us = a.duration_us,
                        "admission"
                    )
                };
            }
            if a.verdict.is_notable(a.warnings) {
                line!(info);
            } else {
                line!(debug);
            }
        }
        Record::Refused {
            endpoint,
            status,
            error,
        } => tracing::warn!(
            target: "rancher_remap::admission",
            endpoint,
            status,
            error = %error,
            "request refused"
        ),
    }
}
