//! `distill dashboard`: the pipeline as the dashboard sees it ([`distill_dashboard::Pipeline`]):
//! the DAG rebuilt from the config file at each look (so an edited config shows at once, with
//! its problems), and jobs run by this same binary in a child process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use distill_core::Runner;

use crate::config::{Config, ConfigFile};
use crate::stages::{self, StageOptions};

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to listen on. Anything but loopback needs an API key (see --api-key-env).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub bind: SocketAddr,
    /// Environment variable holding the API key (bearer token). Starting or cancelling work
    /// always needs it; every request does when binding beyond loopback.
    #[arg(long, default_value = "DISTILL_DASHBOARD_KEY", value_name = "VAR")]
    pub api_key_env: String,
    /// Requests per second each client may make on average (bursts of twice as many).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub rate_limit: u32,
}

struct CliPipeline {
    config: Option<PathBuf>,
    work_dir: PathBuf,
}

impl distill_dashboard::Pipeline for CliPipeline {
    fn runner(&self) -> distill_core::Result<Runner> {
        let file = ConfigFile::open(self.config.as_deref())?;
        let cfg = Config::load(&file)?;
        cfg.check(&file, &self.work_dir)?;
        let opts = StageOptions { config_file: file.name.clone(), ..Default::default() };
        Runner::new(&self.work_dir, stages::all(&cfg, &opts)?)
    }

    fn command(&self, target: Option<&str>, force: bool) -> std::process::Command {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("distill"));
        let mut cmd = std::process::Command::new(exe);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--work-dir").arg(&self.work_dir);
        if force {
            cmd.arg("--force");
        }
        cmd.arg(target.unwrap_or("run"));
        cmd
    }
}

/// Serves the dashboard over `work_dir` until killed.
pub fn serve(args: &DashboardArgs, config: Option<PathBuf>, work_dir: PathBuf) -> distill_core::Result<()> {
    let api_key = std::env::var(&args.api_key_env).ok().filter(|k| !k.is_empty());
    // Relative paths would change meaning for the jobs' child processes only if the current
    // directory changed; absolute ones are clearer in the status and the logs.
    let work_dir = std::path::absolute(&work_dir).unwrap_or(work_dir);
    let config = config.map(|c| std::path::absolute(&c).unwrap_or(c));
    let cfg =
        distill_dashboard::DashboardConfig { work_dir: work_dir.clone(), bind: args.bind, api_key, api_key_env: args.api_key_env.clone(), requests_per_second: args.rate_limit };
    distill_dashboard::serve_forever(cfg, Arc::new(CliPipeline { config, work_dir }))
}
