//! The PNG charts of the report: loss curves (KD and CE parts, train and validation, for the
//! main run and the CE-only baseline) and token-length histograms.

use std::path::Path;

use distill_plot::{histogram, line_chart, Series};

use crate::collect::RunSummary;

/// A chart written next to `index.html`: file name and caption.
pub struct Chart {
    pub file: String,
    pub caption: String,
}

/// Metric names in the trainer's `metrics.jsonl` (`kind` "train" and "eval" lines), with labels.
const LOSS_KEYS: [(&str, &str); 5] =
    [("loss", "train loss (weighted)"), ("forward_kl", "train KD (forward KL)"), ("ce", "train CE"), ("val_kd", "validation KD"), ("val_ce", "validation CE")];

pub fn draw(s: &RunSummary, out_dir: &Path, bins: usize) -> distill_core::Result<Vec<Chart>> {
    let mut charts = Vec::new();
    let err = |e: distill_plot::Error| distill_core::Error::Other(e.to_string());
    for (run, lines) in &s.train_metrics {
        let series: Vec<Series> = LOSS_KEYS
            .iter()
            .filter_map(|(key, label)| {
                let points: Vec<(f64, f64)> = lines.iter().filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(*key)?.as_f64()?))).collect();
                (!points.is_empty()).then(|| Series { name: label.to_string(), points })
            })
            .collect();
        if series.is_empty() {
            continue;
        }
        let file = format!("loss-{run}.png");
        line_chart(&out_dir.join(&file), &format!("{run} run: loss by step"), "step", "nats / token", &series).map_err(err)?;
        charts.push(Chart { file, caption: format!("Training and validation loss, {run} run") });
    }
    if let (Some(main), Some(base)) = (s.train_metrics.get("main"), s.train_metrics.get("baseline")) {
        let series: Vec<Series> = [("main", main, "KD run"), ("baseline", base, "CE-only run")]
            .iter()
            .flat_map(|(_, lines, label)| {
                ["val_kd", "val_ce"].iter().filter_map(move |key| {
                    let points: Vec<(f64, f64)> = lines.iter().filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(*key)?.as_f64()?))).collect();
                    (!points.is_empty()).then(|| Series { name: format!("{label}: {key}"), points })
                })
            })
            .collect();
        if !series.is_empty() {
            let file = "kd-vs-ce.png".to_string();
            line_chart(&out_dir.join(&file), "held-out teacher KL and NLL: KD vs CE-only", "step", "nats / token", &series).map_err(err)?;
            charts.push(Chart { file, caption: "Does distillation help? Held-out KL to the teacher (val_kd) and NLL (val_ce), KD run vs CE-only run".into() });
        }
    }
    for (values, file, what) in [(&s.prompt_lengths, "prompt-tokens.png", "prompt"), (&s.completion_lengths, "completion-tokens.png", "completion")] {
        if values.is_empty() {
            continue;
        }
        histogram(&out_dir.join(file), &format!("{what} length"), "student tokens", values, bins).map_err(err)?;
        charts.push(Chart { file: file.to_string(), caption: format!("{what} lengths in the training shards ({} rows)", values.len()) });
    }
    Ok(charts)
}
