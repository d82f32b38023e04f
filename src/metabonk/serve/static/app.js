// The MetaBonk dashboard: plain JS, no build step, no CDN (docs/adr/0003-dashboard.md).
// Server data is only ever set as textContent / attributes, never parsed as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { run: null, worker: null, pbVersion: null, socket: null, frameUrl: null, timers: {} };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function token() { return $("#token").value.trim(); }
// EventSource, <img> and WebSocket cannot send headers: from another host, reads carry the token in the URL
function withToken(url) { return token() ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token())}` : url; }

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.body });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (_) { /* not JSON */ }
    throw new Error(`${r.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return r.json();
}

function toast(msg) { $("#toast").textContent = msg; clearTimeout(state.timers.toast);
  state.timers.toast = setTimeout(() => { $("#toast").textContent = ""; }, 6000); }

function later(name, fn, ms = 300) {  // debounce: many events, one refresh
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(() => fn().catch((e) => toast(String(e))), ms);
}

function bar(frac) {  // width through the CSSOM: the page's CSP allows no inline style attributes
  const fill = el("i");
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, frac)) * 100)}%`;
  return el("span", { class: "bar", title: `${Math.round(frac * 100)}%` }, fill);
}

function ago(t) { const s = Math.max(0, Date.now() / 1000 - t);
  return s < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`; }

// ------------------------------------------------------------------ runs
async function loadRuns() {
  const runs = await api("/api/runs");
  const body = $("#runs tbody");
  body.replaceChildren(...runs.map((r) => el("tr", { dataset: { run: r.key }, class: r.key === state.run ? "sel" : "",
    onclick: () => { state.run = r.key; location.hash = "run=" + r.key; loadRuns(); loadRun(); } },
    el("td", {}, r.name), el("td", {}, r.kind), el("td", {}, el("span", { class: "pill " + r.status }, r.status)),
    el("td", {}, bar(r.progress), " ", el("span", { class: "run-progress" }, `${Math.round(r.progress * 100)}%`)),
    el("td", {}, ...r.stages.map((s) => el("span", { class: "pill " + s.status, title: s.message }, s.name, " ")))
  )));
  if (!state.run && runs.length) { state.run = runs[0].key; body.firstChild.classList.add("sel"); await loadRun(); }
}

async function loadRun() {
  if (!state.run) return;
  const key = state.run;
  const [run, series, arts] = await Promise.all([api(`/api/runs/${key}`), api(`/api/runs/${key}/metrics`),
    api(`/api/runs/${key}/artifacts`)]);
  $("#run-detail").hidden = false;
  $("#run-title").textContent = `${run.name} — ${run.status}, ${Math.round(run.progress * 100)}%`;
  $("#run-stages").replaceChildren(el("table", {}, el("tbody", {}, ...run.stages.map((s) => el("tr",
    { class: "stage", dataset: { stage: s.name } }, el("td", {}, s.name),
    el("td", {}, el("span", { class: "pill " + s.status }, s.status)),
    el("td", {}, bar(s.progress), ` ${Math.round(s.progress * 100)}%`), el("td", { class: "muted" }, s.message))))));
  $("#curves").replaceChildren(...series.slice(0, 12).map(curve));
  await showArtifacts(key, arts);
}

function curve(s) {
  const w = 300, h = 130, pad = 24;
  const c = el("canvas", { width: w, height: h, class: "curve", dataset: { metric: s.name } });
  const g = c.getContext("2d");
  const xs = s.steps, ys = s.values;
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const X = (x) => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (w - 2 * pad);
  const Y = (y) => h - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (h - 2 * pad);
  g.fillStyle = "#11141a"; g.fillRect(0, 0, w, h);
  g.strokeStyle = "#5fb3ff"; g.lineWidth = 1.5; g.beginPath();
  xs.forEach((x, i) => (i ? g.lineTo(X(x), Y(ys[i])) : g.moveTo(X(x), Y(ys[i]))));
  g.stroke();
  g.fillStyle = "#8a90a0"; g.font = "10px sans-serif";
  g.fillText(y1.toPrecision(3), 2, pad - 6); g.fillText(y0.toPrecision(3), 2, h - 6);
  g.fillText(`step ${x1}`, w - 70, h - 6);
  const last = ys[ys.length - 1];
  return el("figure", {}, c, el("figcaption", {}, `${s.name}: ${last.toPrecision(4)} (${xs.length} points)`));
}

async function showArtifacts(key, arts) {
  const out = [];
  for (const a of arts) {
    if (a.media_type.startsWith("image/")) out.push(el("figure", {}, el("img", { src: withToken(a.url + "?t=" + a.created_at),
      alt: a.name }), el("figcaption", {}, a.name)));
    else if (a.media_type.startsWith("text/") || a.media_type === "application/json") {
      const text = a.size > 200000 ? "(too large to show here)" : await (await fetch(withToken(a.url))).text();
      out.push(el("div", {}, el("h3", {}, a.name), el("pre", { class: "artifact" }, text)));
    } else out.push(el("a", { href: a.url }, a.name));
  }
  if (state.run === key) $("#artifacts").replaceChildren(...out);
}

// ------------------------------------------------------------------ workers and live frames
async function loadWorkers() {
  const ws = await api("/api/workers");
  $("#workers tbody").replaceChildren(...ws.map((w) => el("tr", { dataset: { worker: w.name } },
    el("td", {}, w.name), el("td", {}, w.env), el("td", {}, w.policy), el("td", {}, ago(w.last_seen)),
    el("td", {}, el("span", { class: "pill " + (w.stale ? "stale" : "ok") }, w.stale ? "stale" : "ok")))));
  $("#live-workers").replaceChildren(...ws.map((w) => el("button", { class: w.name === state.worker ? "sel" : "",
    dataset: { worker: w.name }, onclick: () => watch(w.name) }, w.name)));
  if (!state.worker && ws.length) watch((ws.find((w) => !w.stale) || ws[0]).name);
  const cur = ws.find((w) => w.name === state.worker);
  if (cur) showState(cur);
}

function showState(w) {
  const s = w.state || {};
  const rows = [["worker", w.name], ["env", s.env || w.env], ["intent (System 2)", s.intent ?? "—"],
    ["cards", (s.cards || []).join(", ") || "—"], ["fallbacks", s.fallbacks ?? 0],
    ["fps", s.fps != null ? s.fps.toFixed(1) : "—"], ["step", s.step ?? "—"], ["episode", s.episode ?? "—"],
    ["score", s.score != null ? s.score.toFixed(2) : "—"], ["health", w.stale ? "stale" : "ok"]];
  $("#live-state").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k),
    el("dd", { dataset: { field: k.split(" ")[0] } }, v)]));
}

function watch(name) {
  if (state.socket) state.socket.close();
  state.worker = name;
  for (const b of document.querySelectorAll("#live-workers button")) b.classList.toggle("sel", b.dataset.worker === name);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(withToken(`${proto}//${location.host}/ws/workers/${encodeURIComponent(name)}/view`));
  sock.binaryType = "blob";
  sock.onmessage = (ev) => {
    const url = URL.createObjectURL(ev.data);
    const img = $("#live-frame");
    img.onload = () => { if (state.frameUrl && state.frameUrl !== url) URL.revokeObjectURL(state.frameUrl); state.frameUrl = url; };
    img.src = url;
    img.dataset.frames = String(Number(img.dataset.frames || 0) + 1);
  };
  sock.onclose = () => { if (state.socket === sock) setTimeout(() => state.worker === name && watch(name), 2000); };
  state.socket = sock;
}

// ------------------------------------------------------------------ playbook
async function loadPlaybook() {
  const versions = await api("/api/playbook/versions");
  const head = versions[versions.length - 1];
  $("#playbook-head").textContent = head ? `head v${head.version}` : "";
  $("#playbook-head").dataset.version = head ? String(head.version) : "";
  $("#playbook-versions tbody").replaceChildren(...versions.slice().reverse().map((v) => el("tr",
    { dataset: { version: v.version }, class: v.version === state.pbVersion ? "sel" : "" },
    el("td", {}, `v${v.version}`), el("td", {}, v.reason), el("td", {}, v.entries),
    el("td", {}, el("button", { onclick: () => { state.pbVersion = v.version; loadPlaybook(); } }, "show"), " ",
      v.version === head.version ? "" : el("button", { class: "revert", dataset: { version: v.version },
        onclick: () => revert(v.version) }, "revert")))));
  const shown = await api(`/api/playbook/versions/${state.pbVersion ?? head.version}`);
  $("#playbook-version-title").textContent = `v${shown.version}: ${shown.reason} (${shown.created_utc})`;
  $("#playbook-entries").replaceChildren(...shown.entries.map((e) => el("li", {},
    `[${e.id}] +${e.helpful}/-${e.harmful} {${e.tags.join(",")}} ${e.text}`)));
  $("#playbook-diff").replaceChildren(...shown.diff.split("\n").map((line) => el("div", { class:
    line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "hunk" }, line)));
}

async function revert(version) {
  try {
    const v = await api("/api/playbook/revert", { method: "POST",
      json: { version, reason: `revert to v${version} from the dashboard` } });
    state.pbVersion = v.version;
    toast(`playbook: v${v.version} restores v${version}`);
    await loadPlaybook();
  } catch (e) { toast("revert failed: " + e.message + (token() ? "" : " (enter a write token above)")); }
}

// ------------------------------------------------------------------ models
async function loadModels() {
  const [models, merges] = await Promise.all([api("/api/models"), api("/api/merge-requests")]);
  $("#models tbody").replaceChildren(...models.map((m) => el("tr", {}, el("td", {}, m.name),
    el("td", {}, `v${m.version}`), el("td", {}, `${(m.size / 1e6).toFixed(2)} MB`), el("td", {}, m.note),
    el("td", {}, m.promoted ? el("span", { class: "pill ok" }, "promoted") : ""),
    el("td", {}, m.promoted ? "" : el("button", { onclick: () => promote(m.name, m.version) }, "promote")))));
  $("#merges tbody").replaceChildren(...merges.map((r) => el("tr", {}, el("td", {}, r.id), el("td", {}, r.target),
    el("td", {}, r.sources.map((s) => `${s.name} v${s.version}`).join(", ")), el("td", {}, r.method),
    el("td", {}, el("span", { class: "pill " + (r.status === "merged" ? "ok" : r.status) }, r.status)))));
}

async function promote(name, version) {
  try { await api(`/api/models/${name}/versions/${version}/promote`, { method: "POST" }); await loadModels(); }
  catch (e) { toast("promote failed: " + e.message); }
}

// ------------------------------------------------------------------ live updates
function connectEvents() {
  const es = new EventSource(withToken("/api/events"));
  es.onopen = () => { $("#conn").textContent = "live"; $("#conn").className = "pill on"; };
  es.onerror = () => { $("#conn").textContent = "reconnecting"; $("#conn").className = "pill off"; };
  es.addEventListener("run", () => { later("runs", loadRuns); later("run", loadRun); });
  es.addEventListener("metrics", (ev) => { if (JSON.parse(ev.data).run === state.run) later("run", loadRun, 1000); });
  es.addEventListener("artifact", (ev) => { if (JSON.parse(ev.data).run === state.run) later("run", loadRun); });
  es.addEventListener("worker", () => later("workers", loadWorkers, 500));
  es.addEventListener("playbook", () => later("playbook", loadPlaybook));
  es.addEventListener("model", () => later("models", loadModels));
  es.addEventListener("merge", () => later("models", loadModels));
}

function start() {
  $("#token").value = localStorage.getItem("metabonk-token") || "";
  $("#token").addEventListener("change", () => localStorage.setItem("metabonk-token", token()));
  const m = /run=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (m) state.run = m[1];
  for (const f of [loadRuns, loadWorkers, loadPlaybook, loadModels]) f().catch((e) => toast(String(e)));
  setInterval(() => later("workers", loadWorkers), 5000);  // ages and staleness move without events
  connectEvents();
}
document.addEventListener("DOMContentLoaded", start);
