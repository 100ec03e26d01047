"""The review page itself: one HTML document with its CSS and keyboard-first JavaScript, nothing
fetched from elsewhere. The server (`app`) and the static writer (`static`) fill in the same
document; only where items, images and decisions go differs:

- live: items from `api/items`, images from `img/ID/KIND` (fetched, so the page can say how the
  render was verified and where the original came from), decisions POSTed to `api/items/ID/decision`;
- static: items embedded, images beside the page (`img/ID-KIND.png`), decisions kept in the page
  and downloaded as a CSV that `archiver review --apply` takes.

Keys: j / → next, k / ← previous, a approve, r reject, f or space flips original and render in
place, g the contact sheet, c a comment, ? the keys.
"""

from __future__ import annotations

import html
import json
from typing import Any

CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #222; background: #f4f4f2; }
header { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; padding: 8px 14px;
  background: #20242a; color: #eee; }
header h1 { font-size: 16px; margin: 0 12px 0 0; }
header label { font-size: 12px; color: #bbb; }
header select, header button { font: inherit; }
#counts { margin-left: auto; font-size: 12px; color: #ccc; }
#keys { font-size: 12px; color: #9ad; }
main { display: flex; min-height: calc(100vh - 48px); }
#list { width: 300px; flex: none; overflow-y: auto; max-height: calc(100vh - 48px); margin: 0;
  padding: 0; list-style: none; border-right: 1px solid #ccc; background: #fff; }
#list li { padding: 5px 10px; border-bottom: 1px solid #eee; cursor: pointer; font-size: 12px;
  display: flex; justify-content: space-between; gap: 6px; }
#list li.current { background: #dde9ff; }
#list li .k { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.badge { border-radius: 3px; padding: 0 5px; font-size: 11px; white-space: nowrap; }
.pending { background: #ffe9a8; } .approved { background: #b9e8bd; } .rejected { background: #f5b5b5; }
.gate-rejected { background: #ddd; } .unreviewed { background: #e3e3f7; }
#item { flex: 1; padding: 14px 18px; min-width: 0; }
#item h2 { font-size: 16px; margin: 0 0 6px; word-break: break-all; }
.where { font-size: 12px; color: #555; margin-bottom: 10px; }
.pair { display: flex; gap: 14px; flex-wrap: wrap; }
figure { margin: 0; }
figure img { width: 256px; height: 256px; object-fit: contain; image-rendering: pixelated;
  background: repeating-conic-gradient(#ddd 0 25%, #fff 0 50%) 0 0 / 16px 16px; border: 1px solid #bbb;
  display: block; }
figure .missing { width: 256px; height: 256px; border: 1px dashed #c33; color: #a22; font-size: 12px;
  padding: 10px; overflow: auto; background: #fff; }
figcaption { font-size: 12px; color: #444; margin-top: 3px; max-width: 256px; }
#flip figcaption b { color: #14c; }
table.checks { border-collapse: collapse; margin: 12px 0; font-size: 13px; }
table.checks td, table.checks th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
table.checks th:first-child, table.checks td:first-child { text-align: left; }
table.checks tr.nearest { background: #fff1b8; font-weight: bold; }
table.checks tr.failed { background: #f8c9c9; }
dl.record { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; font-size: 13px; }
dl.record dt { color: #666; } dl.record dd { margin: 0; word-break: break-word; }
#decide { margin-top: 10px; display: flex; gap: 8px; align-items: center; }
#decide input { width: 360px; font: inherit; padding: 3px 6px; }
#message { margin: 4px 0 8px; font-size: 13px; min-height: 1.4em; }
#message.error { color: #b00; }
#sheet { display: none; padding: 14px; flex-wrap: wrap; gap: 12px; align-content: flex-start; }
body.sheet #sheet { display: flex; } body.sheet main { display: none; }
#sheet figure { background: #fff; padding: 6px; border: 1px solid #ccc; cursor: pointer; }
#sheet figure.current { outline: 3px solid #36f; }
#sheet figure div { display: flex; gap: 4px; }
#sheet figure img { width: 96px; height: 96px; }
#sheet figure img.missing { background: #fff; border: 1px dashed #c33; }
#sheet figcaption { max-width: 196px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#help { display: none; position: fixed; right: 20px; bottom: 20px; background: #fff; border: 1px solid #888;
  padding: 10px 16px; box-shadow: 0 2px 8px #0004; font-size: 13px; }
body.help #help { display: block; }
"""

SCRIPT = r"""
const CONFIG = JSON.parse(document.getElementById("config").textContent);
const STATIC = CONFIG.mode === "static";
let all = [], shown = [], index = 0, flipped = false, urls = {}, several = false;
const $ = (id) => document.getElementById(id);
const LABEL = {approved: "approved", rejected: "rejected", pending: "pending",
  "gate-rejected": "gate rejected", unreviewed: "unreviewed"};

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Math.abs(v) >= 1e8) return "∞";
  return Number(v).toPrecision(4).replace(/\.?0+$/, "");
}

async function load() {
  if (STATIC) {
    all = CONFIG.items;
  } else {
    const r = await fetch("api/items");
    all = (await r.json()).items;
  }
  // One key may be in several sources: items are addressed by asset id, and named with their source.
  several = new Set(all.map(i => i.source)).size > 1;
  const reasons = [...new Set(all.map(i => i.reason).filter(Boolean))].sort();
  const sel = $("reason");
  for (const r of reasons) {
    const o = document.createElement("option"); o.value = r; o.textContent = r; sel.append(o);
  }
  $("state").value = CONFIG.state || "all";
  apply(null);
}

function apply(keepId) {
  const state = $("state").value, reason = $("reason").value, sort = $("sort").value;
  shown = all.filter(i => (state === "all" || i.review === state) && (!reason || i.reason === reason));
  const byKey = (a, b) => a.key.localeCompare(b.key) || a.source.localeCompare(b.source);
  if (sort === "worst") shown.sort((a, b) => ((b.pressure || 0) - (a.pressure || 0)) || byKey(a, b));
  else shown.sort(byKey);
  const at = keepId === null ? -1 : shown.findIndex(i => i.id === keepId);
  index = at >= 0 ? at : 0;
  drawList(); drawSheet(); show();
}

function named(item) { return several ? `${item.key} (${item.source})` : item.key; }

function counts() {
  const c = {};
  for (const i of all) c[i.review] = (c[i.review] || 0) + 1;
  $("counts").textContent = Object.entries(c).map(([k, v]) => `${v} ${LABEL[k] || k}`).join(" · ");
}

function drawList() {
  const ul = $("list"); ul.textContent = "";
  shown.forEach((item, n) => {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    const k = document.createElement("span"); k.className = "k";
    k.textContent = k.title = named(item);
    const b = document.createElement("span"); b.className = "badge " + item.review;
    b.textContent = LABEL[item.review] + (item.pressure !== null ? " " + fmt(item.pressure) : "");
    li.append(k, b);
    li.onclick = () => { index = n; show(); };
    ul.append(li);
  });
  counts();
}

function drawSheet() {
  const sheet = $("sheet"); sheet.textContent = "";
  shown.forEach((item, n) => {
    const f = document.createElement("figure"); f.dataset.id = item.id;
    const d = document.createElement("div");
    for (const kind of ["original", "render"]) {
      const img = document.createElement("img"); img.alt = kind;
      if (STATIC) { img.loading = "lazy"; img.src = `img/${item.id}-${kind}-thumb.png`; }
      else sheetImage(item, kind, img);
      d.append(img);
    }
    const c = document.createElement("figcaption");
    c.textContent = `${LABEL[item.review]} · ${named(item)}`; c.title = named(item);
    f.append(d, c);
    f.onclick = () => { index = n; document.body.classList.remove("sheet"); show(); };
    sheet.append(f);
  });
}

async function sheetImage(item, kind, img) {
  // A thumbnail fetched as the page's own pictures are: a 503 (the render queue is full while the
  // sheet asks for every render at once) is asked again when the server says, not left broken.
  const got = await image(item, kind);
  if (got.src) { img.src = got.src; img.classList.remove("missing"); img.title = got.note || ""; return; }
  img.classList.add("missing"); img.title = got.error;
  if (got.retry) setTimeout(() => sheetImage(item, kind, img), got.retry * 1000);
}

async function image(item, kind) {
  // An image and what the server says about it (how verified, where from), or the reason there is none.
  if (STATIC) {
    const info = item.images && item.images[kind];
    if (info && info.file) return {src: "img/" + info.file, note: info.note || ""};
    return {error: (info && info.note) || "not in this export"};
  }
  const key = item.id + "/" + kind;
  if (urls[key]) return urls[key];
  const r = await fetch(`img/${key}`);
  if (!r.ok) {  // a render still under way or a full queue says when to ask again (Retry-After)
    const text = (await r.text()).trim();
    const retry = r.status === 503 ? Number(r.headers.get("retry-after") || 0) : 0;
    return retry > 0 ? {error: `${text} (asking again in ${retry} s)`, retry} : {error: text};
  }
  const note = r.headers.get("x-archiver-verified") || r.headers.get("x-archiver-original") || "";
  const got = {src: URL.createObjectURL(await r.blob()), note};
  urls[key] = got;
  return got;
}

function place(fig, got, caption) {
  const old = fig.querySelector("img, .missing"); if (old) old.remove();
  let el;
  if (got.error) { el = document.createElement("div"); el.className = "missing"; el.textContent = got.error; }
  else { el = document.createElement("img"); el.src = got.src; el.alt = caption; }
  fig.prepend(el);
  fig.querySelector("figcaption").innerHTML = caption;
}

const FIGURE = {original: "flip", render: "render", diff: "diff", colour: "colour"};
function caption(kind, got) {
  if (kind === "original") return `<b>original</b> ${esc(got.note || "")} <i>(f flips)</i>`;
  if (kind === "render") return `render ${esc(got.note || "")}`;
  if (kind === "diff") return `difference ×${CONFIG.gain}`;
  return `ΔE00 low-passed: yellow at ${fmt(CONFIG.colour_max)}, red at twice`;
}

function drawImage(item, kind, got, ticket) {
  // Placed now; one that is still rendering is asked for again when the server says, for as long
  // as this item is the one shown (`ticket`), until it comes or fails for good.
  if (kind === "original") item._orig = got;
  if (kind === "render") item._rend = got;
  if (!(kind === "original" && flipped)) place($(FIGURE[kind]), got, caption(kind, got));
  if (!got.retry) return;
  setTimeout(async () => {
    if (ticket !== drawing) return;
    const again = await image(item, kind);
    if (ticket === drawing) drawImage(item, kind, again, ticket);
  }, got.retry * 1000);
}

let drawing = 0;
async function show() {
  for (const e of document.querySelectorAll("#list li.current, #sheet figure.current")) {
    e.classList.remove("current");
  }
  const item = shown[index];
  $("item").hidden = !item;
  if (!item) { $("message").textContent = "nothing to review under this filter"; return; }
  const li = $("list").children[index]; li.classList.add("current"); li.scrollIntoView({block: "nearest"});
  const fig = $("sheet").children[index]; if (fig) fig.classList.add("current");
  flipped = false;
  const ticket = ++drawing;
  $("key").textContent = named(item);
  $("review").className = "badge " + item.review;
  $("review").textContent = LABEL[item.review] + (item.reviewer ? ` by ${item.reviewer}` : "")
    + (item.comment ? ` — “${item.comment}”` : "");
  $("state-line").textContent = `state ${item.state}` + (item.reason ? ` · reason ${item.reason}` : "")
    + (item.reason_detail ? ` (${item.reason_detail})` : "");
  $("comment").value = "";
  drawChecks(item); drawRecord(item);
  $("message").textContent = ""; $("message").className = "";
  let detail = item;
  if (!STATIC) {
    const r = await fetch(`api/items/${item.id}`);
    if (ticket !== drawing) return;
    if (r.ok) detail = await r.json();
  }
  const where = detail.original;
  $("where").textContent = where ? `original: ${where.where} — ${where.note}` : "";
  const [orig, rend] = await Promise.all([image(item, "original"), image(item, "render")]);
  if (ticket !== drawing) return;
  drawImage(item, "original", orig, ticket); drawImage(item, "render", rend, ticket);
  const [diff, colour] = await Promise.all([image(item, "diff"), image(item, "colour")]);
  if (ticket !== drawing) return;
  drawImage(item, "diff", diff, ticket); drawImage(item, "colour", colour, ticket);
  if (index + 1 < shown.length && !STATIC) {  // the next pair, while this one is looked at
    image(shown[index + 1], "original"); image(shown[index + 1], "render");
  }
}

function esc(s) { const d = document.createElement("span"); d.textContent = s; return d.innerHTML; }

function drawChecks(item) {
  const body = $("checks").querySelector("tbody"); body.textContent = "";
  for (const c of item.checks) {
    const tr = document.createElement("tr"); tr.dataset.check = c.name;
    if (c.name === item.nearest) tr.classList.add("nearest");
    if (c.pressure !== null && c.pressure > 1) tr.classList.add("failed");
    const limit = (c.kind === "max" ? "≤ " : "≥ ") + fmt(c.limit);
    for (const v of [c.label, fmt(c.value), limit, fmt(c.pressure)]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    body.append(tr);
  }
}

function drawRecord(item) {
  const dl = $("record"); dl.textContent = "";
  const r = item.record;
  const rows = r ? [["prompt", r.prompt], ["negative", r.negative_prompt || "–"], ["seed", r.seed],
    ["model", `${r.model} (${r.model_sha256.slice(0, 12)}…)`], ["steps", r.steps],
    ["size", `${r.width}×${r.height}`],
    ["deterministic", fmt(item.deterministic)]] : [["record", "none: the gate kept no record"]];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v; dl.append(dt, dd);
  }
}

function flip() {
  const item = shown[index]; if (!item || !item._orig) return;
  flipped = !flipped;
  const got = flipped ? item._rend : item._orig;
  place($("flip"), got, flipped ? `<b>render</b> ${esc(got.note || "")} <i>(f flips)</i>`
                                : `<b>original</b> ${esc(got.note || "")} <i>(f flips)</i>`);
  $("flip").dataset.showing = flipped ? "render" : "original";
}

let decided = 0;  // the last decision's message wins, whichever next pair finishes drawing first
async function decide(decision) {
  const item = shown[index]; if (!item) return;
  const comment = $("comment").value.trim();
  const msg = $("message");
  if (STATIC) {
    item.review = decision === "approve" ? "approved" : "rejected";
    item.comment = comment || null; item.reviewer = "this page";
    CONFIG.decided[item.id] = {key: item.key, source: item.source, decision, comment};
    $("download").disabled = false;
  } else {
    const r = await fetch(`api/items/${item.id}/decision`, {method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify({decision, comment: comment || null})});
    if (!r.ok) {
      msg.className = "error"; msg.textContent = await r.text(); msg.scrollIntoView({block: "nearest"});
      return;
    }
    Object.assign(item, await r.json());
  }
  const mine = ++decided;
  drawList(); drawSheet();
  if (index + 1 < shown.length) index += 1;
  await show();
  if (mine === decided) { msg.className = ""; msg.textContent = `${LABEL[item.review]}: ${named(item)}`; }
}

function download() {
  const rows = [["key", "source", "decision", "comment"]];
  for (const d of Object.values(CONFIG.decided)) {
    rows.push([d.key, d.source, d.decision, d.comment || ""]);
  }
  const csv = rows.map(r => r.map(v => `"${String(v).replaceAll('"', '""')}"`).join(",")).join("\n") + "\n";
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([csv], {type: "text/csv"})); a.download = "decisions.csv"; a.click();
}

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") {
    if (e.key === "Escape" || e.key === "Enter") e.target.blur();
    return;
  }
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const act = {j: () => move(1), ArrowRight: () => move(1), ArrowDown: () => move(1),
    k: () => move(-1), ArrowLeft: () => move(-1), ArrowUp: () => move(-1),
    a: () => decide("approve"), r: () => decide("reject"), f: flip, " ": flip,
    g: () => document.body.classList.toggle("sheet"), c: () => $("comment").focus(),
    "?": () => document.body.classList.toggle("help")}[e.key];
  if (act) { e.preventDefault(); act(); }
});

function move(by) {
  const next = Math.min(Math.max(index + by, 0), shown.length - 1);
  if (next !== index) { index = next; show(); }
}

for (const id of ["state", "reason", "sort"]) {
  $(id).onchange = () => { apply(shown[index] ? shown[index].id : null); $(id).blur(); };
}
if (STATIC) { $("download").hidden = false; $("download").onclick = download; }
load();
"""

BODY = """
<header>
  <h1>{title}</h1>
  <label>review <select id="state">
    <option value="all">all</option><option value="pending">pending</option>
    <option value="approved">approved</option><option value="rejected">rejected</option>
    <option value="gate-rejected">gate rejected</option><option value="unreviewed">unreviewed</option>
  </select></label>
  <label>reason <select id="reason"><option value="">any</option></select></label>
  <label>sort <select id="sort"><option value="worst">worst metric first</option>
    <option value="key">key</option></select></label>
  <button id="download" hidden disabled>download decisions.csv</button>
  <span id="keys">j/k next/previous · a approve · r reject · f flip · g sheet · ? keys</span>
  <span id="counts"></span>
</header>
<main>
  <ul id="list"></ul>
  <section id="item">
    <h2><span id="key"></span> <span id="review" class="badge"></span></h2>
    <div class="where"><span id="state-line"></span><br><span id="where"></span></div>
    <div id="message"></div>
    <div class="pair">
      <figure id="flip" data-showing="original"><figcaption></figcaption></figure>
      <figure id="render"><figcaption></figcaption></figure>
      <figure id="diff"><figcaption></figcaption></figure>
      <figure id="colour"><figcaption></figcaption></figure>
    </div>
    <table id="checks" class="checks"><thead><tr><th>check</th><th>value</th><th>threshold</th>
      <th>of the margin</th></tr></thead><tbody></tbody></table>
    <dl id="record" class="record"></dl>
    <div id="decide"><input id="comment" placeholder="comment (c), then a or r"></div>
  </section>
</main>
<section id="sheet"></section>
<div id="help">
  <b>keys</b><br>j, →, ↓ next · k, ←, ↑ previous<br>a approve · r reject (a comment first: c)<br>
  f or space: flip original and render in place<br>g contact sheet · ? this help
</div>
"""


def document(config: dict[str, Any], title: str) -> str:
    """The page; `config` is what its script reads (mode, items when static, thresholds)."""
    data = json.dumps(config, separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        + BODY.replace("{title}", html.escape(title))
        + f'<script type="application/json" id="config">{data}</script>'
        + f"<script>{SCRIPT}</script></body></html>\n"
    )
