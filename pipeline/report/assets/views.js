// The views of a run, drawn from the dashboard API's JSON: the DAG, the funnel, the teacher
// over time and tokens coloured by probability. Plain JavaScript and SVG, no third-party code.
// One copy, used twice: the live dashboard page (`distill dashboard`, which serves this file
// and feeds it the API's answers) and the static `report/index.html`, which inlines this file
// with a snapshot of the same answers, so each view is drawn one way only.
"use strict";

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

// Red (unlikely) through yellow to green (certain), light enough to read text on.
function colour(p) {
  return `hsl(${Math.round(120 * p)}, 75%, ${Math.round(82 - 10 * p)}%)`;
}

// ---- DAG: GET /api/v1/status's `stages` -------------------------------------------------
function drawDag(svg, list) {
  const depth = {};
  for (const s of list) depth[s.name] = Math.max(0, ...s.deps.map((d) => (depth[d] ?? 0) + 1));
  const cols = {};
  for (const s of list) (cols[depth[s.name]] = cols[depth[s.name]] || []).push(s.name);
  const W = 118, H = 34, GX = 36, GY = 14;
  const pos = {};
  for (const [c, names] of Object.entries(cols)) names.forEach((n, i) => (pos[n] = { x: 10 + c * (W + GX), y: 10 + i * (H + GY) }));
  const rows = Math.max(...Object.values(cols).map((c) => c.length));
  svg.setAttribute("height", 20 + rows * (H + GY));
  svg.setAttribute("viewBox", `0 0 ${20 + Object.keys(cols).length * (W + GX)} ${20 + rows * (H + GY)}`);
  let out = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#999"/></marker></defs>';
  for (const s of list) for (const d of s.deps) {
    const a = pos[d], b = pos[s.name];
    out += `<path class="edge" d="M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}"/>`;
  }
  for (const s of list) {
    const p = pos[s.name];
    let label = s.state.replace(/_/g, " ");
    const pr = s.running && s.running.progress;
    if (pr && pr.unit === "steps") label = `running ${pr.done}/${pr.total}`;
    out += `<g class="node ${s.state}" data-stage="${esc(s.name)}" data-state="${s.state}"><title>${esc(s.name)}: ${esc(label)}${s.reasons.length ? "\n" + esc(s.reasons.join("\n")) : ""}</title><rect x="${p.x}" y="${p.y}" width="${W}" height="${H}"/><text x="${p.x + W / 2}" y="${p.y + 14}">${esc(s.name)}</text><text x="${p.x + W / 2}" y="${p.y + 28}" class="muted">${esc(label)}</text></g>`;
  }
  svg.innerHTML = out;
}

// ---- Funnel: GET /api/v1/funnel ---------------------------------------------------------
function funnelHtml(f) {
  const top = Math.max(1, ...f.steps.map((s) => s.input));
  let h = '<table class="funnel"><tr><th>step</th><th>in</th><th>out</th><th>dropped</th><th class="bar"></th><th>dropped because</th></tr>';
  for (const s of f.steps) {
    const why = s.reasons.map((r) => `<span class="reason" data-reason="${esc(r.reason)}">${esc(r.reason)} <b>${r.count}</b></span>`);
    if (s.unexplained) why.push(`<span class="reason">(no reason recorded) <b>${s.unexplained}</b></span>`);
    h += `<tr data-step="${esc(s.label)}"><td>${esc(s.label)}</td><td>${s.input}</td><td>${s.output}</td><td>${s.input - s.output}</td><td class="bar"><div class="kept" style="width:${(100 * s.output / top).toFixed(1)}%"></div><div class="drop" style="width:${(100 * (s.input - s.output) / top).toFixed(1)}%"></div></td><td>${why.join(" ")}</td></tr>`;
  }
  return h + "</table>";
}

// ---- Teacher over time: GET /api/v1/teacher/series ----------------------------------------
// Cumulative counters of teacher/series.jsonl (live while the stage runs) against seconds.
const TEACHER_COUNTS = [
  { key: "prompts_done", label: "prompts done", color: "#1f77b4" },
  { key: "from_cache", label: "cache hits", color: "#2ca02c" },
  { key: "requested", label: "requests sent", color: "#ff7f0e" },
  { key: "http_requests", label: "HTTP requests (with retries)", color: "#9467bd" },
  { key: "retries", label: "retries", color: "#8c564b" },
  { key: "rate_limited", label: "rate limited (429)", color: "#d62728" },
];
const TEACHER_COST = [{ key: "cost_usd", label: "cost (USD)", color: "#e377c2" }];
// A sharded run's shards: one line each, told apart by their dashes.
const SHARD_DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2"];

// Draws cumulative lines of each of `runs` ([{shard, points}], x = seconds) into `svg`;
// `fmt` labels the y axis. Returns the counters drawn.
function drawLines(svg, runs, defs, fmt) {
  const W = svg.clientWidth || 900, H = Number(svg.getAttribute("height")), L = 60, B = 28, T = 10, R = 10;
  const series = [];
  runs.forEach((run, r) => {
    for (const d of defs) {
      const pts = run.points.filter((p) => typeof p[d.key] === "number").map((p) => [p.t, p[d.key]]);
      if (pts.length) series.push({ ...d, shard: run.shard, dash: SHARD_DASHES[r % SHARD_DASHES.length], pts });
    }
  });
  const all = series.flatMap((s) => s.pts);
  svg.dataset.points = runs.reduce((n, r) => n + r.points.length, 0);
  if (!all.length) { svg.innerHTML = ""; return []; }
  const x1 = Math.max(1, ...all.map((p) => p[0])), y1 = Math.max(...all.map((p) => p[1])) * 1.05 || 1;
  const X = (x) => L + (W - L - R) * x / x1, Y = (y) => T + (H - T - B) * (1 - y / y1);
  let out = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#888"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#888"/>`;
  for (let i = 0; i <= 4; i++) {
    const y = y1 * i / 4, x = x1 * i / 4;
    out += `<text x="${L - 4}" y="${Y(y) + 4}" font-size="11" text-anchor="end">${fmt(y)}</text><line x1="${L}" x2="${W - R}" y1="${Y(y)}" y2="${Y(y)}" stroke="#eee"/>`;
    out += `<text x="${X(x)}" y="${H - 8}" font-size="11" text-anchor="middle">${x.toFixed(x1 < 10 ? 1 : 0)} s</text>`;
  }
  for (const s of series) {
    const shard = s.shard ? ` data-shard="${esc(s.shard)}"` : "";
    out += `<polyline class="series" data-key="${s.key}"${shard} data-n="${s.pts.length}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""} points="${s.pts.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ")}"/>`;
  }
  svg.innerHTML = out;
  return defs.filter((d) => series.some((s) => s.key === d.key));
}

// The teacher's charts from one answer of /teacher/series: `els` = {counts, cost, legend, note}.
// Returns false when there is nothing to draw yet.
function drawTeacherSeries(v, els) {
  const runs = v.shards && v.shards.length ? v.shards : v.points.length ? [{ shard: null, lines: v.lines, points: v.points }] : [];
  if (!runs.length) return false;
  const counts = drawLines(els.counts, runs, TEACHER_COUNTS, (y) => Math.round(y).toString());
  const cost = drawLines(els.cost, runs, TEACHER_COST, (y) => "$" + y.toFixed(y < 0.01 ? 5 : 3));
  let legend = counts.concat(cost).map((s) => `<span><i style="background:${s.color}"></i>${esc(s.label)}</span>`).join("");
  if (runs.length > 1 || runs[0].shard) {
    legend += runs.map((r, i) => `<span class="shard" data-shard="${esc(r.shard)}"><svg width="28" height="8"><line x1="0" y1="4" x2="28" y2="4" stroke="#555" stroke-width="2" stroke-dasharray="${SHARD_DASHES[i % SHARD_DASHES.length]}"/></svg>shard ${esc(r.shard.replace("-of-", " of "))}</span>`).join("");
  }
  els.legend.innerHTML = legend;
  const lasts = runs.map((r) => r.points[r.points.length - 1]);
  const tokens = lasts.reduce((n, p) => n + p.new_prompt_tokens + p.new_completion_tokens, 0), usd = lasts.reduce((n, p) => n + p.cost_usd, 0);
  const samples = runs.reduce((n, r) => n + r.lines, 0);
  const each = runs.length > 1 ? `${runs.length} shards, each from its own start; ` : "";
  els.note.textContent = `${v.running ? "running: " : ""}cumulative since the stage started (${each}${samples} samples); ${tokens} tokens bought, $${usd.toFixed(4)}.`;
  return true;
}

// ---- Tokens coloured by probability --------------------------------------------------------
// `toks`: [{text, p (null: not coloured, shown grey), tip (HTML shown on hover)}].
function tokensHtml(toks) {
  return toks.map((t, i) => `<span class="tok" data-i="${i}" style="${t.p == null ? "color:#999" : `background:${colour(t.p)}`}">${esc(t.text)}</span>`).join("");
}

// Shows `toks[i].tip` in the element `tip` while the pointer is over a token of `box`.
function bindTips(box, tip, toks) {
  box.querySelectorAll(".tok").forEach((span) => {
    span.addEventListener("mousemove", (ev) => {
      tip.innerHTML = toks[+span.dataset.i].tip;
      tip.hidden = false;
      tip.style.left = ev.clientX + 12 + "px";
      tip.style.top = ev.clientY + 12 + "px";
    });
    span.addEventListener("mouseleave", () => (tip.hidden = true));
  });
}

// A teacher answer's tokens (GET /api/v1/records/answers/{id}/tokens): coloured by the
// teacher's probability, its top-k on hover.
function answerTokens(t) {
  return t.tokens.map((tok) => ({
    text: tok.token,
    p: Math.exp(tok.logprob),
    tip: `<b>${esc(JSON.stringify(tok.token))}</b> p=${Math.exp(tok.logprob).toFixed(3)}<br>` + tok.top.map((a) => `${esc(JSON.stringify(a.token))} ${Math.exp(a.logprob).toFixed(3)}`).join("<br>"),
  }));
}

// A shard row's tokens (GET /api/v1/shard-rows/{i}): completion tokens coloured by the
// teacher's probability, or by the trained student's when `by` is "student" and the row has
// `student` (`?student=1`); both, and both top-k lists, on hover. Prompt tokens are grey.
function rowTokens(r, by) {
  const texts = r.token_text || r.input_ids.map(String);
  const st = r.student;
  const p = (lp) => (lp == null ? null : Math.exp(lp));
  const list = (texts, lps) => (texts || []).map((t, k) => `${esc(JSON.stringify(t))} ${Math.exp(lps[k]).toFixed(3)}`).join("<br>");
  return texts.map((text, i) => {
    const teacher = r.loss_mask[i] ? p(r.teacher_token_logprob[i] || 0) : null;
    const student = st ? p(st.token_logprob[i]) : null;
    let tip = `<b>${esc(JSON.stringify(text))}</b>` + (r.loss_mask[i] ? ` teacher p=${teacher.toFixed(3)}` : " (prompt)");
    if (st) tip += student == null ? " student: -" : ` student p=${student.toFixed(3)}`;
    const ttop = (r.teacher_topk_text && r.teacher_topk_text[i]) || (r.teacher_topk_ids[i] || []).map(String);
    if (ttop.length) tip += "<br><i>teacher top-k</i><br>" + list(ttop, r.teacher_topk_logprobs[i] || []);
    if (st && st.topk_ids[i].length) tip += "<br><i>student top-k</i><br>" + list((st.topk_text && st.topk_text[i]) || st.topk_ids[i].map(String), st.topk_logprobs[i]);
    const shown = by === "student" && st ? (r.loss_mask[i] ? student : null) : teacher;
    return { text, p: shown, tip };
  });
}
