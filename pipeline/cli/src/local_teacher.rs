//! The offline default's teacher: the `teacher-bootstrap` model, served by `distill serve` on
//! a free loopback port for as long as a stage needs it, then stopped.
//!
//! The served model's name carries the fingerprint of the `teacher-bootstrap` output, so the
//! teacher cache (keyed by model name among other things) never mixes answers of two
//! different local teachers, and re-running with the same model hits the cache.

use std::path::Path;

use distill_core::manifest::Manifest;
use distill_teacher::TeacherConfig;

use crate::config::Config;

/// The model name the local teacher is served under (from its stage manifest).
pub fn model_name(work_dir: &Path) -> distill_core::Result<String> {
    let dir = work_dir.join("teacher-bootstrap");
    let manifest =
        Manifest::read(&dir)?.ok_or_else(|| distill_core::Error::Other(format!("{}: the local teacher has not been trained; run `distill teacher-bootstrap`", dir.display())))?;
    Ok(format!("local-teacher-{}", &manifest.fingerprint[..12]))
}

/// A running local teacher, or nothing for a remote one; dropping it stops the server.
pub struct Teacher {
    pub config: TeacherConfig,
    _server: Option<distill_serve::ServerHandle>,
}

/// The teacher settings to use now: for a remote teacher the configured ones; for the local
/// teacher, a server started over the bootstrap model and settings pointing at it.
pub fn start(cfg: &Config, work_dir: &Path) -> distill_core::Result<Teacher> {
    if !cfg.local_teacher() {
        return Ok(Teacher { config: cfg.teacher.clone(), _server: None });
    }
    let mut serve = cfg.serve.clone();
    serve.model_dir = work_dir.join("teacher-bootstrap").display().to_string();
    serve.host = "127.0.0.1".into();
    serve.port = 0;
    serve.model_name = model_name(work_dir)?;
    let server = distill_serve::start(&serve).map_err(|e| distill_core::Error::Other(format!("starting the local teacher: {e}")))?;
    tracing::info!(url = %server.base_url(), model = %serve.model_name, "local teacher serving");
    let mut config = cfg.teacher.clone();
    config.base_url = server.base_url();
    config.model = serve.model_name;
    Ok(Teacher { config, _server: Some(server) })
}

/// Settings for commands that only read the cache (`--dry-run`): the local teacher's model
/// name without starting it.
pub fn offline_config(cfg: &Config, work_dir: &Path) -> distill_core::Result<TeacherConfig> {
    let model = if cfg.local_teacher() { model_name(work_dir)? } else { String::new() };
    Ok(unserved_config(cfg, &model))
}

/// The `[teacher]` settings without a server: for the local teacher, an address nothing
/// listens on and `model` as its name; a remote teacher's settings as they are.
pub fn unserved_config(cfg: &Config, model: &str) -> TeacherConfig {
    let mut config = cfg.teacher.clone();
    if cfg.local_teacher() {
        config.base_url = "http://127.0.0.1:9/v1".into();
        config.model = model.into();
    }
    config
}
