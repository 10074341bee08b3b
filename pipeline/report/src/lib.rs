//! The `report` stage: `<work-dir>/report/index.html`, a page a person would rather look at
//! than read. It gathers what every other stage published (their `stats.json`, the trainer's
//! `metrics.jsonl`, the evaluator's `summary.json` files, the shards' token counts), draws PNG
//! charts and writes one static HTML file with relative links only, so the folder can be
//! copied anywhere or attached to a ticket. The dashboard's views (the DAG, the funnel, the
//! teacher over time, samples coloured by the teacher's probability) are a snapshot: the
//! dashboard API's JSON as of this run ([`snapshot`]), inlined with the dashboard's own drawing
//! code ([`VIEWS_JS`]), so the page needs no server and each view is drawn one way.
//!
//! The report never fails because an upstream stage is missing: a section without data says
//! so. It does fail on files that exist but cannot be parsed (they name the file).

mod charts;
mod collect;
pub mod funnel;
mod html;
pub mod snapshot;

use serde::{Deserialize, Serialize};

pub use collect::RunSummary;

/// `[report]`: what the page shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Title at the top of the page.
    pub title: String,
    /// Bins of the token-length histograms.
    pub histogram_bins: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { title: "distill run report".into(), histogram_bins: 30 }
    }
}

/// The drawing code of the run's views (DAG, funnel, teacher over time, coloured tokens), shared
/// by the dashboard page and this report (see `assets/views.js`).
pub const VIEWS_JS: &str = include_str!("../assets/views.js");

/// The style of those views.
pub const VIEWS_CSS: &str = include_str!("../assets/views.css");

/// Draws the report's snapshot ([`snapshot`]) with [`VIEWS_JS`].
const REPORT_JS: &str = include_str!("../assets/report.js");

/// Output format version of this stage (bump when its files change shape).
pub const SCHEMA_VERSION: u32 = 1;

/// Builds the report from the published outputs of `stages` (the stages upstream of this one).
pub fn run(ctx: &distill_core::StageContext, cfg: &ReportConfig, stages: &[&str]) -> distill_core::Result<serde_json::Value> {
    let summary = collect::gather(ctx.work_dir, stages)?;
    let images = charts::draw(&summary, &ctx.out_dir, cfg.histogram_bins)?;
    let funnel = funnel::Funnel::from_stats(|stage| summary.stages.iter().find(|(n, _)| n == stage).map(|(_, v)| v));
    let views = snapshot::gather(ctx.work_dir, stages, &funnel)?;
    let page = html::render(&cfg.title, &summary, &images, &views);
    distill_core::atomic::write_file(&ctx.out_dir.join("index.html"), page.as_bytes())?;
    distill_core::atomic::write_json(&ctx.out_dir.join("summary.json"), &summary)?;
    Ok(serde_json::json!({
        "stages_reported": summary.stages.len(),
        "charts": images.len(),
        "benchmarks": summary.evals.len(),
    }))
}
