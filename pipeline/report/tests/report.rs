//! The report stage over a work dir with real stage outputs (stats, metrics, an eval summary,
//! a Parquet shard), then the page rendered in headless Chromium: the screenshot is not blank.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use distill_core::runner::RunOptions;
use distill_core::{Runner, StageDef};
use serde_json::json;

const UPSTREAM: [&str; 5] = ["teacher", "filter", "shards", "train", "eval"];

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Lines as the trainer writes them: `kind` "train" every step, "eval" every 10.
fn metrics(steps: usize, scale: f64) -> String {
    let mut out = String::new();
    for s in 0..steps {
        let loss = scale * 4.0 / (1.0 + s as f64 / 10.0);
        out += &format!("{}\n", json!({"kind": "train", "step": s, "loss": loss, "forward_kl": loss * 0.7, "ce": loss * 3.0}));
        if s % 10 == 0 {
            out += &format!("{}\n", json!({"kind": "eval", "step": s, "val_kd": loss * 0.5, "val_ce": loss * 3.3}));
        }
    }
    out
}

fn write_shard(path: &Path) {
    let mut masks = ListBuilder::new(UInt8Builder::new());
    for row in 0..40u8 {
        for i in 0..(20 + row) {
            masks.values().append_value(u8::from(i >= 10 + row / 2));
        }
        masks.append(true);
    }
    let column: ArrayRef = Arc::new(masks.finish());
    let schema = Arc::new(Schema::new(vec![Field::new("loss_mask", column.data_type().clone(), true)]));
    assert!(matches!(column.data_type(), DataType::List(_)));
    let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn run_report(work: &Path) {
    let def = StageDef {
        name: "report",
        deps: vec![],
        schema_version: 1,
        config: json!({}),
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(|ctx| distill_report::run(ctx, &distill_report::ReportConfig::default(), &UPSTREAM)),
    };
    Runner::new(work, vec![def]).unwrap().run(&["report"], RunOptions { quiet: true, ..Default::default() }).unwrap();
}

fn make_run(work: &Path) {
    write(
        &work.join("teacher/stats.json"),
        r#"{"prompts": 120, "completed": 118, "from_cache": 20, "requested": 98, "failed": 2, "failed_by_reason": {"bad_request": 2}, "prompt_tokens": 4321, "completion_tokens": 9876, "cost_usd": 0.0, "rate_limited": 3}"#,
    );
    // As the filter writes it: the funnel in the order the filters ran, drops by filter and reason.
    write(
        &work.join("filter/stats.json"),
        r#"{"samples": 236, "kept": 150, "dropped": 86, "funnel": [{"filter": "length", "in": 236, "out": 236, "dropped": 0}, {"filter": "parse", "in": 236, "out": 150, "dropped": 86}], "dropped_by_reason": {"parse": {"no_code": 40, "syntax_error": 46}}}"#,
    );
    write(
        &work.join("shards/stats.json"),
        r#"{"total_rows": 150, "hard_label_only_rows": 12, "soft_label_byte_share": 0.9312, "teacher_mass_captured": 0.8126, "alignment": {"chunks": 138, "no_teacher_logprobs": 12}, "fim_rows": {"psm": 31, "spm": 29}}"#,
    );
    write(&work.join("train/metrics.jsonl"), &metrics(50, 1.0));
    write(&work.join("train-baseline/metrics.jsonl"), &metrics(50, 1.2));
    write(&work.join("eval/humaneval/summary.json"), r#"{"pass@1": 0.125, "pass@10": 0.3, "pass@1_ci95": [0.08, 0.17], "samples": 1640}"#);
    write_shard(&work.join("shards/train-00000.parquet"));
}

#[test]
fn the_report_shows_every_section() {
    let work = tempfile::tempdir().unwrap();
    make_run(work.path());
    run_report(work.path());
    let page = std::fs::read_to_string(work.path().join("report/index.html")).unwrap();
    // The funnel is drawn by the inlined views.js from the inlined snapshot (the dashboard's
    // /api/v1/funnel answer); the browser test of crates/cli's dashboard.rs checks the drawing.
    let snapshot = page.split_once("const SNAPSHOT = ").and_then(|(_, rest)| rest.split_once(";</script>")).map(|(json, _)| json).expect("the snapshot is inlined");
    let snapshot: serde_json::Value = serde_json::from_str(snapshot).unwrap();
    let steps = snapshot["funnel"]["steps"].as_array().unwrap();
    let step = |label: &str| steps.iter().find(|s| s["label"] == label).unwrap_or_else(|| panic!("no step {label}: {steps:?}")).clone();
    assert_eq!((step("filter: parse")["input"].as_u64(), step("filter: parse")["output"].as_u64()), (Some(236), Some(150)));
    assert_eq!(step("filter: parse")["reasons"], json!([{"reason": "syntax_error", "count": 46}, {"reason": "no_code", "count": 40}]));
    assert_eq!(step("prompts answered by the teacher")["reasons"], json!([{"reason": "bad_request", "count": 2}]));
    assert!(page.contains(distill_report::VIEWS_JS), "the dashboard's drawing code is inlined");
    for needle in [
        "<h2>Funnel</h2>",
        "<div id=\"funnel\"",
        "9876",
        "student:humaneval",
        "12.5%",
        "30.0%",
        "8.0% – 17.0%",
        "loss-main.png",
        "loss-baseline.png",
        "kd-vs-ce.png",
        "completion-tokens.png",
        "href=\"../teacher/stats.json\"",
        "<h2>Soft labels</h2>",
        "<td>93.1%</td><td>81.3%</td><td>12</td>",
        "12 rows train on the hard label only: the teacher sent no log-probs",
        "60 training rows are fill-in-the-middle rows (31 PSM, 29 SPM)",
    ] {
        assert!(page.contains(needle), "index.html lacks {needle:?}");
    }
    for png in ["loss-main.png", "loss-baseline.png", "kd-vs-ce.png", "prompt-tokens.png", "completion-tokens.png"] {
        let img = image::open(work.path().join("report").join(png)).unwrap().to_rgb8();
        let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(ink > 5_000, "{png} has almost nothing drawn ({ink} pixels)");
    }
    assert!(!page.contains("src=\"/"), "links are relative");
    assert!(!page.contains("failed_by_reason") && !page.contains("completion_tokens</td>"), "the funnel is steps and reasons, not a dump of every counter");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.path().join("report/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["completion_lengths"].as_array().unwrap().len(), 40);
}

#[test]
fn an_empty_run_still_renders_and_says_so() {
    let work = tempfile::tempdir().unwrap();
    run_report(work.path());
    let page = std::fs::read_to_string(work.path().join("report/index.html")).unwrap();
    assert!(page.contains("No stage has run yet."));
    assert!(page.contains("No evaluation yet."));
}

#[test]
fn headless_chromium_renders_a_page_that_is_not_blank() {
    let work = tempfile::tempdir().unwrap();
    make_run(work.path());
    run_report(work.path());
    let shot = work.path().join("shot.png");
    let profile = work.path().join("chromium-profile");
    let status = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1100,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", work.path().join("report/index.html").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("chromium is installed by scripts/system-deps.sh (run `make test`)");
    assert!(status.success());
    let img = image::open(&shot).unwrap().to_rgb8();
    let total = (img.width() * img.height()) as usize;
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let chart_blue = img.pixels().filter(|p| p.0 == [31, 119, 180]).count();
    assert!(ink * 50 > total, "screenshot is nearly blank: {ink} of {total} pixels");
    assert!(chart_blue > 1_000, "the charts' lines are visible in the screenshot ({chart_blue} pixels)");
}
