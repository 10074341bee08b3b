//! Starting and stopping the server: [`start`] loads the model folder, binds the socket
//! (port 0 picks a free one), and serves on a thread of its own with its own tokio runtime, so
//! synchronous callers (the pipeline, tests) and async ones alike can use it;
//! [`ServerHandle::shutdown`] stops accepting, lets requests in flight finish (up to
//! [`GRACE`]) and joins. [`serve_forever`] is the `distill serve` subcommand: it serves until
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use candle_core::Device;
use serde_json::json;
use tokio::sync::watch;

use crate::api_error::ApiError;
use crate::chat::chat_completions;
use crate::completions::completions;
use crate::config::{ServeConfig, Settings};
use crate::engine::{Engine, EngineStats};
use crate::error::{Error, Result};
use crate::generate::{now_unix, AppState};
use crate::guard::{guard, Guard, RateLimiter};
use crate::vocab::Vocab;

/// How long shutdown waits for requests in flight before closing their connections.
pub const GRACE: Duration = Duration::from_secs(10);

/// A running server; dropping it shuts it down too.
pub struct ServerHandle {
    addr: SocketAddr,
    model_name: String,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    stats: Arc<EngineStats>,
}

impl ServerHandle {
    /// The bound address (the real port when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, what a client's `base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The name requests must use in `model`.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// Batches, sequences and tokens decoded so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Stops accepting connections, waits for requests in flight (up to [`GRACE`]) and joins
    /// the server thread. Blocking: from async code, call it inside `spawn_blocking`.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let r = t.join().map_err(|_| Error::EngineStopped("the server thread panicked".into()))?;
            r.map_err(|source| Error::Io { what: format!("serving on {}", self.addr), source })?;
            tracing::info!(addr = %self.addr, "server stopped");
        }
        Ok(())
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            tracing::warn!("stopping the server: {e}");
        }
    }
}

/// Validates `cfg`, loads the model and starts serving (see the module docs).
pub fn start(cfg: &ServeConfig) -> Result<ServerHandle> {
    start_with(cfg.settings("[serve] config")?)
}

/// Like [`start`], from already validated settings.
pub fn start_with(settings: Settings) -> Result<ServerHandle> {
    let dir = &settings.model_dir;
    let weights = distill_model::weights::hf_weight_files(dir)?;
    for f in [dir.join("config.json"), dir.join("tokenizer.json")].iter().chain(&weights) {
        if !f.exists() {
            return Err(Error::model_dir(
                f.clone(),
                "missing: a model folder holds config.json, model.safetensors (or its shards and index) and tokenizer.json (train or export one first)",
            ));
        }
    }
    let mut model = distill_model::load_hf_dir(dir, &Device::Cpu)?;
    if let Some(q) = settings.quantize {
        let stats = model.quantize(q)?;
        tracing::info!(quantize = %q, matrices = ?stats.matrices, mib_before = stats.dense_bytes >> 20, mib_after = stats.quantized_bytes >> 20, "weights quantized");
    }
    let cfg = model.config().clone();
    let vocab = Arc::new(Vocab::load(dir, &cfg.eos_token_ids(), &cfg.bos_token_ids())?);
    if vocab.size() > cfg.vocab_size() {
        return Err(Error::model_dir(
            dir.join("tokenizer.json"),
            format!("the tokenizer has {} tokens but the model only {} (config.json vocab_size): they do not belong together", vocab.size(), cfg.vocab_size()),
        ));
    }
    let engine = Engine::spawn(model, vocab.clone(), settings.max_batch_size, settings.batch_wait)?;
    let stats = engine.stats.clone();
    let state = Arc::new(AppState {
        engine,
        vocab,
        model_name: settings.model_name.clone(),
        max_tokens_limit: settings.max_tokens_limit,
        default_max_tokens: settings.default_max_tokens,
        truncate_to_context: settings.truncate_to_context,
        chat_template: settings.chat_template,
        created: now_unix(),
    });
    let guard_state = Guard { api_key: settings.api_key.clone(), limiter: (settings.requests_per_minute > 0).then(|| Arc::new(RateLimiter::new(settings.requests_per_minute))) };
    let app = router(state, guard_state);

    let listener = std::net::TcpListener::bind(settings.addr)
        .map_err(|source| Error::Io { what: format!("binding {} (is another server on this port? set [serve] port, or 0 for any free port)", settings.addr), source })?;
    listener.set_nonblocking(true).map_err(|source| Error::Io { what: "configuring the socket".into(), source })?;
    let addr = listener.local_addr().map_err(|source| Error::Io { what: "reading the bound address".into(), source })?;
    let (stop, stop_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("distill-serve-http".into())
        .spawn(move || run(listener, app, stop_rx))
        .map_err(|source| Error::Io { what: "starting the server thread".into(), source })?;
    tracing::info!(
        %addr,
        model = %settings.model_name,
        auth = settings.api_key.is_some(),
        requests_per_minute = settings.requests_per_minute,
        max_batch_size = settings.max_batch_size,
        "serving {} at http://{addr}/v1",
        settings.model_dir.display()
    );
    Ok(ServerHandle { addr, model_name: settings.model_name, stop, thread: Some(thread), stats })
}

fn run(listener: std::net::TcpListener, app: Router, stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("distill-serve-io").build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut graceful = stop.clone();
        let mut hard = stop;
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = graceful.wait_for(|s| *s).await;
        });
        tokio::select! {
            r = server => r,
            _ = async move { let _ = hard.wait_for(|s| *s).await; tokio::time::sleep(GRACE).await } => {
                tracing::warn!("requests still running after {GRACE:?}; closing their connections");
                Ok(())
            }
        }
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The routes; every `/v1` path passes the [`guard`] (auth, rate limit).
pub fn router(state: Arc<AppState>, g: Guard) -> Router {
    let models = {
        let (name, created) = (state.model_name.clone(), state.created);
        move || {
            let name = name.clone();
            async move { Json(json!({"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "distill"}]})) }
        }
    };
    let one_model = {
        let (name, created) = (state.model_name.clone(), state.created);
        move |axum::extract::Path(id): axum::extract::Path<String>| {
            let name = name.clone();
            async move {
                if id == name {
                    Json(json!({"id": name, "object": "model", "created": created, "owned_by": "distill"})).into_response()
                } else {
                    ApiError::model_not_found(&id).into_response()
                }
            }
        }
    };
    let v1 = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(one_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .method_not_allowed_fallback(|m: Method, u: Uri| async move { ApiError::method_not_allowed(m.as_str(), u.path()).into_response() })
        .fallback(|m: Method, u: Uri| async move { ApiError::no_route(m.as_str(), u.path()).into_response() })
        .layer(axum::middleware::from_fn_with_state(g, guard))
        .with_state(state);
    // Liveness for the pipeline's start-up wait: no key, no rate limit.
    Router::new().route("/health", get(|| async { "ok" })).merge(v1)
}

/// `distill serve`: serves until Ctrl-C or SIGTERM, then shuts down gracefully.
pub fn serve_forever(cfg: &ServeConfig) -> Result<()> {
    let handle = start(cfg)?;
    eprintln!("distill serve: model '{}' at {} (Ctrl-C to stop)", handle.model_name(), handle.base_url());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| Error::Io { what: "starting the signal runtime".into(), source })?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    });
    tracing::info!("shutting down");
    handle.shutdown()
}
