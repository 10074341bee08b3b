//! The HTML page: plain markup and a little CSS, relative links only; the views it shares with
//! the dashboard are drawn by the inlined `views.js` from the inlined snapshot.

use std::fmt::Write;

use crate::charts::Chart;
use crate::collect::RunSummary;

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn number(v: &serde_json::Value) -> Option<String> {
    let x = v.as_f64()?;
    Some(if v.is_u64() || v.is_i64() {
        format!("{}", v)
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    })
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}\
th:first-child,td:first-child,td:nth-child(2){text-align:left}th{background:#f0f3f7}figure{margin:1.5em 0}\
img{max-width:100%;border:1px solid #ddd}h2{border-bottom:2px solid #1f77b4;padding-bottom:4px}";

pub fn render(title: &str, s: &RunSummary, charts: &[Chart], views: &serde_json::Value) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}\n{css}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title),
        css = crate::VIEWS_CSS
    );
    // The dashboard's views, filled in by the scripts at the end from the snapshot.
    let _ = writeln!(
        h,
        "<h2>Pipeline</h2><p class=\"muted\">The stages as of this report.</p><svg id=\"dag\" width=\"100%\" height=\"150\" role=\"img\" aria-label=\"the stage DAG\"></svg>"
    );
    let _ = writeln!(h, "<h2>Funnel</h2><div id=\"funnel\" class=\"muted\">No stage has run yet.</div>");
    teacher(&mut h, s);
    let _ = writeln!(
        h,
        "<div class=\"legend\" id=\"teacher-legend\"></div><svg id=\"teacher-counts\" width=\"100%\" height=\"220\"></svg><svg id=\"teacher-cost\" width=\"100%\" height=\"160\"></svg><div id=\"teacher-note\" class=\"muted\"></div>"
    );
    let _ = writeln!(h, "<h2>Samples</h2><p class=\"muted\">Kept samples, each token coloured by the teacher's probability; hover a token for its top-k.</p><div id=\"samples\"></div><div id=\"tip\" class=\"tip\" hidden></div>");
    soft_labels(&mut h, s);
    evals(&mut h, s);
    let _ = writeln!(h, "<h2>Charts</h2>");
    if charts.is_empty() {
        let _ = writeln!(h, "<p class=\"muted\">No training metrics or shards yet.</p>");
    }
    for c in charts {
        let _ = writeln!(h, "<figure><img src=\"{f}\" alt=\"{c}\"><figcaption>{c}</figcaption></figure>", f = escape(&c.file), c = escape(&c.caption));
    }
    let _ = writeln!(h, "<h2>Stage outputs</h2><ul>");
    for (stage, _) in &s.stages {
        let _ = writeln!(h, "<li><a href=\"../{s}/stats.json\">{s}/stats.json</a> · <a href=\"../{s}/manifest.json\">manifest</a></li>", s = escape(stage));
    }
    let _ = writeln!(h, "</ul>");
    let _ = writeln!(h, "<script>const SNAPSHOT = {};</script>", crate::snapshot::script_json(views));
    let _ = writeln!(h, "<script>{}</script>\n<script>{}</script>\n</body></html>", crate::VIEWS_JS, crate::REPORT_JS);
    h
}

fn teacher(h: &mut String, s: &RunSummary) {
    let Some((_, t)) = s.stages.iter().find(|(n, _)| n == "teacher") else { return };
    let get = |k: &str| t.get(k).and_then(number).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        h,
        "<h2>Teacher</h2><table><tr><th>prompts</th><th>requested</th><th>from cache</th><th>failed</th><th>prompt tokens</th><th>completion tokens</th><th>cost (USD)</th><th>rate limited</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        get("prompts"), get("requested"), get("from_cache"), get("failed"), get("prompt_tokens"), get("completion_tokens"), get("cost_usd"), get("rate_limited")
    );
}

/// How much of the teacher's answers carries soft labels (the shards stage's coverage), and a
/// plain line for rows that train on the hard label alone and why.
fn soft_labels(h: &mut String, s: &RunSummary) {
    let Some((_, st)) = s.stages.iter().find(|(n, _)| n == "shards") else { return };
    let pct = |k: &str| st.get(k).and_then(|v| v.as_f64()).map(|x| format!("{:.1}%", 100.0 * x)).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        h,
        "<h2>Soft labels</h2><table><tr><th>completion bytes with soft labels</th><th>teacher probability captured</th><th>hard-label-only rows</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        pct("soft_label_byte_share"),
        pct("teacher_mass_captured"),
        st.get("hard_label_only_rows").and_then(number).unwrap_or_else(|| "-".into())
    );
    let count = |k: &str| st.get("alignment").and_then(|a| a.get(k)).and_then(|v| v.as_u64()).unwrap_or(0);
    let why = [
        ("no_teacher_logprobs", "the teacher sent no log-probs (Anthropic's API and OpenAI's reasoning models never do)"),
        ("teacher_bytes_mismatch", "the teacher's tokens spell other text than the answer"),
        ("boundaries_differ", "no teacher chunk of at most max_chunk_tokens tokens lines up with the student's"),
        ("bad_teacher_logprob", "a log-prob was not a number"),
        ("empty_middle", "fill-in-the-middle rows whose middle is empty: only their end-of-text is trained"),
    ];
    for (key, text) in why {
        let n = count(key);
        if n > 0 {
            let _ = writeln!(h, "<p>{n} rows train on the hard label only: {} (<code>{key}</code>).</p>", escape(text));
        }
    }
    // Fill-in-the-middle rows (`[shards] fim_rate`), by order.
    let fim: Vec<(String, u64)> = st.get("fim_rows").and_then(|v| v.as_object()).into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect();
    if !fim.is_empty() {
        let total: u64 = fim.iter().map(|(_, n)| n).sum();
        let parts: Vec<String> = fim.iter().map(|(k, n)| format!("{n} {}", escape(&k.to_uppercase()))).collect();
        let _ = writeln!(h, "<p>{total} training rows are fill-in-the-middle rows ({}).</p>", parts.join(", "));
    }
}

fn evals(h: &mut String, s: &RunSummary) {
    let _ = writeln!(h, "<h2>Scores</h2>");
    if s.evals.is_empty() {
        let _ = writeln!(h, "<p class=\"muted\">No evaluation yet.</p>");
        return;
    }
    let mut ks: Vec<String> = s.evals.values().filter_map(|v| v.as_object()).flat_map(|m| m.keys().filter(|k| k.starts_with("pass@")).cloned().collect::<Vec<_>>()).collect();
    ks.sort_by_key(|k| k[5..].parse::<u32>().unwrap_or(u32::MAX));
    ks.dedup();
    let _ = write!(h, "<table><tr><th>model : benchmark</th>");
    for k in &ks {
        let _ = write!(h, "<th>{}</th>", escape(k));
    }
    let _ = writeln!(h, "<th>pass@1 95% CI</th><th>samples</th></tr>");
    for (name, v) in &s.evals {
        let who = if name.starts_with("teacher:") { name.clone() } else { format!("student:{name}") };
        let _ = write!(h, "<tr><td>{}</td>", escape(&who));
        for k in &ks {
            let cell = v.get(k).and_then(|x| x.as_f64()).map(|x| format!("{:.1}%", 100.0 * x)).unwrap_or_else(|| "-".into());
            let _ = write!(h, "<td>{cell}</td>");
        }
        let ci = v
            .get("pass@1_ci95")
            .and_then(|c| c.as_array())
            .and_then(|a| Some(format!("{:.1}% – {:.1}%", 100.0 * a.first()?.as_f64()?, 100.0 * a.get(1)?.as_f64()?)))
            .unwrap_or_else(|| "-".into());
        let samples = v.get("samples").and_then(number).unwrap_or_else(|| "-".into());
        let _ = writeln!(h, "<td>{ci}</td><td>{samples}</td></tr>");
    }
    let _ = writeln!(h, "</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
