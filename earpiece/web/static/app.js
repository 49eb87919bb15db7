// Earpiece dashboard: plain JS module, no build step, no library. Served by earpiece.web.dashboard.
// Views (data-view on <main>): live (agent: their current call; supervisor: every live call),
// live-call (one call live), history (search), history-call (a stored call).
"use strict";

const main = document.getElementById("main");
const P = main.dataset.prefix || "";
const VIEW = main.dataset.view;
const ROLE = main.dataset.role;
const CALL_ID = main.dataset.callId || "";
const calls = new Map();
// page-update timings for the browser test and docs/benchmarks.md: event time vs shown time (ms)
window.__earpiece = { updates: [], ready: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k === "href" || k === "title" || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmtDuration(s) {
  if (!isFinite(s) || s < 0) return "–";
  s = Math.floor(s);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
function fmtTime(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "–";
}
function duration(c) {
  const end = c.ended || Date.now() / 1000;
  return end - (c.answered || c.started);
}
function badge(state, extra) {
  const s = state || "neutral";
  return el("span", { class: `badge emo-${s}`, title: extra || s }, s);
}

// ---------------------------------------------------------------- call state (mirrors live.py)
function newCall(id, at) {
  return { id, direction: "unknown", state: "dialing", outcome: null, started: at, answered: null,
           ended: null, channel: "", tags: {}, agents: [], transcript: [], emotions: [], emotion: {},
           prompts: [], qc: [], alerts: [] };
}
function applyEvent(call, m) {
  const t = m.type, at = m.at;
  if (t === "CallStarted") Object.assign(call, { direction: m.direction, channel: m.channel, started: at, tags: m.tags || {} });
  else if (t === "CallTagged") Object.assign(call.tags, m.tags || {});
  else if (t === "CallStateChanged") { call.state = m.new; if (m.new === "answered" && !call.answered) call.answered = at; }
  else if (t === "CallOutcome") call.outcome = m.outcome;
  else if (t === "CallEnded") { call.ended = at; call.outcome = m.outcome || call.outcome; }
  else if (t === "ChannelJoined" && m.role === "agent") {
    const ep = (m.channel.split("/")[1] || "").replace(/-[^-]*$/, "");
    if (ep && !call.agents.includes(ep)) call.agents.push(ep);
  } else if (t === "Transcript") {
    call.transcript = call.transcript.filter((x) => x.final || x.party !== m.party);
    call.transcript.push({ party: m.party, text: m.text, final: m.final, start_s: m.start_s, end_s: m.end_s, at });
  } else if (t === "EmotionScored") {
    call.emotions.push({ party: m.party, label: m.label, valence: m.valence, index: m.index, state: m.state,
                         start_s: m.start_s, end_s: m.end_s, text: m.text, at });
    call.emotion[m.party] = { state: m.state, index: m.index };
  } else if (t === "EmotionChanged") {
    call.emotion[m.party] = { state: m.new, index: m.index };
    if (m.party === "customer" && m.new === "negative") call.alerts.push({ kind: "negative", at, text: "customer turned negative" });
  } else if (t === "PromptReady") {
    call.prompts.push({ prompt_id: m.prompt_id, kind: m.kind, text: m.text, rule: m.rule, product: m.product,
                        slot: m.slot, reason: m.reason, at, delivery: {} });
  } else if (t === "PromptDelivered") {
    for (const p of call.prompts) if (p.prompt_id === m.prompt_id) p.delivery[m.channel] = m.status;
  } else if (t === "QcFlag") {
    call.qc.push({ kind: m.kind, rule: m.rule, party: m.party, matched: m.matched, text: m.text, at });
    call.alerts.push({ kind: "qc", at, text: `QC ${m.kind}: ${m.rule}` });
  }
}

// ---------------------------------------------------------------- rendering
function emotionChart(emotions) {
  const W = 320, H = 90, pad = 6;
  const chart = svg("svg", { class: "emotion-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
                             "aria-label": "customer emotion timeline", "data-points": 0 });
  chart.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "bg" }));
  const y = (v) => pad + (1 - (Math.max(-1, Math.min(1, v)) + 1) / 2) * (H - 2 * pad);
  chart.append(svg("line", { x1: 0, x2: W, y1: y(0), y2: y(0), class: "zero" }));
  for (const party of ["agent", "customer"]) {
    const pts = emotions.filter((e) => e.party === party);
    if (!pts.length) continue;
    const x = (i) => pad + (pts.length === 1 ? 0.5 : i / (pts.length - 1)) * (W - 2 * pad);
    const d = pts.map((e, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(e.index).toFixed(1)}`).join(" ");
    chart.append(svg("path", { d, class: `line-${party}` }));
    pts.forEach((e, i) => {
      const c = svg("circle", { cx: x(i).toFixed(1), cy: y(e.valence).toFixed(1), r: 3.5,
                                class: `pt pt-${party} emo-${e.label}` });
      const title = svg("title", {});
      title.textContent = `${party} ${e.label} (${Number(e.valence).toFixed(2)}): ${e.text || ""}`;
      c.append(title);
      chart.append(c);
    });
    if (party === "customer") chart.setAttribute("data-points", pts.length);
  }
  return chart;
}

function reasonText(reason) {
  if (!reason || typeof reason !== "object") return "";
  return Object.entries(reason).filter(([, v]) => v !== null && v !== "" && v !== 0).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
}
function deliveryText(delivery) {
  return Object.entries(delivery || {}).map(([k, v]) => `${k} ${typeof v === "object" ? v.status : v}`).join(", ");
}

function callView(call) {
  const cust = (call.emotion || {}).customer || {};
  const head = el("section", { class: "call-head" },
    el("h2", {}, "Call ", el("code", {}, call.id.slice(0, 8))),
    el("span", { class: `state state-${call.state}`, "data-testid": "call-state" }, call.ended ? `ended (${call.outcome || call.state})` : call.state),
    el("span", {}, `agent: ${(call.agents || []).join(", ") || "–"}`),
    el("span", { class: "duration", "data-since": call.answered || call.started, "data-ended": call.ended || "" }, fmtDuration(duration(call))),
    el("span", {}, "customer: ", badge(cust.state, cust.index !== undefined ? `index ${Number(cust.index).toFixed(2)}` : "")));
  const prompt = call.prompts && call.prompts.length ? call.prompts[call.prompts.length - 1] : null;
  const promptBox = el("section", { class: "prompt-box" }, el("h3", {}, "Prompt"),
    prompt ? el("div", { class: `prompt kind-${prompt.kind}`, "data-testid": "prompt" },
      el("strong", {}, `[${prompt.kind}] `), prompt.text,
      el("div", { class: "reason" }, `why: ${prompt.rule || ""} ${reasonText(prompt.reason)}`),
      el("div", { class: "delivery" }, deliveryText(prompt.delivery)))
      : el("p", { class: "muted" }, "No prompt yet."));
  const byUtt = (line) => (call.emotions || []).find((e) => e.party === line.party
    && (Math.abs(e.start_s - line.start_s) < 0.25 || (e.text && e.text === line.text)));
  const lines = (call.transcript || []).map((l) => {
    const e = l.party === "customer" ? byUtt(l) : null;
    return el("li", { class: `line party-${l.party}${l.final === false ? " partial" : ""}`, "data-testid": "line" },
      el("span", { class: "who" }, l.party), el("span", { class: "text" }, l.text),
      e ? badge(e.label, `valence ${Number(e.valence).toFixed(2)}`) : null);
  });
  const transcript = el("section", { class: "transcript" }, el("h3", {}, "Transcript"),
    lines.length ? el("ol", {}, lines) : el("p", { class: "muted" }, "Nothing said yet."));
  const chart = el("section", { class: "chart" }, el("h3", {}, "Emotion"), emotionChart(call.emotions || []),
    el("p", { class: "legend" }, el("span", { class: "key-customer" }, "— customer"), " ", el("span", { class: "key-agent" }, "— agent")));
  const qc = el("section", { class: "qc" }, el("h3", {}, "QC flags"),
    call.qc && call.qc.length ? el("ul", {}, call.qc.map((f) => el("li", { class: "qc-flag", "data-testid": "qc" },
      `${f.kind}: ${f.rule} (${f.party}) “${f.matched || f.text || ""}”`))) : el("p", { class: "muted" }, "None."));
  return el("div", { class: "call", "data-call-id": call.id }, head, promptBox,
    el("div", { class: "cols" }, transcript, el("div", {}, chart, qc)));
}

function alertsOf(c) {
  const kinds = new Set((c.alerts || []).map((a) => a.kind));
  return [...kinds].map((k) => el("span", { class: `alert alert-${k}` }, k === "negative" ? "turned negative" : "QC flag"));
}

function callsTable(list, linkBase) {
  const rows = list.map((c) => {
    const cust = (c.emotion || {}).customer || {};
    return el("tr", { "data-call-id": c.id, class: c.ended ? "ended" : "" },
      el("td", {}, el("a", { href: `${P}/${linkBase}/${c.id}` }, c.id.slice(0, 8))),
      el("td", {}, c.ended ? `ended (${c.outcome || c.state})` : c.state),
      el("td", {}, (c.agents || []).join(", ") || "–"),
      el("td", { class: "duration", "data-since": c.answered || c.started, "data-ended": c.ended || "" }, fmtDuration(duration(c))),
      el("td", {}, badge(cust.state)),
      el("td", {}, alertsOf(c)));
  });
  return el("table", { class: "calls" },
    el("thead", {}, el("tr", {}, ["call", "state", "agent", "duration", "customer", "alerts"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function render() {
  main.replaceChildren();
  const list = [...calls.values()].sort((a, b) => b.started - a.started);
  if (VIEW === "live-call") {
    const c = calls.get(CALL_ID);
    main.append(c ? callView(c) : el("p", { class: "muted" }, "Waiting for the call…"));
  } else if (ROLE === "agent") {
    const current = list.find((c) => !c.ended) || list[0];
    main.append(current ? callView(current) : el("p", { class: "muted" }, "No call right now."));
  } else {
    const live = list.filter((c) => !c.ended), recent = list.filter((c) => c.ended).slice(0, 10);
    main.append(el("h2", {}, `Live calls (${live.length})`), callsTable(live, "live"));
    if (recent.length) main.append(el("h3", {}, "Just ended"), callsTable(recent, "live"));
  }
}

function tick() {
  for (const node of document.querySelectorAll(".duration[data-since]")) {
    if (node.dataset.ended) continue;
    node.textContent = fmtDuration(Date.now() / 1000 - Number(node.dataset.since));
  }
}

// ---------------------------------------------------------------- live websocket
function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const q = VIEW === "live-call" ? `?call_id=${encodeURIComponent(CALL_ID)}` : "";
  const ws = new WebSocket(`${scheme}//${location.host}${P}/api/dash/ws${q}`);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "hello") { calls.clear(); for (const c of m.calls) calls.set(c.id, c); }
    else if (m.type === "call") calls.set(m.call.id, m.call);
    else {
      let c = calls.get(m.call_id);
      if (!c) { c = newCall(m.call_id, m.at); calls.set(m.call_id, c); }
      applyEvent(c, m);
    }
    render();
    const at = m.at;
    requestAnimationFrame(() => {
      window.__earpiece.updates.push({ type: m.type, at, shown: (performance.timeOrigin + performance.now()) / 1000 });
      window.__earpiece.ready = true;
    });
  };
  ws.onclose = () => setTimeout(connect, 2000);
}

// ---------------------------------------------------------------- history
async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { location.href = `${P}/login`; return null; }
  if (!r.ok) throw new Error(`${r.status} ${(await r.json()).error || ""}`);
  return r.json();
}

function toEpoch(value) { return value ? String(new Date(value).getTime() / 1000) : ""; }

async function historyView() {
  const params = new URLSearchParams(location.search);
  const form = el("form", { class: "search", method: "get" },
    el("label", {}, "Outcome ", el("select", { name: "outcome" },
      ["", "answered", "no_answer", "busy", "congestion", "failed", "rejected"].map((o) =>
        el("option", { value: o, selected: params.get("outcome") === o }, o || "any")))),
    el("label", {}, "From ", el("input", { type: "datetime-local", name: "from", value: params.get("from") || "" })),
    el("label", {}, "To ", el("input", { type: "datetime-local", name: "to", value: params.get("to") || "" })),
    el("button", { type: "submit" }, "Search"));
  const q = new URLSearchParams({ outcome: params.get("outcome") || "", since: toEpoch(params.get("from")),
                                  until: toEpoch(params.get("to")) });
  const data = await getJSON(`${P}/api/dash/history?${q}`);
  if (!data) return;
  const rows = data.calls.map((c) => el("tr", { "data-call-id": c.id },
    el("td", {}, el("a", { href: `${P}/history/${c.id}` }, c.id.slice(0, 8))),
    el("td", {}, fmtTime(c.started)), el("td", {}, c.outcome || c.state),
    el("td", {}, (c.agents || []).join(", ") || "–"),
    el("td", {}, c.ended ? fmtDuration(c.ended - (c.answered || c.started)) : "live"),
    el("td", {}, c.emotion ? badge(c.emotion.state) : "–"), el("td", {}, c.qc_flags || "")));
  main.replaceChildren(el("h2", {}, "Call history"), form,
    el("table", { class: "calls history" },
      el("thead", {}, el("tr", {}, ["call", "started", "outcome", "agent", "talk", "customer", "QC"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)),
    rows.length ? "" : el("p", { class: "muted" }, "No calls match."));
}

async function historyCall() {
  const c = await getJSON(`${P}/api/dash/history/${encodeURIComponent(CALL_ID)}`);
  if (!c) return;
  c.transcript = c.transcript.map((l) => ({ ...l, final: true }));
  const cust = c.emotions.filter((e) => e.party === "customer");
  c.emotion = cust.length ? { customer: { state: cust[cust.length - 1].label, index: cust[cust.length - 1].index } } : {};
  main.replaceChildren(el("p", {}, el("a", { href: `${P}/history` }, "← history"), ` started ${fmtTime(c.started)}`), callView(c));
}

function start() {
  if (VIEW === "history") historyView().catch((e) => main.replaceChildren(el("p", { class: "error" }, String(e))));
  else if (VIEW === "history-call") historyCall().catch((e) => main.replaceChildren(el("p", { class: "error" }, String(e))));
  else { connect(); setInterval(tick, 1000); }
}
start();
