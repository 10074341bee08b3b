//! `distill dashboard`: one axum server over a work dir, started by the binary, no other
//! service needed. It serves
//!
//! - a versioned JSON API under `/api/v1` (see [`api`] for the list): the DAG and each stage's
//!   status (the runner's own status logic, plus "running" with progress), stats, manifests
//!   and the funnel; records with paging and filters, read through indexes so that a page
//!   costs the page, not the file ([`index`], [`shard_rows`], [`tokens`]); training metrics as
//!   server-sent events while training runs ([`metrics`]); jobs that run a stage or the whole
//!   DAG in a child `distill` process, one at a time, queued, cancellable, their log streamed
//!   ([`jobs`]);
//! - a web page at `/` that works offline (plain JavaScript and SVG, no third-party code,
//!   [`page`]).
//!
//! Safe by default ([`guard`]): it binds 127.0.0.1; binding any other address needs an API key
//! (a bearer token read from an environment variable), and then every API request needs it;
//! starting or cancelling work needs it always. Each client (IP address) has a request-rate
//! limit (429 with `retry-after`). Bodies and parameters are validated with 400s that name
//! the field. Nothing outside the work dir can be read: stage names come from the DAG, files
//! only from published stage folders, checked after resolving links ([`files`]).

pub mod api;
pub mod error;
pub mod files;
pub mod guard;
pub mod index;
pub mod jobs;
pub mod metrics;
pub mod page;
pub mod records;
pub mod shard_rows;
pub mod status;
pub mod student;
pub mod teacher_series;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use distill_core::Runner;

/// The pipeline as the binary knows it: the DAG built from the config (rebuilt on every call,
/// so an edited config shows at once) and the command line that runs a stage in a child
/// process.
pub trait Pipeline: Send + Sync + 'static {
    /// The runner over the work dir with every stage of the current config.
    fn runner(&self) -> distill_core::Result<Runner>;
    /// `distill [--force] <target>` (or `run` when `target` is `None`) with this dashboard's
    /// config and work dir.
    fn command(&self, target: Option<&str>, force: bool) -> std::process::Command;
}

/// How the server is started.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub work_dir: PathBuf,
    pub bind: SocketAddr,
    /// The API key, when the variable named by `api_key_env` is set and not empty.
    pub api_key: Option<String>,
    /// The variable the key is read from, for messages.
    pub api_key_env: String,
    /// Requests per second a client may make on average (a burst of twice as many).
    pub requests_per_second: u32,
}

impl DashboardConfig {
    /// Refuses a bind beyond loopback without a key, and a rate limit of 0.
    pub fn check(&self) -> distill_core::Result<()> {
        if !self.bind.ip().is_loopback() && self.api_key.is_none() {
            return Err(distill_core::Error::Usage(format!(
                "--bind {}: binding beyond loopback needs an API key; set {} to a secret (clients send it as `Authorization: Bearer <key>`), or bind 127.0.0.1",
                self.bind, self.api_key_env
            )));
        }
        if self.requests_per_second == 0 {
            return Err(distill_core::Error::Usage("--rate-limit must be at least 1 request per second".into()));
        }
        Ok(())
    }
}

/// Binds, prints the address (`dashboard: http://ADDR/`) on stdout, and serves until killed.
pub fn serve_forever(cfg: DashboardConfig, pipeline: Arc<dyn Pipeline>) -> distill_core::Result<()> {
    cfg.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| distill_core::Error::Other(format!("starting the server's runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|e| distill_core::Error::Other(format!("binding {}: {e} (is another server on that port? pass --bind 127.0.0.1:0 for any free port)", cfg.bind)))?;
        let addr = listener.local_addr().map_err(|e| distill_core::Error::Other(e.to_string()))?;
        let state = api::AppState::new(cfg, pipeline);
        let jobs = state.jobs.clone();
        let app = api::app(state);
        println!("dashboard: http://{addr}/");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| distill_core::Error::Other(format!("the dashboard server stopped: {e}")));
        // Ctrl-C or SIGTERM: a job started from the page stops with the server.
        jobs.stop_running();
        served
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
