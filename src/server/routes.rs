//! HTTP routes: the webhook (`/mutate`, `/validate`) and the admin endpoints. Handlers only
//! read the body, decode, call the pure decision, and count and log what happened.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

use super::admission;
use super::admission_log::{Admission, AdmissionLog, Record};
use super::metrics::{EndpointMetrics, Metrics};
use super::mutate;
use super::review::{self, RequestOutcome};
use crate::live::LiveMappings;
use crate::rewrite::MutateSettings;

/// What the handlers share. The table is swapped atomically; requests never wait on a reload.
pub struct AppState {
    /// The mapping table in force (none until the first good one: not ready).
    pub mappings: Arc<LiveMappings>,
    pub settings: MutateSettings,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    /// `serve --validate-only` (the source cluster): no table is expected, the server is ready
    /// at once, and `/mutate` is not served.
    pub validate_only: bool,
    /// The connections' deadlines; `header_read` is also the request's (a late body: 408).
    pub timing: super::Timing,
    /// The admission log's queue (written off the request's thread).
    pub log: AdmissionLog,
}

/// When a request's head began (set per connection by the server; see `deadlines`).
#[derive(Clone, Copy, Debug)]
pub struct RequestStart(pub tokio::time::Instant);

/// The webhook routes (served over TLS).
pub fn webhook(state: Arc<AppState>) -> Router {
    panic_guard(
        Router::new()
            .route("/mutate", post(mutate))
            .route("/validate", post(validate))
            .with_state(state),
    )
}

/// A panic in a handler answers that request with a 500 and a fixed message: the process keeps
/// serving, and the panic's own message (which could hold input) is neither sent nor logged.
fn panic_guard(router: Router) -> Router {
    router.layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
        tracing::error!("handler panicked; answered 500");
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }))
}

/// The admin routes (plain HTTP, separate port). `stopping` turns true on SIGTERM: from then
/// on the server is not ready, so that Endpoints drop it while it still answers.
pub fn admin(state: Arc<AppState>, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move |State(s): State<Arc<AppState>>| {
                let stopping = *stopping.borrow();
                async move { readyz(&s, stopping) }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<AppState>>| async move {
                let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                ([(header::CONTENT_TYPE, openmetrics)], s.metrics.encode())
            }),
        )
        .with_state(state)
}

/// Why a destination server without this cluster's ID is never ready: Namespaces Stork creates
/// would silently keep the source's projects (nothing would recognise them by their annotation),
/// and no table could be checked against this cluster.
pub const NO_CLUSTER_ID: &str = "not ready: no cluster ID. Set this cluster's Rancher ID (rancher-remap derive prints it): serve --cluster-id or RANCHER_REMAP_CLUSTER_ID; Helm: --set clusterId=ID; kustomize: clusterId in deploy/destination/cluster-id.yaml, or an overlay's patch of it with deploy/transformers/cluster-id";

/// Why a server that expects a mapping table is not ready yet, and `/mutate` answers 503.
const NO_TABLE: &str = "no mapping table loaded yet";

fn readyz(s: &AppState, stopping: bool) -> (StatusCode, &'static str) {
    if stopping {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: still answering until the shutdown delay ends",
        )
    } else if s.validate_only {
        (StatusCode::OK, "ready (validate-only)")
    } else if s.settings.cluster_id.is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, NO_CLUSTER_ID)
    } else if s.mappings.is_loaded() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, NO_TABLE)
    }
}

/// A JSON error body (docs/behaviour.md: bad input gets a 4xx with a JSON body).
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message.into(), "code": status.as_u16()})),
    )
        .into_response()
}

/// Most of an unread request body drained after an early answer (see [`Unread::answer`]); a
/// longer one is cut off instead.
const EARLY_ANSWER_DRAIN_BYTES: u64 = 32 << 20;
/// Bodies drained at once at most; past that, early answers cut the body off.
const MAX_DRAINS: usize = 256;

/// A request body not yet read, and what an early answer (404, 413, 408) needs to send ahead of
/// it: the HTTP version, the request deadline and the declared length (see [`Unread::answer`]).
struct Unread {
    body: Body,
    version: axum::http::Version,
    /// When the whole request must have arrived: the timeout after its head began.
    deadline: tokio::time::Instant,
    /// The body length the request declares (`Content-Length`), if any.
    declared: Option<u64>,
}

impl Unread {
    fn new(req: Request, timeout: Duration) -> Unread {
        let start = req.extensions().get::<RequestStart>();
        let deadline = start.map_or_else(tokio::time::Instant::now, |s| s.0) + timeout;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Unread {
            version: req.version(),
            body: req.into_body(),
            deadline,
            declared,
        }
    }

    /// Sends `resp` ahead of the body so that it reaches the client intact. Clients commonly keep
    /// sending their body and only then read the answer; cutting the body off under them loses
    /// it: on HTTP/1.1 the kernel resets a connection closed with unread bytes, and on HTTP/2 a
    /// stream reset while the client uploads is reported as a stream error by some clients
    /// (curl), whatever its code.
    ///
    /// So, when `drain`, the declared length and a free drain slot ([`MAX_DRAINS`]) allow it,
    /// the rest of the body is read and thrown away in the background, up to
    /// [`EARLY_ANSWER_DRAIN_BYTES`] and the request deadline, and the exchange ends as a normal
    /// one. Otherwise (a body declared longer than that, already late, or no free slot), the body
    /// is cut off: on HTTP/2 only once the answer has been sent, so the reset is NO_ERROR ("stop
    /// sending", RFC 9113 §8.1) rather than CANCEL, which loses the answer in every client.
    fn answer(self, resp: Response, drain: bool) -> Response {
        // Drains at once are bounded: a client that declares bodies and never sends them (many
        // HTTP/2 streams cost it little) would otherwise leave a task each until its deadline.
        static DRAINS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_DRAINS);
        let drain = drain && self.declared.is_none_or(|n| n <= EARLY_ANSWER_DRAIN_BYTES);
        let permit = drain.then(|| DRAINS.try_acquire().ok()).flatten();
        if let Some(permit) = permit {
            let (mut body, deadline) = (self.body, self.deadline);
            tokio::spawn(async move {
                let _permit = permit;
                let mut seen = 0u64;
                let _ = tokio::time::timeout_at(deadline, async {
                    while let Some(Ok(frame)) = body.frame().await {
                        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                        if seen > EARLY_ANSWER_DRAIN_BYTES {
                            break;
                        }
                    }
                })
                .await;
            });
            resp
        } else if self.version == axum::http::Version::HTTP_2 {
            // The answer's body holds the request's (in a closure that never changes an error)
            // until it is sent and dropped.
            let request_body = self.body;
            resp.map(|answer| {
                Body::new(answer.map_err(move |e| {
                    let _held = &request_body;
                    e
                }))
            })
        } else {
            resp
        }
    }
}

/// Reads the body up to the limit and by the request deadline; a declared length over the
/// limit is refused before reading. Refusals are early answers ([`Unread::answer`]).
async fn read_body(req: Request, limit: usize, timeout: Duration) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over the {limit}-byte limit"),
        )
    };
    let mut unread = Unread::new(req, timeout);
    if unread.declared.is_some_and(|n| n > limit as u64) {
        return Err(unread.answer(too_large(), true));
    }
    let read = tokio::time::timeout_at(
        unread.deadline,
        http_body_util::Limited::new(&mut unread.body, limit).collect(),
    )
    .await;
    match read {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(unread.answer(too_large(), true))
        }
        Ok(Err(_)) => Err(error(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
        // Late: not drained (the deadline has passed).
        Err(_) => Err(unread.answer(
            error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            ),
            false,
        )),
    }
}

async fn mutate(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let m = &s.metrics.mutate;
    if s.validate_only {
        // A webhook configuration pointing a mutating webhook at a validator: say so plainly
        // rather than look like a server still waiting for its table.
        m.count(RequestOutcome::NotServed, Duration::ZERO);
        let not_served = error(
            StatusCode::NOT_FOUND,
            "this server runs with --validate-only: /mutate is not served",
        );
        return Unread::new(req, s.timing.header_read).answer(not_served, true);
    }
    answer_review(&s, m, req, |bytes, start| {
        let Some(mappings) = s.mappings.load_full() else {
            m.count(RequestOutcome::Unavailable, start.elapsed());
            return Ok(error(StatusCode::SERVICE_UNAVAILABLE, NO_TABLE));
        };
        let mut review = mutate::decode(bytes, &mappings.table)?;
        let answer = mutate::answer(&mut review, &mappings, &s.settings);
        let at = [&s.metrics.rewrites_at, &s.metrics.unmapped_at];
        for (counters, counts) in at.into_iter().zip([&answer.rewrites, &answer.unmapped]) {
            for (c, n) in counters.iter().zip(counts).filter(|(_, n)| **n > 0) {
                c.inc_by(u64::from(*n));
            }
        }
        Ok(answered(&s, m, &review, answer, start))
    })
    .await
}

async fn validate(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let m = &s.metrics.validate;
    answer_review(&s, m, req, |bytes, start| {
        let req = review::decode(bytes, PhantomData::<Value>)?;
        let now = crate::pki::plan::now();
        let answer = admission::validate(&req, now, s.settings.cluster_id.as_deref());
        Ok(answered(&s, m, &req, answer, start))
    })
    .await
}

/// Reads a review's body and answers it with `decide`. A request refused before it was decided
/// is counted, logged and answered here: for its body (too large, too late, unreadable: the
/// answer is made already), or as not a review this webhook answers (`decide`'s error: 400,
/// with a position, never the body).
async fn answer_review(
    s: &AppState,
    m: &EndpointMetrics,
    req: Request,
    decide: impl FnOnce(&[u8], Instant) -> Result<Response, review::ReviewError>,
) -> Response {
    let start = Instant::now();
    let (resp, error) = match read_body(req, s.max_body_bytes, s.timing.header_read).await {
        Ok(bytes) => match decide(&bytes, start) {
            Ok(resp) => return resp,
            Err(e) => {
                let message = e.to_string();
                (error(StatusCode::BAD_REQUEST, message.clone()), message)
            }
        },
        Err(resp) => (resp, "request body refused".to_string()),
    };
    m.count(RequestOutcome::BadRequest, start.elapsed());
    s.log.send(Record::Refused {
        endpoint: m.endpoint,
        status: resp.status().as_u16(),
        error,
    });
    resp
}

/// Counts and logs an answer decided, and sends it.
fn answered<O>(
    s: &AppState,
    m: &EndpointMetrics,
    req: &review::Request<'_, O>,
    answer: review::Answer,
    start: Instant,
) -> Response {
    let elapsed = start.elapsed();
    m.count(answer.verdict, elapsed);
    if answer.verdict.is_notable(answer.warned) || s.log.wants_allows() {
        let line = Admission::new(m.endpoint, req, &answer, elapsed);
        s.log.send(Record::Admission(line));
    }
    let json = [(header::CONTENT_TYPE, "application/json")];
    (json, Body::from(answer.body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_router_keeps_serving() {
        let router = panic_guard(
            Router::new()
                .route(
                    "/boom",
                    post(|| async {
                        if true {
                            panic!("token s3cr3t-value");
                        }
                        "unreachable"
                    }),
                )
                .route("/ok", post(|| async { "fine" })),
        );
        let call = |path: &'static str| {
            router
                .clone()
                .oneshot(axum::http::Request::post(path).body(Body::empty()).unwrap())
        };
        let resp = call("/boom").await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "internal error", "code": 500})
        );
        assert!(!String::from_utf8_lossy(&body).contains("s3cr3t"));
        let resp = call("/ok").await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
