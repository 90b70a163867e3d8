//! The admission server: HTTPS webhook on one port, plain admin endpoints on another.

pub mod admission;
pub mod admission_log;
mod deadlines;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod routes;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use self::routes::AppState;
use crate::serving_cert::Credentials;

/// Timeouts, intervals and the connection limit, with production defaults; tests shorten them.
#[derive(Clone, Debug)]
pub struct Timing {
    /// A client must finish the TLS handshake within this.
    pub handshake: Duration,
    /// …then start its first request, and send each request's head, within this; the whole
    /// request, head and body, within this from its first byte (a late body is answered 408).
    pub header_read: Duration,
    /// A keep-alive connection may wait this long for its next request: longer than
    /// kube-apiserver's 90 s, so the client closes idle connections first (see `deadlines`).
    pub idle: Duration,
    /// Webhook connections served at once; further clients wait in the listen backlog until
    /// one closes. Bounds memory (about 11 KiB per idle TLS connection; BENCHMARKS.md).
    pub max_connections: usize,
    /// How often the serving certificate files are re-read.
    pub cert_poll: Duration,
    /// After SIGTERM, how long the server stays unready but keeps accepting and answering
    /// (every HTTP/1.1 answer with `Connection: close`), so that Endpoints drop it and every
    /// API server moves on before its listener closes (see `Connection::serve`).
    pub shutdown_delay: Duration,
    /// Then, how long in-flight requests may take to finish and clients to close the
    /// connections they still hold; what is still open then is cut as the process exits.
    pub drain: Duration,
}

/// Default of [`Timing::drain`] (and `serve --drain-timeout`): longer than kube-apiserver's
/// 90 s idle timeout for webhook connections, so that the exit never cuts a connection an API
/// server still holds (and may be writing a request onto).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(95);

/// Default of [`Timing::shutdown_delay`] (and `serve --shutdown-delay`): Endpoints reach every
/// API server within a few seconds; BENCHMARKS.md has the rollout measured with it.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(10);

impl Default for Timing {
    fn default() -> Self {
        Timing {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            cert_poll: Duration::from_secs(2),
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            drain: DEFAULT_DRAIN,
        }
    }
}

/// Pending connections the kernel may queue for the webhook listener (capped by
/// `net.core.somaxconn`). When API servers restart, all their connections come back at once;
/// with the usual 1,024, a storm of 1,000 handshakes overflowed the queue while the workers were
/// busy signing, and the dropped SYNs were retried a full second later (BENCHMARKS.md).
const LISTEN_BACKLOG: u32 = 4096;

fn listen_with_backlog(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Counts one webhook connection in the `connections` gauge while it lives.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Default of [`Timing::max_connections`] (and `serve --max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Listeners bound and credentials loaded; ready to serve.
pub struct Server {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    webhook: TcpListener,
    admin: TcpListener,
    acceptor: TlsAcceptor,
    follow: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    state: Arc<AppState>,
}

impl Server {
    /// Binds both listeners, serving `credentials`' pair.
    pub async fn bind(
        listen: SocketAddr,
        admin_listen: SocketAddr,
        credentials: Credentials,
        state: Arc<AppState>,
    ) -> Result<Server> {
        // TLS 1.2 and 1.3, ALPN h2 and http/1.1, no client authentication (kube-apiserver
        // authenticates the webhook, not the other way round).
        let mut tls = rustls::ServerConfig::builder_with_provider(crate::crypto::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(credentials.resolver);
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let webhook = listen_with_backlog(listen).with_context(|| format!("binding {listen}"))?;
        let admin = TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("binding {admin_listen}"))?;
        Ok(Server {
            webhook_addr: webhook.local_addr()?,
            admin_addr: admin.local_addr()?,
            webhook,
            admin,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            follow: credentials.follow,
            state,
        })
    }

    /// Serves until `shutdown` completes; then, for the shutdown delay, fails readiness and
    /// answers every HTTP/1.1 request with `Connection: close` while still accepting; then stops
    /// accepting and waits (up to the drain time) for in-flight requests to finish and clients
    /// to close the connections they hold, and returns.
    ///
    /// Why: kube-apiserver calls webhooks over HTTP/1.1 keep-alive connections and does not
    /// retry a POST written onto a connection the server closed; under `failurePolicy: Fail`
    /// that migrated write is refused. A connection the *client* closes after an answer that
    /// said `Connection: close` never races a request.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        tracing::info!(webhook_addr = %self.webhook_addr, admin_addr = %self.admin_addr, "serving");
        // `stopping`: SIGTERM arrived (not ready, Connection: close). `stop`: the listener is
        // closed (the admin server stops).
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut cert_watch = tokio::spawn(self.follow);
        // The task that keeps the certificate current never ends; if it did (a panic), the
        // pair in force would expire unrenewed: stop, so the pod restarts and says why.
        let mut stopped_following = false;
        let timing = self.state.timing.clone();
        let app = routes::admin(self.state.clone(), stopping_rx.clone());
        let admin_task = tokio::spawn(
            axum::serve(self.admin, app)
                .with_graceful_shutdown(stopped(stop_rx))
                .into_future(),
        );

        let template = Connection {
            acceptor: self.acceptor,
            open: self.state.metrics.connections.clone(),
            router: routes::webhook(self.state),
            builder: Arc::new(connection_builder()),
            stopping: stopping_rx,
            timing: timing.clone(),
        };
        let connections = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(timing.max_connections));
        let spawn_connection = |slot, tcp| template.spawn(&connections, slot, tcp);

        tokio::pin!(shutdown);
        let mut listener_closes_at = None;
        loop {
            let (slot, tcp) = tokio::select! {
                _ = &mut shutdown, if listener_closes_at.is_none() => {
                    tracing::info!(delay = ?timing.shutdown_delay, "shutting down: not ready; answering with Connection: close until the delay ends");
                    let _ = stopping_tx.send(true);
                    listener_closes_at = Some(tokio::time::Instant::now() + timing.shutdown_delay);
                    continue;
                }
                _ = tokio::time::sleep_until(listener_closes_at.unwrap_or_else(tokio::time::Instant::now)), if listener_closes_at.is_some() => break,
                _ = &mut cert_watch => {
                    tracing::error!("the task keeping the serving certificate current ended; stopping");
                    stopped_following = true;
                    break;
                }
                next = next_connection(&self.webhook, &slots) => match next {
                    Some(accepted) => accepted,
                    // The semaphore is never closed; if it were, stop as on shutdown.
                    None => break,
                },
            };
            spawn_connection(Some(slot), tcp);
        }

        take_backlog(self.webhook, &slots, spawn_connection);
        tracing::info!("shutting down: no new connections; waiting for in-flight requests and for clients to close their connections");
        let _ = stopping_tx.send(true);
        let _ = stop_tx.send(true);
        connections.close();
        if tokio::time::timeout(timing.drain, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(drain = ?timing.drain, "connections still open when the drain ended; closing them");
        }
        cert_watch.abort();
        stop_admin(admin_task).await?;
        anyhow::ensure!(
            !stopped_following,
            "the task keeping the serving certificate current ended"
        );
        Ok(())
    }
}

/// Takes the connections the kernel completed but nobody accepted yet: they would be reset when
/// the listener closes, under a client that already counts them as open (Go's dialer does not
/// try the next address then). Beyond --max-connections if need be (`None` for a slot): the
/// backlog bounds them, and waiting for a slot here could wait on idle connections for as long
/// as their clients keep them.
fn take_backlog(
    webhook: TcpListener,
    slots: &Arc<Semaphore>,
    spawn: impl Fn(Option<OwnedSemaphorePermit>, TcpStream),
) {
    let Ok(listener) = webhook.into_std() else {
        return;
    };
    for _ in 0..LISTEN_BACKLOG {
        let tcp = match listener.accept() {
            Ok((tcp, _)) => tcp,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => continue,
        };
        let slot = slots.clone().try_acquire_owned().ok();
        if tcp.set_nonblocking(true).is_ok() {
            if let Ok(tcp) = TcpStream::from_std(tcp) {
                spawn(slot, tcp);
            }
        }
    }
}

/// Waits for the admin server to stop; a client holding a half-sent request on the admin port
/// must not keep the process up.
async fn stop_admin(mut task: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<()> {
    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
        Ok(done) => done.context("admin server task")?.context("admin server"),
        Err(_) => {
            task.abort();
            Ok(())
        }
    }
}

/// The next connection, once a slot (of `--max-connections`) is free; `None` when no slot will
/// ever be.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, TcpStream)> {
    let slot = slots.clone().acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((tcp, _peer)) => return Some((slot, tcp)),
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Resolves once the server is told to stop.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// HTTP/1.1 and HTTP/2 on one listener. Head and idle deadlines are `deadlines::Deadlines`'
/// (hyper's header timeout would also close idle keep-alive connections after the head
/// timeout).
fn connection_builder() -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// What one accepted connection is served with.
#[derive(Clone)]
struct Connection {
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    stopping: tokio::sync::watch::Receiver<bool>,
    timing: Timing,
    /// The `connections` gauge.
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Connection {
    /// Serves `tcp` on a task of `tracker`, holding its `slot` among --max-connections (none for
    /// the last sweep of the backlog) and counted in the gauge while it lives.
    fn spawn(&self, tracker: &TaskTracker, slot: Option<OwnedSemaphorePermit>, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        self.open.inc();
        let (conn, open) = (self.clone(), OpenConnection(self.open.clone()));
        tracker.spawn(async move {
            let (_slot, _open) = (slot, open);
            conn.serve(tcp).await;
        });
    }

    /// The TLS handshake within its deadline, then requests until the client leaves or the
    /// server stops.
    ///
    /// On SIGTERM (`stopping`), an HTTP/1.1 connection answers every request with `Connection:
    /// close`, so the client closes it after the answer; HTTP/2 gets GOAWAY at once (the client
    /// retries streams the server did not take). The server never closes an idle HTTP/1.1
    /// connection itself while stopping: there is no way to tell its client, which may be
    /// writing a request onto it at that moment. It is left to its client, to use once more (and
    /// be told to close) or to close when idle for its own timeout (kube-apiserver: 90 s, under
    /// this server's 120 s); only the end of the drain, when the process exits, cuts one still
    /// open.
    async fn serve(self, tcp: TcpStream) {
        let timing = &self.timing;
        let Ok(Ok(tls)) = tokio::time::timeout(timing.handshake, self.acceptor.accept(tcp)).await
        else {
            return;
        };
        let http1 = tls.get_ref().1.alpn_protocol() != Some(b"h2");
        let head_start = deadlines::HeadStart::default();
        let io = deadlines::Deadlines::new(
            tls,
            timing.header_read,
            timing.idle,
            http1,
            head_start.clone(),
        );
        let stopping = self.stopping.clone();
        // Each request carries when its head began, for the request deadline.
        let service = TowerToHyperService::new(
            self.router
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    let start = head_start.lock().ok().and_then(|s| *s);
                    let start = start.unwrap_or_else(tokio::time::Instant::now);
                    req.extensions_mut().insert(routes::RequestStart(start));
                    req
                })
                .map_response(move |mut res: axum::response::Response| {
                    if http1 && *stopping.borrow() {
                        res.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    res
                }),
        );
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stopped(self.stopping) => {}
        }
        if !http1 {
            conn.as_mut().graceful_shutdown();
        }
        let _ = conn.await;
    }
}
