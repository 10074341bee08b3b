// The static report's views: the snapshot the report stage inlined as SNAPSHOT (the dashboard
// API's answers when the report was built) drawn by views.js, as the live page draws them.
"use strict";
(function () {
  const S = SNAPSHOT;
  const $ = (id) => document.getElementById(id);
  if (S.status.stages.length) drawDag($("dag"), S.status.stages);
  if (S.funnel.steps.length) {
    $("funnel").innerHTML = funnelHtml(S.funnel);
    $("funnel").classList.remove("muted");
  }
  const drawn = drawTeacherSeries(S.teacher_series, { counts: $("teacher-counts"), cost: $("teacher-cost"), legend: $("teacher-legend"), note: $("teacher-note") });
  if (!drawn) $("teacher-note").textContent = "No teacher series (the teacher stage has not run with one).";
  const box = $("samples");
  if (!S.samples.length) box.textContent = "No kept samples with the teacher's log-probs.";
  for (const t of S.samples) {
    const div = document.createElement("div");
    div.className = "sample";
    div.dataset.id = `${t.id}#${t.sample}`;
    div.innerHTML = `<p><b>${esc(t.id)}</b> sample ${t.sample}: ${t.tokens.length} tokens</p><div class="tokens"></div>`;
    box.appendChild(div);
    const toks = answerTokens(t);
    const tokens = div.querySelector(".tokens");
    tokens.innerHTML = tokensHtml(toks);
    bindTips(tokens, $("tip"), toks);
  }
})();
