//! `rancher-remap serve`: the admission webhook server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::live::{LiveMappings, TableMetrics};
use crate::managed_certs::{self, KeeperMetrics};
use crate::rewrite::{Mode, MutateSettings, Scope, UnmappedPolicy};
use crate::server::admission_log::AdmissionLog;
use crate::server::metrics::Metrics;
use crate::server::routes::AppState;
use crate::server::{Server, Timing};
use crate::serving_cert::{CertFiles, CertMetrics, Credentials};
use crate::source::{self, Source};

/// Run the admission webhook server (HTTPS /mutate and /validate; plain /healthz, /readyz,
/// /metrics on the admin port). Every flag can also be set from its environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub serving: ServingArgs,

    #[command(flatten)]
    pub managed_certs: super::serve_certs::ManagedCertArgs,

    #[command(flatten)]
    pub source: super::SourceArgs,

    /// With --mappings-configmap or --cert-secret: the cluster to watch it in (in a pod, its
    /// ServiceAccount).
    #[command(flatten)]
    pub cluster: super::cluster::ClusterArgs,

    #[command(flatten)]
    pub rewrite: RewriteArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// Log format.
    #[arg(long, env = "RANCHER_REMAP_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Where the server listens, and the serving pair's files.
#[derive(Debug, clap::Args)]
pub struct ServingArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "RANCHER_REMAP_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Serving certificate chain (PEM). Re-read when it changes. (Or --cert-secret.)
    #[arg(long, env = "RANCHER_REMAP_TLS_CERT", default_value = "certs/tls.crt")]
    pub tls_cert: PathBuf,

    /// Serving private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC). Re-read when it changes.
    #[arg(long, env = "RANCHER_REMAP_TLS_KEY", default_value = "certs/tls.key")]
    pub tls_key: PathBuf,

    /// Address of the plain-HTTP admin listener (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "RANCHER_REMAP_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub admin_listen: SocketAddr,
}

/// What the server rewrites, and for which cluster.
#[derive(Debug, clap::Args)]
pub struct RewriteArgs {
    /// No mappings: serve only /validate (the source cluster, where ClusterPairs are created).
    /// Ready at once; /mutate answers 404. The environment variable takes true/false, 1/0,
    /// yes/no or on/off.
    #[arg(
        long,
        env = "RANCHER_REMAP_VALIDATE_ONLY",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub validate_only: bool,

    /// What to do with a project ID that has no mapping: drop removes the label or annotation on
    /// migrated objects (selectors are never shortened), keep leaves it, deny refuses the request.
    #[arg(long, env = "RANCHER_REMAP_UNMAPPED", value_enum, default_value_t)]
    pub unmapped: UnmappedPolicy,

    /// Which requests are rewritten: migrated (Stork's migrated annotation, a Namespace whose
    /// project-ID annotation names a source cluster of the table, or a migration user's write)
    /// or all.
    #[arg(long, env = "RANCHER_REMAP_SCOPE", value_enum, default_value_t)]
    pub scope: Scope,

    /// enforce answers with the patch; warn answers without it — a warning and the audit
    /// annotation say what would have been rewritten, counted as outcome="would_patch" — to
    /// roll out safely: install in warn, run `audit`, then switch to enforce
    #[arg(long, env = "RANCHER_REMAP_MODE", value_enum, default_value_t)]
    pub mode: Mode,

    /// This cluster's Rancher ID (e.g. c-m-4kq8z9rt, or local), as `derive` prints it. A Namespace
    /// annotated with it is never rewritten, and a table whose sources name it (reversed) or
    /// whose destinations name another cluster is refused, at start and on every reload.
    /// Required with a mapping source: without it the server runs but is never ready, and says
    /// how to set it.
    #[arg(long, env = "RANCHER_REMAP_CLUSTER_ID", value_name = "ID", value_parser = super::parse_cluster_id)]
    pub cluster_id: Option<String>,

    /// A user whose requests count as migrations, e.g. the identity Stork writes Namespaces with
    /// (repeatable; comma-separated in the environment variable).
    #[arg(
        long,
        env = "RANCHER_REMAP_MIGRATION_USER",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub migration_user: Vec<String>,
}

/// Connections, requests and shutdown.
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Webhook connections served at once; more clients wait until one closes (bounds memory:
    /// about 11 KiB per idle TLS connection).
    #[arg(long, env = "RANCHER_REMAP_MAX_CONNECTIONS", default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest request body accepted; larger ones get 413 before they are read.
    #[arg(long, env = "RANCHER_REMAP_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a whole webhook request, head and body, may take to arrive, from its first
    /// byte. A head that is late closes the connection; a body that is late is answered 408.
    /// Keeps clients that trickle bytes from holding connections (and --max-connections slots).
    #[arg(
        long,
        env = "RANCHER_REMAP_REQUEST_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub request_timeout: u64,

    /// Seconds, after SIGTERM, that the server stays unready but keeps accepting and answering
    /// (each answer with `Connection: close`, so API servers close their keep-alive connections
    /// themselves) before its listener closes; then it waits up to --drain-timeout for clients
    /// to close their connections (it never closes an idle one). Covers Endpoints reaching every
    /// API server. 0: the listener closes at once.
    #[arg(
        long,
        env = "RANCHER_REMAP_SHUTDOWN_DELAY",
        value_name = "SECONDS",
        default_value_t = crate::server::DEFAULT_SHUTDOWN_DELAY.as_secs(),
        value_parser = clap::value_parser!(u64).range(0..=300)
    )]
    pub shutdown_delay: u64,

    /// Seconds, once the listener is closed, to wait for requests in flight to finish and for
    /// clients to close the connections they still hold; what is open then is cut as the process
    /// exits. Longer than kube-apiserver's 90 s idle timeout, so that no connection an API
    /// server may still write onto is cut; the Deployment's grace period must exceed the delay
    /// plus this.
    #[arg(
        long,
        env = "RANCHER_REMAP_DRAIN_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = crate::server::DEFAULT_DRAIN.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub drain_timeout: u64,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the log subscriber (RUST_LOG overrides the default `info`).
pub fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only for a person at a terminal: never escape codes in a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| crate::log_sink::Stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Each subsystem's metrics, registered in one registry, which the server's hold (it serves
/// `/metrics`).
pub struct AllMetrics {
    pub server: Arc<Metrics>,
    pub table: TableMetrics,
    pub certificate: CertMetrics,
    pub keeper: KeeperMetrics,
}

impl AllMetrics {
    pub fn register() -> AllMetrics {
        let mut registry = crate::metrics::registry();
        AllMetrics {
            table: TableMetrics::register(&mut registry),
            certificate: CertMetrics::register(&mut registry),
            keeper: KeeperMetrics::register(&mut registry),
            server: Arc::new(Metrics::new(registry)),
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let source = match (args.source.given(), args.rewrite.validate_only) {
        (Some(_), true) => Err("--validate-only cannot be used with a mapping source (--project-mappings, --mappings-file, --mappings-configmap)".into()),
        (None, false) => Err("give one of --project-mappings, --mappings-file, --mappings-configmap or --validate-only".into()),
        (given, _) => args.managed_certs.check().map(|()| given),
    }
    .map_err(super::Usage)?;
    init_logging(args.log_format);
    let metrics = AllMetrics::register();
    let (log, written) = AdmissionLog::start(metrics.server.log_lines_dropped.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(serve(args, source, metrics, log));
    // Every task (and with them every handle on the log) gone, the last lines are written.
    drop(runtime);
    // Short: the writer drains every 2 ms; the Deployment's grace period leaves room for this.
    let _ = written.recv_timeout(Duration::from_secs(2));
    match served {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // In the log format chosen, like every other line of this process.
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "serve failed");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve(
    args: Args,
    source: Option<Source>,
    metrics: AllMetrics,
    log: AdmissionLog,
) -> Result<()> {
    let rewrite = &args.rewrite;
    let settings = MutateSettings {
        unmapped: rewrite.unmapped,
        scope: rewrite.scope,
        migration_users: super::trimmed(&rewrite.migration_user),
        mode: rewrite.mode,
        cluster_id: super::known_cluster_id(&rewrite.cluster_id).map(str::to_string),
    };
    let users_given = !settings.migration_users.is_empty() || rewrite.scope == Scope::All;
    if source.is_some() && settings.cluster_id.is_none() {
        tracing::error!("{}", crate::server::routes::NO_CLUSTER_ID);
    }
    let live = Arc::new(LiveMappings::new(
        metrics.table,
        users_given,
        settings.cluster_id.clone(),
    ));
    let limits = &args.limits;
    let state = Arc::new(AppState {
        mappings: live.clone(),
        settings,
        metrics: metrics.server,
        max_body_bytes: limits.max_body_bytes,
        validate_only: source.is_none(),
        // Production defaults for what has no flag.
        timing: Timing {
            max_connections: limits.max_connections.max(1),
            header_read: Duration::from_secs(limits.request_timeout),
            shutdown_delay: Duration::from_secs(limits.shutdown_delay),
            drain: Duration::from_secs(limits.drain_timeout),
            ..Timing::default()
        },
        log,
    });
    let needs_cluster =
        args.managed_certs.cert_secret.is_some() || matches!(source, Some(Source::ConfigMap(_)));
    let client = match needs_cluster {
        true => Some(args.cluster.connect(None).await?.client),
        false => None,
    };
    match source {
        Some(source) => source::start(source, live, Duration::from_secs(1), client.clone()).await?,
        None => tracing::info!("validate-only: serving /validate, no mapping table"),
    }
    let poll = state.timing.cert_poll;
    let credentials = credentials(&args, client, metrics.certificate, metrics.keeper, poll).await?;
    let (listen, admin_listen) = (args.serving.listen, args.serving.admin_listen);
    let server = Server::bind(listen, admin_listen, credentials, state).await?;
    server.serve(shutdown_signal()).await
}

/// The serving pair: kept in its Secret with `--cert-secret` (and a client), read from the
/// files otherwise.
async fn credentials(
    args: &Args,
    client: Option<kube::Client>,
    certificate: CertMetrics,
    keeper: KeeperMetrics,
    cert_poll: Duration,
) -> Result<Credentials> {
    let managed =
        client.and_then(|c| Some((args.managed_certs.settings(c.default_namespace())?, c)));
    if let Some((settings, client)) = managed {
        if settings.webhooks.is_empty() {
            tracing::warn!("--cert-secret without --webhook-configuration: no caBundle is kept; the API servers trust this server only if something else puts its CA (the Secret's ca-bundle.crt) there");
        }
        return managed_certs::start(client, settings, certificate, keeper).await;
    }
    let files = CertFiles {
        cert: args.serving.tls_cert.clone(),
        key: args.serving.tls_key.clone(),
    };
    files.credentials(certificate, cert_poll).map_err(|e| {
        let fix = match e.is_missing_file() {
            true => "; make a pair with `rancher-remap certs --out DIR` and give --tls-cert DIR/tls.crt --tls-key DIR/tls.key, or let the server keep its own with --cert-secret",
            false => "",
        };
        anyhow::anyhow!("loading the serving certificate and key: {e}{fix}")
    })
}

/// SIGTERM (kubelet) or SIGINT (a terminal).
async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut s) = signal(SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        s.recv().await;
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("signal received");
}
