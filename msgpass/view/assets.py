"""The inline CSS and JavaScript of the HTML explorer (msgpass.view.html), kept apart from
the Python that fills in the data. Plain browser JavaScript, no library and no network: the
page must open from a file, offline, and show the same thing every time.

The script reads one JSON document (``html.explorer_data`` documents its fields) and draws an
SVG: groups of nodes in columns from the inputs (left) to the loss or output (right), the
shown edges of every link that has sent at the current step. Elements the tests and users
reach by id: ``#step-first``, ``#step-prev``, ``#step-next``, ``#step-last``, ``#step-label``,
``#view`` (sample or mean), ``#top-k``, ``#forward``, ``#edge-count`` (``data-shown``),
``#panel``, ``#node-sum`` and ``#edge-info`` in the panel; nodes are ``.node`` with
``data-g``/``data-n``, edges ``.edge`` with ``data-l``/``data-i``. When the first drawing is
done, ``window.msgpassReady`` holds ``performance.now()`` and ``<html data-ready="true">``.
"""

CSS = """
:root { --ink: #1d2330; --muted: #667085; --line: #d0d5dd; --pos: #c0392b; --neg: #1f5fbf; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; font: 14px/1.4 system-ui, -apple-system, "Segoe UI",
  Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #fff; }
body { display: flex; flex-direction: column; }
header { flex: none; padding: 8px 14px; border-bottom: 1px solid var(--line); display: flex;
  flex-wrap: wrap; gap: 6px 18px; align-items: center; background: #f8f9fb; }
header h1 { font-size: 16px; margin: 0 12px 0 0; white-space: nowrap; }
header .group { display: flex; gap: 6px; align-items: center; }
button, select, input { font: inherit; }
button { padding: 2px 9px; border: 1px solid var(--line); border-radius: 5px; background: #fff;
  cursor: pointer; }
button:hover { background: #eef2f8; }
button:disabled { color: #aab; cursor: default; background: #fff; }
#top-k { width: 5.5em; }
#node-index { width: 5em; }
#step-label { min-width: 28em; color: var(--muted); }
main { flex: 1; display: flex; min-height: 0; }
#canvas { flex: 1; min-width: 0; height: 100%; display: block; }
#panel { width: 360px; border-left: 1px solid var(--line); padding: 10px 14px;
  overflow-y: auto; font-size: 13px; }
#panel h2 { font-size: 15px; margin: 4px 0 6px; }
#panel table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
#panel td, #panel th { padding: 2px 4px; text-align: right; border-bottom: 1px solid #eef0f3; }
#panel td:first-child, #panel th:first-child { text-align: left; }
#panel .sum td { border-top: 2px solid var(--ink); font-weight: 600; }
#panel .note { color: var(--muted); }
.eq { font-size: 15px; margin: 6px 0; font-variant-numeric: tabular-nums; }
footer { flex: none; align-items: center; padding: 5px 14px; border-top: 1px solid var(--line);
  color: var(--muted); display: flex; gap: 2px 24px; flex-wrap: wrap; background: #f8f9fb;
  font-size: 13px; }
.swatch { display: inline-block; width: 22px; height: 4px; vertical-align: middle;
  margin-right: 4px; }
.edge { cursor: pointer; }
.edge:hover { stroke: #f39c12 !important; stroke-opacity: 1 !important; }
.edge.picked { stroke: #f39c12 !important; stroke-opacity: 1 !important; }
.node { cursor: pointer; stroke: #4a5363; stroke-width: 0.6; }
.node.waiting { fill: #f2f4f7; stroke: #b0b7c3; stroke-dasharray: 2 2; }
.node.picked { stroke: #f39c12; stroke-width: 3; }
.glabel { font-size: 12px; fill: var(--ink); font-weight: 600; }
.gsub { font-size: 11px; fill: var(--muted); }
.nlabel { font-size: 10.5px; fill: var(--ink); font-variant-numeric: tabular-nums; }
.bar { fill: #e4e7ec; }
.current-col { fill: #fff6e0; }
#tip { position: fixed; pointer-events: none; background: rgba(29,35,48,.94); color: #fff;
  padding: 6px 9px; border-radius: 6px; font-size: 12.5px; display: none; z-index: 5;
  white-space: pre; font-variant-numeric: tabular-nums; }
"""

JS = r"""
(function () {
"use strict";
const raw = document.getElementById("msgpass-data").textContent;
const D = JSON.parse(raw, function (key, v) {   // non-finite numbers travel as strings
  return v === "NaN" ? NaN : v === "Infinity" ? Infinity : v === "-Infinity" ? -Infinity : v;
});
const $ = (id) => document.getElementById(id);
const svg = $("canvas"), panel = $("panel"), tip = $("tip");
const nSteps = D.steps.length;
const maxK = Math.max(1, D.topK);
const state = { step: nSteps, view: D.initial, k: maxK, forward: false, picked: null };
const BIG = 2000;        // a group wider than this draws only the nodes its shown edges touch

function fmt(x) {
  if (x === null || x === undefined) return "—";
  if (!Number.isFinite(x)) return String(x);
  return x.toPrecision(D.digits);
}
function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;"}[c]));
}
function entryName(g, n) {
  const G = D.groups[g];
  if (D.kind === "graph" && G.size === 1) return G.key;
  if (G.shape.length > 1) {
    const idx = [];
    let rest = n;
    for (let a = G.shape.length - 1; a >= 0; a--) {
      idx.unshift(rest % G.shape[a]);
      rest = Math.floor(rest / G.shape[a]);
    }
    return G.key + "[" + idx.join(",") + "]";
  }
  return G.key + "[" + n + "]";
}
// a diverging colour, blue (−) through white to red (+), for r in [−1, 1]
function diverging(r) {
  if (!Number.isFinite(r)) return "#999";
  const a = Math.min(1, Math.abs(r)), w = 1 - a;
  const c = r >= 0 ? [192, 57, 43] : [31, 95, 191];
  return "rgb(" + c.map((v) => Math.round(255 * w + v * a)).join(",") + ")";
}

// -- what has been sent at the current step --------------------------------------------------
function sent(l) { return D.links[l].step < state.step; }
function reached(g) {
  // a group's sum is complete once every block that sends to it has been sent
  if (D.groups[g].sums === null) return false;
  return D.links.every((L, l) => L.source !== g || sent(l));
}
function shownCount(l) {
  const V = D.links[l].views;
  return V.length ? Math.min(state.k, V[state.view].msg.length) : 0;
}

// -- layout: columns from the inputs (left) to the output (right) ----------------------------
let pos = null;
function layout() {
  const W = Math.max(svg.clientWidth || 900, 500), H = Math.max(svg.clientHeight || 560, 320);
  const cols = 1 + Math.max(...D.groups.map((G) => G.column));
  const left = 70, right = 90, top = 44, bottom = 14;
  const colX = (c) => cols === 1 ? W / 2 : left + c * (W - left - right) / (cols - 1);
  const byCol = Array.from({length: cols}, () => []);
  D.groups.forEach((G, g) => byCol[G.column].push(g));
  const groups = [];
  byCol.forEach((gs, c) => {
    const gap = 34, avail = H - top - bottom - gap * (gs.length - 1);
    const weights = gs.map((g) => Math.sqrt(D.groups[g].size) + 1);
    const total = weights.reduce((a, b) => a + b, 0);
    let y = top;
    gs.forEach((g, i) => {
      const h = avail * weights[i] / total, size = D.groups[g].size, y0 = y;
      const r = Math.max(1.2, Math.min(10, 0.42 * h / size));
      groups[g] = {x: colX(c), y0: y0, y1: y0 + h, r: r,
        y: (n) => size === 1 ? y0 + h / 2 : y0 + (n + 0.5) * h / size};
      y += h + gap;
    });
  });
  const step = cols === 1 ? W - 40 : (W - left - right) / (cols - 1) - 8;
  pos = {W: W, H: H, groups: groups, colX: colX, cols: cols, step: step};
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
}

// -- drawing ---------------------------------------------------------------------------------
function groupScale(g, which) {
  const rows = D.groups[g][which];
  if (!rows) return 1;
  let m = 0;
  for (const v of rows[state.view]) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m || 1;
}
function draw() {
  const parts = [], cur = state.step - 1;
  // the column of the block being sent, behind everything
  D.links.forEach((L) => {
    if (L.step === cur && state.step < nSteps) {
      const a = pos.groups[L.source].x, b = pos.groups[L.destination].x;
      parts.push('<rect class="current-col" x="' + Math.min(a, b) + '" y="28" width="' +
        Math.abs(b - a) + '" height="' + (pos.H - 30) + '"/>');
    }
  });
  let shown = 0;
  const touched = D.groups.map(() => new Set());
  parts.push('<g id="edges">');
  D.links.forEach((L, l) => {
    if (!sent(l) || !L.views.length) return;
    const V = L.views[state.view], k = shownCount(l);
    const A = pos.groups[L.source], B = pos.groups[L.destination];
    const top = k ? Math.abs(V.msg[0]) || 1 : 1;
    const dim = state.step < nSteps && L.step !== cur ? 0.35 : 1;
    for (let i = k - 1; i >= 0; i--) {       // strongest drawn last, on top
      const m = V.msg[i], rel = Math.min(1, Math.abs(m) / top);
      touched[L.source].add(V.src[i]);
      touched[L.destination].add(V.dst[i]);
      const picked = state.picked && state.picked.type === "edge" &&
        state.picked.l === l && state.picked.i === i;
      parts.push('<line class="edge' + (picked ? " picked" : "") + '" data-l="' + l +
        '" data-i="' + i + '" x1="' + A.x + '" y1="' + A.y(V.src[i]).toFixed(2) + '" x2="' +
        B.x + '" y2="' + B.y(V.dst[i]).toFixed(2) + '" stroke="' +
        (m >= 0 ? "var(--pos)" : "var(--neg)") + '" stroke-width="' +
        (0.7 + 3.3 * rel).toFixed(2) + '" stroke-opacity="' +
        ((0.22 + 0.7 * rel) * dim).toFixed(3) + '"/>');
    }
    shown += k;
  });
  parts.push("</g><g id='nodes'>");
  D.groups.forEach((G, g) => {
    const P = pos.groups[g], ok = reached(g);
    const which = state.forward ? "values" : "sums";
    const rows = G[which], scale = groupScale(g, which);
    // two short lines (name; what computes it and the shape), cut to the column's width
    const fit = (text, px) => text.length > px / 6.6 ? text.slice(0, Math.max(3,
      Math.floor(px / 6.6) - 1)) + "…" : text;
    const sub = G.label + " · " + G.shape.join("×") + (G.shared ? " · shared" : "");
    parts.push('<g><title>' + esc(G.key + " · " + sub) + '</title><text class="glabel" x="' +
      P.x + '" y="' + (P.y0 - 18) + '" text-anchor="middle">' + esc(fit(G.key, pos.step)) +
      '</text><text class="gsub" x="' + P.x + '" y="' + (P.y0 - 6) +
      '" text-anchor="middle">' + esc(fit(sub, pos.step)) + "</text></g>");
    const big = G.size > BIG;
    if (big) parts.push('<rect class="bar" x="' + (P.x - 3) + '" y="' + P.y0 + '" width="6" ' +
      'height="' + (P.y1 - P.y0) + '"/>');
    const which_nodes = big ? Array.from(touched[g]).sort((a, b) => a - b) :
      Array.from({length: G.size}, (_, n) => n);
    const labels = G.size <= 12;
    for (const n of which_nodes) {
      const v = rows ? rows[state.view][n] : null;
      const live = state.forward || ok;
      const picked = state.picked && state.picked.type === "node" &&
        state.picked.g === g && state.picked.n === n;
      parts.push('<circle class="node' + (live ? "" : " waiting") + (picked ? " picked" : "") +
        '" data-g="' + g + '" data-n="' + n + '" cx="' + P.x + '" cy="' + P.y(n).toFixed(2) +
        '" r="' + P.r.toFixed(2) + '"' + (live ? ' fill="' + diverging(v / scale) + '"' : "") +
        "/>");
      if (labels && live) parts.push('<text class="nlabel" x="' + (P.x + P.r + 4) + '" y="' +
        (P.y(n) + 3.5).toFixed(2) + '">' + (state.forward ? "z " : "S ") + esc(fmt(v)) +
        "</text>");
    }
  });
  parts.push("</g>");
  svg.innerHTML = parts.join("");
  const total = D.links.reduce((a, L) => a + L.total, 0);
  const nSent = D.links.filter((L, l) => sent(l)).length;
  const count = $("edge-count");
  count.dataset.shown = String(shown);
  const cut = D.links.some((L, l) => sent(l) && L.views.length && shownCount(l) < L.total);
  count.textContent = "edges shown: " + shown.toLocaleString("en") + " of " +
    total.toLocaleString("en") + (cut ? " (the strongest " + state.k + " per block)" : "") +
    "; " + nSent + " of " + D.links.length + " blocks sent";
  const label = $("step-label");
  label.dataset.step = String(state.step);
  label.textContent = "step " + state.step + " / " + nSteps + ": " + (state.step === 0 ?
    "the seed arrives at " + D.groups[D.output].key : D.steps[state.step - 1]);
  $("step-first").disabled = $("step-prev").disabled = state.step === 0;
  $("step-last").disabled = $("step-next").disabled = state.step === nSteps;
  $("legend-nodes").textContent = state.forward ? "nodes: forward value z (per group)" :
    "nodes: the sum S received (per group; dashed: waiting)";
}

// -- the panel: an edge's δ = J · S, a node's incoming messages and their sum -----------------
const isMean = () => D.viewKeys[state.view] === "mean";
function edgeText(l, i) {
  const L = D.links[l], V = L.views[state.view];
  const to = entryName(L.source, V.src[i]), from = entryName(L.destination, V.dst[i]);
  return {title: L.title + " · " + L.label, to: to, from: from, J: V.J ? V.J[i] : null,
    S: V.S[i], d: V.msg[i]};
}
function showEdge(l, i) {
  const e = edgeText(l, i), mean = isMean();
  panel.innerHTML = '<h2>' + esc(e.title) + '</h2><div id="edge-info">' +
    '<div>message from <b>' + esc(e.from) + "</b> to <b>" + esc(e.to) + "</b> (" +
    esc(D.viewNames[state.view]) + ")</div>" +
    '<div class="eq">δ = J · S</div><table>' +
    '<tr><td>J (local partial ∂' + esc(e.from) + "/∂" + esc(e.to) + ')</td><td id="edge-J">' +
    esc(fmt(e.J)) + "</td></tr>" +
    '<tr><td>S (the sum at ' + esc(e.from) + ')</td><td id="edge-S">' + esc(fmt(e.S)) +
    "</td></tr>" +
    '<tr class="sum"><td>δ (the message)</td><td id="edge-delta">' + esc(fmt(e.d)) +
    "</td></tr></table>" +
    (mean ? '<p class="note">Batch mean: each number is its mean over the samples; δ̄ is the ' +
      "mean of the products J·S, which need not equal J̄·S̄.</p>" : "") + "</div>";
}
function showNode(g, n) {
  const G = D.groups[g], mean = isMean();
  const rows = [];
  let shownSum = 0, shownN = 0, degree = 0;
  const waiting = [], unseen = [];
  D.links.forEach((L, l) => {
    if (L.source !== g) return;
    if (!sent(l)) { waiting.push(L.title); return; }
    if (!L.views.length) { unseen.push(L.note); return; }
    degree += L.inDegree[n];
    const V = L.views[state.view], k = shownCount(l);
    for (let i = 0; i < k; i++) {
      if (V.src[i] !== n) continue;
      rows.push({l: l, i: i, from: entryName(L.destination, V.dst[i]), J: V.J ? V.J[i] : null,
        S: V.S[i], d: V.msg[i]});
      shownSum += V.msg[i];
      shownN += 1;
    }
  });
  rows.sort((a, b) => Math.abs(b.d) - Math.abs(a.d));
  const S = G.sums ? G.sums[state.view][n] : null, z = G.values[state.view][n];
  const out = ['<h2>node ' + esc(entryName(g, n)) + "</h2>",
    '<div class="note">' + esc(G.key + " · " + G.label) + " · " +
    esc(D.viewNames[state.view]) + "</div>"];
  if (state.forward) out.push('<div class="eq">forward value z = <span id="node-value">' +
    esc(fmt(z)) + "</span></div>");
  if (g === D.output) out.push('<p class="note">The output: S here is the seed, what arrives ' +
    "from above the pass (1/B per sample over a batch-mean loss).</p>");
  out.push("<table><tr><th>from</th><th>J</th><th>S</th><th>δ = J·S</th></tr>");
  rows.slice(0, 40).forEach((r) => out.push('<tr class="msg" data-l="' + r.l + '" data-i="' +
    r.i + '"><td>' + esc(r.from) + "</td><td>" + esc(fmt(r.J)) + "</td><td>" + esc(fmt(r.S)) +
    "</td><td>" + esc(fmt(r.d)) + "</td></tr>"));
  if (rows.length > 40) out.push('<tr><td colspan="4" class="note">… ' + (rows.length - 40) +
    " more shown messages</td></tr>");
  const ok = reached(g);
  if (ok && g !== D.output && S !== null && degree > shownN) {
    out.push('<tr class="rest"><td colspan="3">' + (degree - shownN) + " other messages " +
      "(edges outside the strongest " + state.k + ")</td><td>" + esc(fmt(S - shownSum)) +
      "</td></tr>");
  }
  out.push('<tr class="sum"><td colspan="3">sum S = Σ δ</td><td id="node-sum">' +
    (ok ? esc(fmt(S)) : "…") + "</td></tr></table>");
  if (!ok && waiting.length) out.push('<p class="note">Still waiting for: ' +
    esc(waiting.join("; ")) + "</p>");
  unseen.forEach((note) => out.push('<p class="note">Not listed: ' + esc(note) + "</p>"));
  if (G.shared) out.push('<p class="note">Shared by every sample: its sum is taken over the ' +
    "whole batch.</p>");
  if (mean) out.push('<p class="note">Batch mean: every number is its mean over the ' +
    "samples.</p>");
  panel.innerHTML = out.join("");
}
function repanel() {
  const p = state.picked;
  if (!p) return;
  if (p.type === "node") showNode(p.g, p.n);
  else if (sent(p.l) && p.i < shownCount(p.l)) showEdge(p.l, p.i);
  else { state.picked = null; panel.innerHTML = intro; }
}
const intro = panel.innerHTML;

// -- events ----------------------------------------------------------------------------------
function update() { draw(); repanel(); }
function setStep(s) { state.step = Math.max(0, Math.min(nSteps, s)); update(); }
$("step-first").onclick = () => setStep(0);
$("step-prev").onclick = () => setStep(state.step - 1);
$("step-next").onclick = () => setStep(state.step + 1);
$("step-last").onclick = () => setStep(nSteps);
$("view").onchange = (ev) => { state.view = Number(ev.target.value); update(); };
$("forward").onchange = (ev) => { state.forward = ev.target.checked; update(); };
$("top-k").onchange = (ev) => {
  const k = Math.round(Number(ev.target.value));
  const next = Number.isFinite(k) ? Math.max(1, Math.min(maxK, k)) : maxK;
  ev.target.value = next;
  // a redraw replaces every element: only when k changed, so that the change a blur fires
  // does not remove the node being clicked
  if (next === state.k) return;
  state.k = next;
  update();
};
$("find").onclick = () => {
  const g = Number($("node-group").value), n = Math.round(Number($("node-index").value));
  if (!(n >= 0 && n < D.groups[g].size)) {
    panel.innerHTML = '<p class="note">' + esc(D.groups[g].key) + " has nodes 0.." +
      (D.groups[g].size - 1) + "</p>";
    return;
  }
  state.picked = {type: "node", g: g, n: n};
  update();
};
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  if (ev.key === "ArrowLeft") setStep(state.step - 1);
  if (ev.key === "ArrowRight") setStep(state.step + 1);
});
svg.addEventListener("click", (ev) => {
  const t = ev.target;
  if (t.classList.contains("node")) {
    state.picked = {type: "node", g: Number(t.dataset.g), n: Number(t.dataset.n)};
  } else if (t.classList.contains("edge")) {
    state.picked = {type: "edge", l: Number(t.dataset.l), i: Number(t.dataset.i)};
  } else return;
  update();
});
svg.addEventListener("mousemove", (ev) => {
  const t = ev.target;
  let text = null;
  if (t.classList.contains("edge")) {
    const e = edgeText(Number(t.dataset.l), Number(t.dataset.i));
    text = e.title + "\nδ(" + e.to + " ← " + e.from + ") = J · S\n= " + fmt(e.J) + " × " +
      fmt(e.S) + "\n= " + fmt(e.d);
  } else if (t.classList.contains("node")) {
    const g = Number(t.dataset.g), n = Number(t.dataset.n), G = D.groups[g];
    text = entryName(g, n) + "\nS = " + (reached(g) ? fmt(G.sums[state.view][n]) : "…") +
      "\nz = " + fmt(G.values[state.view][n]);
  }
  if (text === null) { tip.style.display = "none"; return; }
  tip.textContent = text;
  tip.style.display = "block";
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 6) + "px";
  tip.style.top = Math.min(ev.clientY + 14, window.innerHeight - tip.offsetHeight - 6) + "px";
});
svg.addEventListener("mouseleave", () => { tip.style.display = "none"; });
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => { layout(); draw(); }, 120);
});

// -- controls filled from the data, then the first drawing ----------------------------------
const view = $("view");
D.viewNames.forEach((name, i) => {
  const o = document.createElement("option");
  o.value = String(i);
  o.textContent = name;
  view.appendChild(o);
});
view.value = String(state.view);
$("top-k").max = String(maxK);
$("top-k").value = String(maxK);
const finder = $("node-group");
D.groups.forEach((G, g) => {
  const o = document.createElement("option");
  o.value = String(g);
  o.textContent = G.key + " (" + G.size + ")";
  finder.appendChild(o);
});
layout();
draw();
window.msgpassReady = performance.now();
document.documentElement.dataset.ready = "true";
})();
"""
