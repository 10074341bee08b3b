// The dashboard page: plain JavaScript and SVG, no third-party code, everything from /api/v1.
// The views themselves (DAG, funnel, teacher charts, coloured tokens) are drawn by views.js,
// the report crate's file that `report/index.html` inlines too.
// Event streams are read with fetch() rather than EventSource so that the API key can be sent
// as a header when the server needs one.
"use strict";

const $ = (id) => document.getElementById(id);
$("key").value = sessionStorage.getItem("distill-key") || "";
$("key").addEventListener("change", () => sessionStorage.setItem("distill-key", $("key").value));

function headers() {
  const k = $("key").value.trim();
  return k ? { Authorization: "Bearer " + k } : {};
}

async function api(path, opts = {}) {
  const r = await fetch("/api/v1" + path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body.error && body.error.message) || r.status + " " + r.statusText);
  return body;
}

// Server-sent events over fetch: calls onEvent(type, data) for each event; reconnects with the
// last id after a dropped connection.
async function stream(path, onEvent) {
  let last = null;
  for (;;) {
    try {
      const h = headers();
      if (last !== null) h["Last-Event-ID"] = last;
      const r = await fetch("/api/v1" + path, { headers: h });
      if (!r.ok) throw new Error(r.status);
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let type = "message", data = [], id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (id !== null) last = id;
          if (data.length && onEvent(type, data.join("\n")) === false) return;
        }
      }
    } catch (e) { /* retried below */ }
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

// ---- DAG -------------------------------------------------------------------------------
let stages = [];
let selected = null;

function showDag(list) {
  const svg = $("dag");
  drawDag(svg, list);
  svg.querySelectorAll(".node").forEach((g) => g.addEventListener("click", () => { selected = g.dataset.stage; showStage(); }));
}

async function showStage() {
  const s = stages.find((x) => x.name === selected);
  if (!s) return;
  let html = `<b>${esc(s.name)}</b>: ${esc(s.state.replace(/_/g, " "))}`;
  if (s.last_elapsed_secs != null) html += ` (last run ${s.last_elapsed_secs.toFixed(1)} s)`;
  if (s.reasons.length) html += "<ul>" + s.reasons.map((r) => `<li>${esc(r)}</li>`).join("") + "</ul>";
  html += ` <button data-run="${esc(s.name)}">run ${esc(s.name)}</button> <button data-run="${esc(s.name)}" data-force="1">force</button> <button data-run="run">run everything</button>`;
  if (s.has_stats) html += ` <a href="/api/v1/stages/${encodeURIComponent(s.name)}/stats" target="_blank">stats.json</a> · <a href="/api/v1/stages/${encodeURIComponent(s.name)}/manifest" target="_blank">manifest</a>`;
  $("stage-detail").innerHTML = html;
  $("stage-detail").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => startJob(b.dataset.run, !!b.dataset.force)));
}

async function startJob(target, force) {
  try {
    const job = await api("/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ target, force }) });
    followJob(job.id);
  } catch (e) { alert(e.message); }
}

let followed = null;
function followJob(id) {
  if (followed === id) return;
  followed = id;
  const pre = document.createElement("pre");
  pre.id = "job-log";
  const box = $("jobs");
  box.innerHTML = `<p>job ${id} log <button id="cancel">cancel</button></p>`;
  box.appendChild(pre);
  $("cancel").addEventListener("click", () => api(`/jobs/${id}/cancel`, { method: "POST" }).catch((e) => alert(e.message)));
  stream(`/jobs/${id}/log`, (type, data) => {
    if (type === "line") { pre.textContent += data + "\n"; pre.scrollTop = pre.scrollHeight; }
    if (type === "end") { pre.textContent += "-- " + JSON.parse(data).state + "\n"; return false; }
  });
}

async function refreshStatus() {
  try {
    const st = await api("/status");
    stages = st.stages;
    $("workdir").textContent = st.work_dir;
    $("conn").textContent = "";
    showDag(stages);
    if (selected) showStage();
    const running = (st.jobs || []).find((j) => j.state === "running");
    if (running) followJob(running.id);
  } catch (e) { $("conn").textContent = "status: " + e.message; }
}

// ---- Funnel, teacher -------------------------------------------------------------------
async function refreshFunnel() {
  try {
    const f = await api("/funnel");
    if (!f.steps.length) return;
    $("funnel").innerHTML = funnelHtml(f);
    $("funnel").classList.remove("muted");
  } catch (e) { /* a stage may be half-published; next poll */ }
  try {
    const t = await api("/stages/teacher/stats");
    const cells = [["prompts", t.prompts], ["requests sent", t.requested], ["HTTP requests", t.http_requests], ["from cache", t.from_cache], ["rate limited (429)", t.rate_limited], ["retries", t.retries], ["failed", t.failed], ["prompt tokens", t.prompt_tokens], ["completion tokens", t.completion_tokens], ["cost (USD)", t.cost_usd], ["seconds", t.elapsed_secs && t.elapsed_secs.toFixed(1)]];
    $("teacher").innerHTML = "<table><tr>" + cells.map((c) => `<th>${c[0]}</th>`).join("") + "</tr><tr>" + cells.map((c) => `<td>${c[1] ?? "-"}</td>`).join("") + "</tr></table>";
    $("teacher").classList.remove("muted");
  } catch (e) { /* not run yet */ }
}

// ---- Teacher over time ---------------------------------------------------------------
async function refreshTeacherSeries() {
  let v;
  try { v = await api("/teacher/series"); } catch (e) { return; }
  drawTeacherSeries(v, { counts: $("teacher-counts"), cost: $("teacher-cost"), legend: $("teacher-legend"), note: $("teacher-note") });
}

// ---- Loss curves -----------------------------------------------------------------------
const SERIES = [
  { run: "train", key: "forward_kl", label: "KD run: train KD (forward KL)", color: "#1f77b4" },
  { run: "train", key: "ce", label: "KD run: train CE", color: "#ff7f0e" },
  { run: "train", key: "val_kd", label: "KD run: held-out KD", color: "#2ca02c" },
  { run: "train", key: "val_ce", label: "KD run: held-out CE", color: "#d62728" },
  { run: "train-baseline", key: "ce", label: "CE-only run: train CE", color: "#9467bd" },
  { run: "train-baseline", key: "val_kd", label: "CE-only run: held-out KD", color: "#8c564b" },
  { run: "train-baseline", key: "val_ce", label: "CE-only run: held-out CE", color: "#e377c2" },
];
const metrics = { train: [], "train-baseline": [] };
let lossQueued = false;

function drawLoss() {
  lossQueued = false;
  const svg = $("loss");
  const W = svg.clientWidth || 900, H = 300, L = 50, B = 28, T = 10, R = 10;
  const series = SERIES.map((s) => ({ ...s, pts: metrics[s.run].filter((m) => typeof m[s.key] === "number" && typeof m.step === "number").map((m) => [m.step, m[s.key]]) })).filter((s) => s.pts.length);
  const all = series.flatMap((s) => s.pts);
  svg.dataset.points = all.length;
  if (!all.length) { svg.innerHTML = `<text x="20" y="30" class="muted">No training metrics yet.</text>`; $("loss-legend").innerHTML = ""; return; }
  const x0 = Math.min(...all.map((p) => p[0])), x1 = Math.max(...all.map((p) => p[0]), x0 + 1);
  const y1 = Math.max(...all.map((p) => p[1])) * 1.05, y0 = Math.min(0, ...all.map((p) => p[1]));
  const X = (x) => L + (W - L - R) * (x - x0) / (x1 - x0), Y = (y) => T + (H - T - B) * (1 - (y - y0) / (y1 - y0 || 1));
  let out = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>`;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    out += `<text x="${L - 4}" y="${Y(y) + 4}" font-size="11" text-anchor="end">${y.toFixed(2)}</text><line x1="${L}" x2="${W - R}" y1="${Y(y)}" y2="${Y(y)}" stroke="#eee"/>`;
    const x = x0 + (x1 - x0) * i / 4;
    out += `<text x="${X(x)}" y="${H - 8}" font-size="11" text-anchor="middle">${Math.round(x)}</text>`;
  }
  for (const s of series) {
    out += `<polyline class="series" data-key="${s.run}:${s.key}" data-n="${s.pts.length}" fill="none" stroke="${s.color}" stroke-width="2" points="${s.pts.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ")}"/>`;
  }
  svg.innerHTML = out;
  $("loss-legend").innerHTML = series.map((s) => `<span><i style="background:${s.color}"></i>${esc(s.label)}</span>`).join("");
  $("loss-note").textContent = "nats per token against the optimizer step; KD vs CE-only: compare the held-out curves of the two runs.";
}

function followMetrics(run) {
  stream(`/train/${run}/metrics/stream`, (type, data) => {
    // A new run started: show its stage running now rather than at the next poll.
    if (type === "reset") { metrics[run] = []; refreshStatus(); }
    if (type === "metric") { try { metrics[run].push(JSON.parse(data)); } catch (e) { return; } }
    if (!lossQueued) { lossQueued = true; setTimeout(drawLoss, 200); }
  });
}

// ---- Sample browser --------------------------------------------------------------------
let page = { offset: 0, limit: 40, total: 0 };

// Shard rows page by index (no facets): the student's tokens with the teacher's top-k.
async function loadRows(seq) {
  const v = await api(`/shard-rows?split=train&offset=${page.offset}&limit=${page.limit}`);
  if (seq !== listSeq) return;
  page.total = v.total;
  $("sample-filter").innerHTML = '<option value="">train split</option>';
  $("page-info").textContent = `${v.total ? page.offset + 1 : 0}-${page.offset + v.rows.length} of ${v.total}`;
  $("sample-list").innerHTML = v.rows.map((r) => `<li data-id="${esc(r.row_id)}">${esc(r.row_id)} <span class="muted">${esc(r.alignment)} · ${r.tokens} tokens</span></li>`).join("");
  $("sample-list").querySelectorAll("li").forEach((li, i) => li.addEventListener("click", () => showRow(v.rows[i].index)));
}

// Colour a shard row by the teacher's probabilities or the trained student's.
let rowColour = "teacher";
let shownRow = null;

async function showRow(index) {
  shownRow = index;
  const view = $("sample-view");
  let r, note = "";
  try {
    r = await api(`/shard-rows/${index}?split=train${rowColour === "student" ? "&student=1" : ""}`);
  } catch (e) {
    if (rowColour !== "student") throw e;
    r = await api(`/shard-rows/${index}?split=train`);
    note = `student: ${e.message}`;
  }
  view.classList.remove("muted");
  view.innerHTML = `<b>${esc(r.row_id)}</b> (${esc(r.alignment)}; prompt in grey, completion coloured by the ${rowColour}'s probability of the token) ` +
    `<label>colour by <select id="row-colour"><option value="teacher">teacher</option><option value="student">student (trained model)</option></select></label> <span id="row-note" class="muted">${esc(note)}</span><div class="tokens" id="tokens"></div>`;
  $("row-colour").value = rowColour;
  $("row-colour").addEventListener("change", () => { rowColour = $("row-colour").value; showRow(shownRow); });
  const toks = rowTokens(r, rowColour);
  $("tokens").innerHTML = tokensHtml(toks);
  bindTips($("tokens"), $("tip"), toks);
}

// Lists answer out of order when the kind changes quickly: only the latest one is drawn.
let listSeq = 0;

async function loadList() {
  const seq = ++listSeq;
  const kind = $("sample-kind").value;
  if (kind === "shard-rows") {
    try { await loadRows(seq); } catch (e) { $("sample-list").innerHTML = `<li class="muted">${esc(e.message)}</li>`; }
    return;
  }
  const f = $("sample-filter").value;
  let q = `?offset=${page.offset}&limit=${page.limit}`;
  if (f) q += "&" + f;
  try {
    const v = await api(`/records/${kind}${q}`);
    if (seq !== listSeq) return;
    page.total = v.matching;
    $("page-info").textContent = `${v.matching ? page.offset + 1 : 0}-${page.offset + v.records.length} of ${v.matching}`;
    const sel = $("sample-filter");
    if (!sel.dataset.kind || sel.dataset.kind !== kind) {
      sel.dataset.kind = kind;
      let opts = '<option value="">all</option>';
      for (const [facet, values] of Object.entries(v.facets || {})) {
        if (values.distinct_values) continue;
        for (const [val, n] of Object.entries(values)) opts += `<option value="${esc(facet)}=${encodeURIComponent(val)}">${esc(facet)}: ${esc(val)} (${n})</option>`;
      }
      sel.innerHTML = opts;
    }
    $("sample-list").innerHTML = v.records.map((r) => {
      const rec = r.record;
      const extra = rec.reason ? `${rec.filter}/${rec.reason}` : rec.scores ? Object.entries(rec.scores).map(([k, x]) => `${k} ${(+x).toFixed(2)}`).join(" ") : (rec.meta && rec.meta.task_type) || "";
      return `<li data-id="${esc(rec.id)}">${esc(rec.id)} <span class="muted">${esc(extra)}</span></li>`;
    }).join("");
    $("sample-list").querySelectorAll("li").forEach((li, i) => li.addEventListener("click", () => showRecord(kind, v.records[i].record)));
  } catch (e) { $("sample-list").innerHTML = `<li class="muted">${esc(e.message)}</li>`; }
}

async function showRecord(kind, rec) {
  const view = $("sample-view");
  view.classList.remove("muted");
  let head = `<b>${esc(rec.id)}</b>`;
  if (rec.reason) head += ` dropped by <b>${esc(rec.filter)}</b>: ${esc(rec.reason)}<pre>${esc(rec.detail || "")}</pre>`;
  const prompt = rec.prompt ? (rec.prompt.messages ? rec.prompt.messages.map((m) => m.content).join("\n") : rec.prompt.prompt) : rec.messages ? rec.messages.map((m) => m.content).join("\n") : rec.prompt || "";
  if (prompt) head += `<details><summary>prompt</summary><pre>${esc(prompt)}</pre></details>`;
  view.innerHTML = head + '<div class="tokens" id="tokens"></div>';
  // Kept samples and exclusions are "<prompt id>#<sample>"; teacher answers are prompts.
  const [pid, sample] = String(rec.id).includes("#") ? rec.id.split("#") : [rec.id, "0"];
  if (kind === "prompts") return;
  try {
    const t = await api(`/records/answers/${encodeURIComponent(pid)}/tokens?sample=${sample}`);
    const toks = answerTokens(t);
    $("tokens").innerHTML = tokensHtml(toks);
    bindTips($("tokens"), $("tip"), toks);
  } catch (e) {
    $("tokens").textContent = rec.completion || (rec.samples && rec.samples[+sample] && rec.samples[+sample].text) || e.message;
  }
}

$("sample-kind").addEventListener("change", () => { page.offset = 0; $("sample-filter").dataset.kind = ""; $("sample-filter").value = ""; loadList(); });
$("sample-filter").addEventListener("change", () => { page.offset = 0; loadList(); });
$("prev").addEventListener("click", () => { page.offset = Math.max(0, page.offset - page.limit); loadList(); });
$("next").addEventListener("click", () => { if (page.offset + page.limit < page.total) { page.offset += page.limit; loadList(); } });

// ---- Scores ----------------------------------------------------------------------------
async function refreshScores() {
  try {
    const v = await api("/evals");
    const names = Object.keys(v.benchmarks);
    if (!names.length) return;
    const pct = (x) => (x == null ? "-" : (100 * x).toFixed(1) + "%");
    let h = "<table><tr><th>benchmark</th><th>pass@1</th><th>95% CI</th><th>pass@10</th><th>samples</th><th>tasks</th></tr>";
    for (const n of names) {
      const s = v.benchmarks[n];
      const ci = s["pass@1_ci95"] ? `${pct(s["pass@1_ci95"][0])} – ${pct(s["pass@1_ci95"][1])}` : "-";
      h += `<tr data-bench="${esc(n)}"><td>${esc(n)}</td><td>${pct(s["pass@1"])}</td><td>${ci}</td><td>${pct(s["pass@10"])}</td><td>${s.samples ?? (s.counts && s.counts.samples) ?? "-"}</td><td>${(s.counts && s.counts.tasks) ?? "-"}</td></tr>`;
    }
    $("scores").innerHTML = h + "</table>";
    $("scores").classList.remove("muted");
    $("scores").querySelectorAll("tr[data-bench]").forEach((tr) => tr.addEventListener("click", () => showTasks(tr.dataset.bench, 0)));
  } catch (e) { /* not run yet */ }
}

async function showTasks(bench, offset) {
  const v = await api(`/evals/${encodeURIComponent(bench)}/results?offset=${offset}&limit=50`);
  let h = `<p><b>${esc(bench)}</b>: results ${offset + 1}-${offset + v.records.length} of ${v.matching} <button id="tprev">&larr;</button> <button id="tnext">&rarr;</button></p><table><tr><th>task</th><th>passed</th><th>result</th></tr>`;
  for (const r of v.records) {
    const x = r.record;
    h += `<tr><td><details><summary>${esc(x.task_id)}</summary><pre>${esc(x.completion || "")}</pre></details></td><td class="${x.passed ? "task-pass" : "task-fail"}">${x.passed ? "yes" : "no"}</td><td style="text-align:left"><pre>${esc(x.result || "")}</pre></td></tr>`;
  }
  $("tasks").innerHTML = h + "</table>";
  $("tprev").addEventListener("click", () => showTasks(bench, Math.max(0, offset - 50)));
  $("tnext").addEventListener("click", () => offset + 50 < v.matching && showTasks(bench, offset + 50));
}

// ---- Start -----------------------------------------------------------------------------
refreshStatus();
refreshFunnel();
refreshTeacherSeries();
refreshScores();
loadList();
followMetrics("train");
followMetrics("train-baseline");
setInterval(refreshStatus, 2000);
setInterval(refreshFunnel, 5000);
setInterval(refreshTeacherSeries, 2000);
setInterval(refreshScores, 10000);
window.addEventListener("resize", () => { drawLoss(); refreshTeacherSeries(); });
