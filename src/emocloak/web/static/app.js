// emocloak's page: plain JS over the HTTP API (see /docs). No framework, no network beyond this server.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
let OPTIONS = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const pct = (p) => `${Math.round(p * 100)}%`;
const mb = (n) => `${(n / 1e6).toFixed(0)} MB`;

async function errorText(res) {
  try {
    const body = await res.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  } catch (_) { /* not JSON */ }
  return `the server answered ${res.status} ${res.statusText}`;
}

function showError(id, message) {
  const p = document.getElementById(id);
  p.textContent = message || "";
  p.hidden = !message;
}

// ---- start-up: options, tabs, drop zones ---------------------------------------------------
async function init() {
  const res = await fetch("/api/options");
  OPTIONS = await res.json();
  const method = $("#method");
  for (const m of OPTIONS.methods) method.append(el("option", { value: m, text: m, selected: m === OPTIONS.default_method }));
  for (const s of OPTIONS.strengths) $("#strength").append(el("option", { value: s, text: s, selected: s === OPTIONS.default_strength }));
  for (const l of OPTIONS.labels) $("#target").append(el("option", { value: l, text: l }));
  $("#recognizer").append(el("option", { value: "", text: "default", title: "filters, universal: cnn; tailored: every differentiable recognizer" }));
  for (const r of OPTIONS.recognizers) $("#recognizer").append(el("option", { value: r.name, text: r.name, title: r.description }));
  method.addEventListener("change", strengthState);
  strengthState();
  const L = OPTIONS.limits;
  $("#cloak-form .limits").textContent = `JPEG, PNG, WebP, HEIC... up to ${mb(L.file_bytes)} a photo, ${L.files} photos and ${mb(L.request_bytes)} at a time`;
  if (!OPTIONS.local_only) {
    $("#where").textContent = "Warning: this server listens beyond this computer; others on the network can reach it.";
    $("#where").classList.add("warn");
  }
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => switchView(tab.dataset.view));
  for (const drop of document.querySelectorAll(".drop")) dropZone(drop);
  $("#cloak-form").addEventListener("submit", submitCloak);
  $("#read-form").addEventListener("submit", submitRead);
}

function strengthState() {
  const takes = OPTIONS.strength_methods.includes($("#method").value);
  $("#strength").disabled = !takes;
  $("#strength-note").textContent = takes ? "" : `(${OPTIONS.strength_methods.join(", ")} only)`;
}

function switchView(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${name}`;
}

function dropZone(drop) {
  const input = document.getElementById(drop.dataset.input);
  const chosen = $(".chosen", drop);
  const say = () => {
    const n = input.files.length;
    chosen.textContent = n ? `${n} photo${n > 1 ? "s" : ""}: ${[...input.files].map((f) => f.name).join(", ")}` : "";
  };
  input.addEventListener("change", say);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    input.files = e.dataTransfer.files;
    say();
  });
}

// ---- cloaking: submit, follow, render ---------------------------------------------------------
// One upload from a form ("cloak" or "read"): the button says it is busy, the server's message shows on failure.
async function send(name, url, fields, busy, done) {
  const input = $(`#${name}-files`);
  const files = [...input.files];
  if (!files.length) return showError(`${name}-error`, "Choose one or more photos first.");
  showError(`${name}-error`, "");
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const button = $(`#${name}-go`);
  const label = button.textContent;
  button.disabled = true;
  button.textContent = busy;
  try {
    const res = await fetch(url, { method: "POST", body: form });
    if (!res.ok) return showError(`${name}-error`, await errorText(res));
    done(await res.json(), files);
    input.value = "";
    $(`#${name}-form .chosen`).textContent = "";
  } catch (err) {
    showError(`${name}-error`, `Upload failed: ${err.message}`);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

function submitCloak(event) {
  event.preventDefault();
  const fields = { method: $("#method").value, strength: $("#strength").value, target: $("#target").value, recognizers: $("#recognizer").value };
  send("cloak", "/api/jobs", fields, "Uploading...", follow);
}

const JOBS = new Map(); // job id -> {box, cards}

function follow(job) {
  const box = el("div", { class: "job", "data-job": job.id });
  const zip = el("a", { class: "button zip", href: `/api/jobs/${job.id}/zip`, hidden: true, text: "Download all (zip)" });
  const o = job.options;
  const what = `${o.method}${OPTIONS.strength_methods.includes(o.method) ? ` (${o.strength})` : ""}` +
    `${o.target ? `, target ${o.target}` : ""}${o.recognizers.length ? `, against ${o.recognizers.join(", ")}` : ""}`;
  const left = el("span", { class: "job-left", "aria-live": "polite" });
  box.append(el("div", { class: "job-head" }, el("span", { text: `${job.items.length} photo${job.items.length > 1 ? "s" : ""}: ${what}` }), left, zip));
  $("#queue").prepend(box);
  $("#queue-head").hidden = false;
  JOBS.set(job.id, { box, zip, left, cards: new Map() });
  render(job);
  if (job.finished) return;
  if (window.EventSource) {
    const source = new EventSource(`/api/jobs/${job.id}/events`);
    source.addEventListener("job", (e) => {
      const snap = JSON.parse(e.data);
      render(snap);
      if (snap.finished) source.close();
    });
    source.onerror = () => { source.close(); poll(job.id); };
  } else poll(job.id);
}

async function poll(id) {
  const res = await fetch(`/api/jobs/${id}`);
  if (!res.ok) return;
  const snap = await res.json();
  render(snap);
  if (!snap.finished) setTimeout(() => poll(id), 1000);
}

function render(job) {
  const state = JOBS.get(job.id);
  for (const item of job.items) {
    let card = state.cards.get(item.index);
    if (!card) {
      card = newCard(job.id, item);
      state.cards.set(item.index, card);
      state.box.append(card.root);
    }
    updateCard(card, item);
  }
  state.zip.hidden = !job.items.some((i) => i.status === "done");
  jobLeft(state);
  const all = [...JOBS.values()].flatMap((s) => [...s.cards.values()]);
  const waiting = all.filter((c) => c.status === "queued" || c.status === "working").length;
  $("#queue-count").textContent = waiting ? `${waiting} photo${waiting > 1 ? "s" : ""} waiting or in progress` : "all done";
}

function newCard(jobId, item) {
  const root = el("article", { class: "card", "data-index": item.index });
  const badge = el("span", { class: "badge" });
  const verdict = el("span", { class: "verdict" });
  const bar = el("div", { class: "fill" });
  const what = el("span", { class: "what" });
  const eta = el("span", { class: "eta" });
  const stage = el("p", { class: "stage", "aria-live": "polite" }, what, eta);
  const error = el("p", { class: "error", hidden: true });
  root.append(
    el("header", {}, el("h3", { text: item.name }), badge, verdict),
    el("div", { class: "progress", role: "progressbar", "aria-label": `progress of ${item.name}` }, bar),
    stage, error,
  );
  return { root, badge, verdict, bar, stage, what, eta, error, jobId, status: null, built: false, item: null, at: 0 };
}

const duration = (s) => (s < 5 ? "a few seconds" : s < 60 ? `about ${Math.round(s)} s`
  : `about ${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, "0")} s`);
// Seconds left as the server last estimated them, counted down here between its events.
const secondsLeft = (card) => Math.max(0, card.item.eta - (Date.now() - card.at) / 1000);

function timeLeft(card) {
  const item = card.item;
  if (item.eta === null) return "estimating…";
  const s = secondsLeft(card);
  if (s < 1 && item.status === "working") return "almost done";
  if (item.eta_covers === "cloak") return `${duration(s)} left in the cloak, then the checks`;
  return item.status === "queued" ? `done in ${duration(s)}` : `${duration(s)} left`;
}

function showStage(card) {
  const item = card.item;
  const active = item.status === "queued" || item.status === "working";
  card.what.textContent = active ? item.stage : "";
  card.eta.textContent = active ? timeLeft(card) : "";
  card.eta.dataset.known = String(item.eta !== null);
  card.stage.hidden = !active;
}

// The job's line: photos done, and time until its last photo is done (the latest of its photos' estimates).
function jobLeft(state) {
  const cards = [...state.cards.values()].filter((c) => c.item);
  const active = cards.filter((c) => c.item.status === "queued" || c.item.status === "working");
  const done = cards.filter((c) => c.item.status === "done").length;
  const known = active.every((c) => c.item.eta !== null && c.item.eta_covers === "photo");
  const left = !active.length ? "" : known ? ` · ${duration(Math.max(...active.map(secondsLeft)))} left` : " · estimating…";
  state.left.textContent = `${done} of ${cards.length} done${left}`;
}

setInterval(() => {
  for (const s of JOBS.values()) {
    for (const c of s.cards.values()) if (c.item && c.item.eta !== null) showStage(c);
    jobLeft(s);
  }
}, 1000);

function updateCard(card, item) {
  card.status = item.status;
  card.item = item;
  card.at = Date.now();
  card.root.dataset.status = item.status;
  card.badge.textContent = item.status;
  card.bar.style.width = pct(item.progress);
  card.root.querySelector(".progress").setAttribute("aria-valuenow", Math.round(item.progress * 100));
  showStage(card);
  card.error.textContent = item.error || "";
  card.error.hidden = !item.error;
  card.root.querySelector(".progress").hidden = item.status === "done" || item.status === "failed";
  if (item.status === "done" && !card.built) {
    card.built = true;
    buildResult(card, item);
  }
}

function buildResult(card, item) {
  const r = item.result;
  const base = `/api/jobs/${card.jobId}/photos/${item.index}`;
  const names = Object.keys(r.fooled);
  const fooled = names.filter((n) => r.fooled[n] === true);
  card.verdict.textContent = r.faces.length === 0 ? "no face read"
    : fooled.length === names.length ? "fooled every recognizer"
      : `fooled ${fooled.length} of ${names.length} recognizers`;
  card.verdict.className = `verdict ${fooled.length === names.length ? "yes" : fooled.length ? "some" : "no"}`;
  card.root.append(...[
    heldOut(r.held_out, r.faces.length),
    viewer(base, r),
    el("p", { class: "facts" },
      el("span", { text: `SSIM ${r.ssim.toFixed(3)}` }),
      el("span", { text: `${r.seconds.toFixed(1)} s to cloak` }),
      el("span", { text: `${r.width}×${r.height}` }),
      el("span", { text: `${r.method}${r.target ? `, target ${r.target}` : ""}` })),
    r.note ? el("p", { class: "note", text: r.note }) : null,
    faceReadings(r.faces, true, r.recognizers, r.held_out),
    el("p", { class: "actions" },
      el("a", { class: "button primary download", href: `${base}/download`, download: r.download, text: `Download ${r.download}` }),
      el("a", { class: "button", href: `${base}/sidecar`, target: "_blank", text: "Sidecar (JSON)" })),
  ].filter(Boolean));
}

function viewer(base, r) {
  const canvas = el("div", { class: "canvas", style: `aspect-ratio: ${r.width} / ${r.height}; width: ${fitWidth(r, "75vh")}` });
  const cloaked = el("img", { class: "layer", src: `${base}/cloaked`, alt: "cloaked photo" });
  const original = el("img", { class: "layer", src: `${base}/original`, alt: "original photo" });
  const top = el("div", { class: "clip" }, original);
  const diff = el("img", { class: "layer", alt: "difference, amplified", hidden: true });
  const divider = el("div", { class: "divider" });
  const boxes = faceBoxes(r);
  canvas.append(cloaked, top, diff, divider, boxes);
  const slider = el("input", { type: "range", min: 0, max: 100, value: 50, class: "slider", "aria-label": "compare original and cloaked" });
  const setSplit = () => {
    top.style.clipPath = `inset(0 ${100 - slider.value}% 0 0)`;
    divider.style.left = `${slider.value}%`;
  };
  slider.addEventListener("input", setSplit);
  setSplit();
  const legend = el("p", { class: "legend", text: "left of the line: original; right: cloaked" });
  const gain = el("select", { "aria-label": "difference gain" }, [5, 10, 20, 50].map((g) => el("option", { value: g, text: `×${g}`, selected: g === 10 })));
  const modes = { compare: "Compare", original: "Original", cloaked: "Cloaked", difference: "Difference" };
  const buttons = {};
  const setMode = (mode) => {
    for (const [m, b] of Object.entries(buttons)) b.setAttribute("aria-pressed", String(m === mode));
    top.hidden = !(mode === "compare" || mode === "original");
    top.style.clipPath = mode === "original" ? "none" : top.style.clipPath;
    if (mode === "compare") setSplit();
    diff.hidden = mode !== "difference";
    if (mode === "difference") diff.src = `${base}/difference?gain=${gain.value}`;
    divider.hidden = slider.hidden = mode !== "compare";
    legend.textContent = {
      compare: "left of the line: original; right: cloaked",
      original: "the original photo",
      cloaked: "the cloaked photo, as downloaded",
      difference: `what the cloak changed, amplified ${gain.value} times (black: unchanged)`,
    }[mode];
  };
  for (const [m, label] of Object.entries(modes)) buttons[m] = el("button", { type: "button", text: label, onclick: () => setMode(m) });
  gain.addEventListener("change", () => setMode("difference"));
  const frame = el("div", { class: "frame" }, canvas);
  const zoom = el("button", { type: "button", text: "100%", "aria-pressed": "false", title: "show every pixel" });
  zoom.addEventListener("click", () => {
    const on = zoom.getAttribute("aria-pressed") !== "true";
    zoom.setAttribute("aria-pressed", String(on));
    frame.classList.toggle("actual", on);
    canvas.style.width = on ? `${r.width}px` : fitWidth(r, "75vh");
  });
  const showBoxes = el("input", { type: "checkbox", checked: true });
  showBoxes.addEventListener("change", () => { boxes.hidden = !showBoxes.checked; });
  const tools = el("div", { class: "tools" },
    el("span", { class: "group" }, Object.values(buttons)),
    el("label", { class: "gain" }, "gain ", gain),
    zoom,
    el("label", {}, showBoxes, " face boxes"));
  setMode("compare");
  return el("div", { class: "viewer" }, tools, frame, slider, legend);
}

// Numbered boxes over the photo, in percent of its size, so they follow it at any zoom.
// Fit: as wide as the frame allows, at most maxHeight tall, small photos enlarged to 420 px; 100%: pixel for pixel.
const fitWidth = (r, maxHeight) => {
  const a = r.width / r.height;
  return `min(100%, calc(${maxHeight} * ${a}), max(${r.width}px, calc(420px * ${a})))`;
};

function faceBoxes(r) {
  const at = (b) => `left:${(b[0] / r.width) * 100}%;top:${(b[1] / r.height) * 100}%;` +
    `width:${((b[2] - b[0]) / r.width) * 100}%;height:${((b[3] - b[1]) / r.height) * 100}%`;
  return el("div", { class: "boxes" }, r.faces.map((f, i) => el("div", { class: "box", text: String(i + 1), style: at(f.box) })));
}

// ---- the honest estimate: recognizers the cloak never used, after a JPEG re-save ----------------
const weakFace = (f) => f.weak;
const channelText = (c) => c.replace(/^jpeg:/i, "JPEG quality ");
const count = (f) => `protected against ${f.n_changed} of ${f.n_readers} held-out reader${f.n_readers === 1 ? "" : "s"}`;

function heldOut(h, nFaces) {
  if (!h) return null;
  const weak = Boolean(h.warning) || h.faces.some(weakFace);
  const box = el("section", { class: `heldout ${weak ? "weak" : "ok"}`, "data-weak": String(weak) });
  if (weak) {
    const warning = (h.warning || "weakly protected: fewer than half the held-out readers changed their reading on a face")
      .replace(/--strength (\w+)/g, "strength \u201c$1\u201d").replace(/--target /g, "target "); // the page's own settings, not the command line's
    box.append(el("p", { class: "banner", role: "alert" }, el("strong", { text: "Warning: " }), warning));
  }
  box.append(el("p", { class: "summary" }, el("strong", { text: "Honest estimate: " }), h.summary));
  const lost = h.faces.filter((f) => f.face === null || f.face === undefined || f.face > nFaces);
  for (const f of lost) box.append(el("p", { class: "lost", text: `a face at [${f.region.join(", ")}] no reader below found: ${count(f)}` }));
  box.append(el("p", { class: "why", text: `${h.readers.join(", ")} took no part in making this cloak; each read a ` +
    `${channelText(h.channel)} re-save of the original and of the cloaked photo. A face counts as protected ` +
    "against a reader when its reading changed." }));
  const rel = Object.entries(h.relatives || {});
  if (rel.length) {
    box.append(el("p", { class: "why", text: `Less independent: ${rel.map(([r, ms]) => `${r} (a relative of ${ms.join(", ")})`).join("; ")}.` }));
  }
  return box;
}

// One face's held-out line, beside its readings: how many changed, and which.
function heldOutFace(f, channel) {
  const says = (v) => (v === null ? "found no face" : v ? "changed" : "unchanged");
  return el("div", { class: `ho-face ${f.weak ? "weak" : "ok"}`, "data-weak": String(f.weak) },
    el("strong", { text: `Held out: ${count(f)}` }),
    f.weak ? el("span", { class: "mark no", text: "weak" }) : null,
    el("span", { class: "ho-readers" }, Object.entries(f.changed).map(([name, v]) => el("span", {
      class: `chip ${v === null ? "none" : v ? "yes" : "no"}`, text: `${name}: ${says(v)}`,
    }))),
    el("small", { class: "muted", text: `after a ${channelText(channel)} re-save; the cards below read the file as downloaded` }));
}

// ---- readings as bars -------------------------------------------------------------------------
function faceReadings(faces, compare, aimed = [], held = null) {
  if (!faces.length) return el("p", { class: "note", text: "No recognizer found a face in this photo." });
  const readers = held ? held.readers : [];
  return el("div", { class: "faces" }, faces.map((face, i) => {
    const est = held ? held.faces.find((f) => f.face === i + 1) : null;
    return el("section", { class: "face" },
      el("h4", { text: `Face ${i + 1}` }),
      est ? heldOutFace(est, held.channel) : null,
      el("div", { class: "recs" }, Object.entries(face.readings).map(([name, r]) => compare ? compared(name, r, aimed, readers) : single(name, r))));
  }));
}

function compared(name, r, aimed, readers = []) {
  const head = el("header", {}, el("strong", { text: name }),
    aimed.includes(name) ? el("small", { class: "aim", text: "cloaked against" }) : null,
    readers.includes(name) ? el("small", { class: "held", text: "held out" }) : null);
  if (!r.before) {
    head.append(el("span", { class: "muted", text: " found no face here" }));
    return el("div", { class: "rec" }, head);
  }
  const after = r.after ? r.after.emotion : "no face found";
  head.append(el("span", { text: ` ${r.before.emotion} → ${after}` }),
    el("span", { class: `mark ${r.fooled ? "yes" : "no"}`, text: r.fooled ? "fooled" : "not fooled" }));
  return el("div", { class: "rec", "data-recognizer": name, "data-fooled": String(r.fooled) }, head,
    bars(r.before.probabilities, r.after ? r.after.probabilities : null),
    el("p", { class: "key" }, el("i", { class: "b" }), " before ", el("i", { class: "a" }), " after"));
}

function single(name, r) {
  const head = el("header", {}, el("strong", { text: name }));
  if (!r) return el("div", { class: "rec" }, head, el("span", { class: "muted", text: " found no face here" }));
  head.append(el("span", { text: ` ${r.emotion} ${pct(Math.max(...r.probabilities))}` }));
  return el("div", { class: "rec", "data-recognizer": name }, head, bars(null, r.probabilities));
}

function bars(before, after) {
  const top = (p) => (p ? p.indexOf(Math.max(...p)) : -1);
  return el("div", { class: "bars" }, OPTIONS.labels.map((label, k) => el("div", {
    class: `row${k === top(after) ? " top" : ""}${k === top(before) ? " was" : ""}`,
  },
  el("span", { class: "label", text: label }),
  el("span", { class: "track" },
    before ? el("i", { class: "b", style: `width:${pct(before[k])}` }) : null,
    after ? el("i", { class: "a", style: `width:${pct(after[k])}` }) : null),
  el("span", { class: "num", text: before && after ? `${pct(before[k])} → ${pct(after[k])}` : pct((after || before)[k]) }))));
}

// ---- reading view -----------------------------------------------------------------------------
function submitRead(event) {
  event.preventDefault();
  send("read", "/api/read", {}, "Reading...", (results, files) => {
    const cards = results.map((r, i) => readCard(r, files[i]));
    $("#read-results").prepend(...cards); // newest batch on top, in the order chosen
  });
}

function readCard(r, file) {
  const card = el("article", { class: "card read", "data-status": r.error ? "failed" : "done" }, el("header", {}, el("h3", { text: r.name })));
  if (r.error && !r.faces) return card.append(el("p", { class: "error", text: r.error })), card;
  const canvas = el("div", { class: "canvas", style: `aspect-ratio: ${r.width} / ${r.height}; width: ${fitWidth(r, "420px")}` },
    el("img", { class: "layer", src: URL.createObjectURL(file), alt: r.name }),
    faceBoxes(r));
  card.append(el("div", { class: "frame small" }, canvas));
  if (r.error) card.append(el("p", { class: "error", text: r.error }));
  card.append(faceReadings(r.faces, false));
  return card;
}

init().catch((err) => showError("cloak-error", `Cannot reach the emocloak server: ${err.message}`));
