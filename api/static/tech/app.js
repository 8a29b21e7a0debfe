// The technician app (/tech): duty, the phone's position to the gateway, the ring, the job
// from journey to completion, the later jobs; and offline, an outbox.
//
// Every write goes through the outbox, an IndexedDB store: the action is stored with an
// Idempotency-Key made when it is taken, then sent, in order, one at a time; without a
// connection it stays, shown as pending, and goes when the connection returns (the same
// key, so an action the API applied but whose answer was lost is not applied twice). An
// action the API refuses (409: the request moved on) leaves the outbox for a "not
// applied" list the technician reads. Fixes go to their own store and are posted to the
// gateway's OwnTracks HTTP listener as the technician's device, in batches: one fix at a
// time while connected, everything taken offline at once when it returns.
import { openDB } from "../vendor/idb/index.js";
import {
  HttpError,
  Offline,
  call,
  makeMap as makeBaseMap,
  metres,
  registerWorker,
  ringTone,
  setText,
  signIn,
  time,
  unlockSound,
  uuid,
} from "../field/field.js";

const ON_DUTY = new Set(["Available", "EnRoute", "Servicing"]);
const UNDER_WAY = new Set(["EnRoute", "Servicing"]);
const FIX_EVERY_S = 5; // re-read the position this often when watchPosition is quiet
const BATCH_MAX = 100; // fixes in one request to the gateway (it takes up to 500)
const TICK_MS = 5000; // the outbox retries this often while something waits
const CREDS_KEY = "fixgate.tech.device";
const NEW_CREDS_S = 15; // credentials this young are not yet refused for good (registry reload)
const THROTTLED_MS = 60000; // the gateway throttles an address with many failed logins
const AFTER = { start_journey: "EnRoute", start_work: "InProgress", complete: "Completed" };
const WORDS = {
  Assigned: "Assigned to you",
  EnRoute: "On the way",
  InProgress: "Working",
  Completed: "Completed",
  Canceled: "Canceled",
};
const DUTY_WORDS = { Available: "On duty", OnBreak: "On break", Offline: "Off duty" };
const JOB_EVENTS = new Set([
  "request_accepted", "request_status_changed", "request_assigned", "journey_started",
  "technician_arrived", "service_started", "service_completed", "request_canceled",
  "QueueUpdated", "request_escalated",
]);

const state = {
  claims: null,
  db: null,
  me: null,
  job: null,
  queue: [],
  catalog: [],
  outbox: [],
  applied: [], // sent and applied, until the next load shows their effect (no flicker back)
  tapped: [], // taken, not yet in the outbox's store: a render meanwhile shows them already
  failed: [],
  fixesWaiting: 0,
  duty: null,
  ring: null,
  creds: null,
  lastFix: null,
  held: null, // a reading waiting for the next second (holdForNextSecond)
  heldTimer: null,
  watch: null,
  heartbeat: null,
  gatewayOk: true,
  apiOk: true,
  signedOut: false,
  map: null,
  marks: {},
};

const $ = (id) => document.getElementById(id);

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ---- the outbox: actions -------------------------------------------------------------

async function act(kind, label, method, path, body, requestId) {
  const item = { key: uuid(), kind, label, method, path, body, requestId, takenAt: new Date().toISOString() };
  state.tapped.push(item); // before the first await: a load's render must not draw over the tap
  try {
    await state.db.add("actions", item);
    await refreshOutbox();
  } finally {
    state.tapped = state.tapped.filter((x) => x !== item);
  }
  flushActions();
}

let flushing = false;
let flushAgain = false;
async function flushActions() {
  if (flushing) {
    flushAgain = true;
    return;
  }
  flushing = true;
  let applied = false;
  try {
    for (;;) {
      const [head] = await state.db.getAll("actions", null, 1);
      if (!head || state.signedOut) break;
      try {
        await call(head.path, { method: head.method, body: head.body, key: head.key });
        state.applied.push(head); // before it leaves the store: no render finds it in neither
        await state.db.delete("actions", head.seq);
        applied = true;
        state.apiOk = true;
      } catch (e) {
        if (e instanceof Offline || (e instanceof HttpError && (e.status >= 500 || e.status === 429))) {
          state.apiOk = !(e instanceof Offline);
          break; // later, with the same key
        }
        if (e instanceof HttpError && e.status === 401) {
          state.signedOut = true; // kept: sent once the technician signs in again
          status("Your sign-in has expired: open a new sign-in link. Pending actions are kept.", true);
          break;
        }
        // The API refused it (the request moved on, or is gone): it cannot apply as it is.
        await state.db.delete("actions", head.seq);
        await state.db.add("failed", { ...head, reason: e.message, status: e.status, at: new Date().toISOString() });
        applied = true;
      }
      await refreshOutbox();
    }
  } finally {
    flushing = false;
  }
  await refreshOutbox();
  if (applied) scheduleLoad();
  if (flushAgain) {
    flushAgain = false;
    flushActions();
  }
}

// ---- the outbox: fixes ---------------------------------------------------------------

let minting = null; // one request for credentials at a time: each replaces the last
async function credentials() {
  if (state.creds) return state.creds;
  const kept = sessionStorage.getItem(CREDS_KEY);
  if (kept) {
    state.creds = JSON.parse(kept);
    return state.creds;
  }
  minting =
    minting ||
    call("/technician/device-credentials", { method: "POST", key: uuid() })
      .then((answer) => {
        state.creds = { ...answer.data, mintedAt: Date.now() };
        sessionStorage.setItem(CREDS_KEY, JSON.stringify(state.creds));
        return state.creds;
      })
      .finally(() => {
        minting = null;
      });
  return minting;
}

function forgetCredentials() {
  state.creds = null;
  sessionStorage.removeItem(CREDS_KEY);
}

async function postFixes(creds, fixes) {
  try {
    return await fetch(creds.url, {
      method: "POST",
      headers: {
        Authorization: `Basic ${btoa(`${creds.user}:${creds.token}`)}`,
        "X-Limit-U": creds.user,
        "X-Limit-D": creds.device,
        "Content-Type": "application/json",
      },
      body: JSON.stringify(fixes),
    });
  } catch (e) {
    throw new Offline(e); // no answer: not stored (the gateway answers only once it is)
  }
}

let sending = false;
let sendAgain = false;
let holdUntil = 0; // after a refusal or no answer, the gateway is left alone until then
async function flushFixes() {
  if (sending) {
    sendAgain = true;
    return;
  }
  if (Date.now() < holdUntil) return; // the tick (or the connection's return) tries again
  sending = true;
  try {
    for (;;) {
      const batch = await state.db.getAll("fixes", null, BATCH_MAX);
      if (!batch.length || state.signedOut) break;
      const creds = await credentials();
      const response = await postFixes(creds, batch.map(({ seq, ...fix }) => fix));
      if (response.ok || response.status === 400) {
        // 400: refused whole, it could never be stored as it is; not sent again.
        const tx = state.db.transaction("fixes", "readwrite");
        await Promise.all([...batch.map((f) => tx.store.delete(f.seq)), tx.done]);
        state.gatewayOk = true;
        if (response.ok) showSent(batch[batch.length - 1]);
        continue;
      }
      if (response.status === 401 && Date.now() - (creds.mintedAt || 0) > NEW_CREDS_S * 1000) {
        // Replaced by another sign-in of this technician, or ended by the dispatcher: new
        // ones on the next try. (New ones reach the gateway within a second or so: until
        // then, the same ones again.)
        forgetCredentials();
      }
      // 401 (a wrong token counts against this address at the gateway), 429 (the address
      // is throttled), 503 (not stored in time): not again at once.
      holdUntil = Date.now() + (response.status === 429 ? THROTTLED_MS : TICK_MS);
      state.gatewayOk = false;
      break;
    }
  } catch (e) {
    if (!(e instanceof Offline || e instanceof HttpError)) throw e;
    holdUntil = Date.now() + TICK_MS;
    state.gatewayOk = false;
  } finally {
    sending = false;
  }
  await refreshOutbox();
  if (sendAgain) {
    sendAgain = false;
    flushFixes();
  }
}

function showSent(fix) {
  const when = new Date(fix.tst * 1000).toLocaleTimeString();
  setText("position", `Position sent ${when} (±${fix.acc ?? "?"} m).`);
}

async function refreshOutbox() {
  state.outbox = await state.db.getAll("actions");
  state.failed = await state.db.getAll("failed");
  state.fixesWaiting = await state.db.count("fixes");
  renderOutbox();
  renderJob();
}

function renderOutbox() {
  const offline = !navigator.onLine || !state.apiOk || !state.gatewayOk;
  const waitingFixes = offline ? state.fixesWaiting : 0;
  $("outbox").hidden = !state.outbox.length && !state.failed.length && !waitingFixes;
  const parts = [];
  if (state.outbox.length) parts.push(`${state.outbox.length} action${state.outbox.length > 1 ? "s" : ""}`);
  if (waitingFixes) parts.push(`${waitingFixes} position${waitingFixes > 1 ? "s" : ""}`);
  let summary = "";
  if (parts.length) {
    summary = offline
      ? `No connection: ${parts.join(" and ")} will be sent, in order, when it returns.`
      : `Sending ${parts.join(" and ")}…`;
  }
  setText("outbox-summary", summary);
  const list = $("outbox-actions");
  list.replaceChildren(
    ...state.outbox.map((a) => fixgate.el("li", {}, `${a.label}: pending (taken ${time(a.takenAt)})`)),
  );
  const failed = $("outbox-failed");
  failed.replaceChildren(
    ...state.failed.map((f) =>
      fixgate.el(
        "li",
        {},
        `${f.label}: not applied (${f.reason}) `,
        fixgate.el("button", { type: "button", class: "secondary", onclick: () => dismiss(f.seq) }, "Dismiss"),
      ),
    ),
  );
}

async function dismiss(seq) {
  await state.db.delete("failed", seq);
  await refreshOutbox();
}

// ---- position ------------------------------------------------------------------------

function onPosition(p, asked = false) {
  const c = p.coords;
  // A reading asked for anew (a new watch, maximumAge 0) is the position now, whatever
  // time the browser stamps it with: a desktop's network location, or a position set in
  // DevTools, keeps the time it was first found.
  const tst = Math.floor((asked ? Math.max(p.timestamp, Date.now()) : p.timestamp) / 1000);
  if (state.lastFix && tst <= state.lastFix.tst) {
    holdForNextSecond(c);
    return;
  }
  record(c, tst);
}

// OwnTracks times are whole seconds and a device has one fix a second: a second reading
// within the second of the last fix waits for the next second (a newer reading replaces
// it), so where the phone went last is never dropped, only dated up to a second later.
function holdForNextSecond(c) {
  state.held = c;
  if (state.heldTimer != null) return;
  const wait = (state.lastFix.tst + 1) * 1000 - Date.now();
  state.heldTimer = window.setTimeout(() => {
    state.heldTimer = null;
    if (state.held) record(state.held, state.lastFix.tst + 1);
  }, Math.max(0, wait) + 20);
}

function record(c, tst) {
  state.held = null;
  const fix = { _type: "location", tid: "fx", tst, lat: c.latitude, lon: c.longitude, acc: Math.round(c.accuracy) };
  if (c.altitude != null && Number.isFinite(c.altitude)) fix.alt = Math.round(c.altitude);
  if (c.speed != null && Number.isFinite(c.speed)) fix.vel = Math.round(c.speed * 3.6 * 10) / 10;
  if (c.heading != null && Number.isFinite(c.heading)) fix.cog = Math.round(c.heading);
  state.lastFix = fix;
  showMe([fix.lat, fix.lon]);
  showRingDistance();
  state.db.add("fixes", fix).then(() => flushFixes());
}

function onPositionError(e) {
  const why = {
    [e.PERMISSION_DENIED]: "allow location for this page to share your position.",
    [e.POSITION_UNAVAILABLE]: "the phone has none right now; still trying.",
    [e.TIMEOUT]: "still looking for it.",
  }[e.code];
  setText("position", `No position: ${why || e.message || "still trying."}`);
}

const GEO_OPTIONS = { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 };

// watchPosition, anew: its first reading is fresh (maximumAge 0). A watch is restarted
// when it has been quiet for FIX_EVERY_S (a phone at rest reports little): the ring wants
// a position younger than two minutes, and the engine's arrival readings 10 s apart.
function watch() {
  if (state.watch != null) navigator.geolocation.clearWatch(state.watch);
  let first = true;
  state.watch = navigator.geolocation.watchPosition(
    (p) => {
      onPosition(p, first);
      first = false;
    },
    onPositionError,
    GEO_OPTIONS,
  );
}

function startTracking() {
  if (state.watch != null) return;
  if (!navigator.geolocation) {
    setText("position", "This browser cannot share a position.");
    return;
  }
  watch();
  state.heartbeat = window.setInterval(() => {
    if (!state.lastFix || Date.now() / 1000 - state.lastFix.tst >= FIX_EVERY_S) watch();
  }, FIX_EVERY_S * 1000);
  if (!state.lastFix) setText("position", "Finding your position…");
  credentials().catch(() => {}); // ready before the first fix when online
}

function stopTracking() {
  if (state.watch != null) navigator.geolocation.clearWatch(state.watch);
  window.clearInterval(state.heartbeat);
  window.clearTimeout(state.heldTimer);
  state.watch = null;
  state.held = null;
  state.heldTimer = null;
  setText("position", "Your position is not shared while you are off duty or on a break.");
}

// ---- duty ----------------------------------------------------------------------------

function effectiveDuty() {
  let duty = state.me ? state.me.availabilityStatus : null;
  for (const a of [...state.applied, ...state.outbox, ...state.tapped]) if (a.kind === "availability") duty = a.body.availabilityStatus;
  if (state.job && ["EnRoute", "InProgress"].includes(effectiveStatus(state.job))) {
    duty = effectiveStatus(state.job) === "EnRoute" ? "EnRoute" : "Servicing";
  }
  return duty;
}

function renderDuty() {
  const duty = effectiveDuty();
  const underWay = UNDER_WAY.has(duty);
  for (const radio of document.querySelectorAll('input[name="duty"]')) {
    radio.checked = radio.value === duty || (radio.value === "Available" && ON_DUTY.has(duty));
    radio.disabled = underWay && radio.value !== "Available";
  }
  setText("duty-note", underWay ? "On a job: finish it before a break or going off duty." : "");
  if (ON_DUTY.has(duty)) startTracking();
  else if (duty) stopTracking();
}

function onDutyChange(event) {
  unlockSound(); // a tap: the ring may sound from now on
  const value = event.target.value;
  act("availability", DUTY_WORDS[value], "PUT", "/technician/availability", { availabilityStatus: value }, null);
}

// ---- the ring ------------------------------------------------------------------------

function showRing(data) {
  const info = data.serviceRequestInfo || {};
  const at = data.customerLocation || { latitude: info.latitude, longitude: info.longitude };
  const started = Date.parse(data.ringStartedAt) || Date.now();
  state.ring = {
    id: info.requestId,
    number: info.requestNumber,
    at: [at.latitude, at.longitude],
    deadline: Math.min(started, Date.now()) + (data.ringTimeoutSeconds || 15) * 1000,
  };
  $("ring").hidden = false;
  setText("ring-summary", `${info.requestNumber}: a customer needs help ${info.location ? `at ${info.location}` : "nearby"}.`);
  setText("ring-place", info.location || `${at.latitude.toFixed(5)}, ${at.longitude.toFixed(5)}`);
  setText("ring-services", "…");
  setText("ring-vehicle", "–");
  $("reject-reason").value = "";
  showRingDistance();
  tickRing();
  mark("ring", state.ring.at, "#d08a00", "The job on offer");
  fitMap();
  ringTone();
  $("accept").focus();
  call(`/service-request/${info.requestId}`)
    .then(({ data: detail }) => {
      if (!state.ring || state.ring.id !== detail.requestId) return;
      setText("ring-services", detail.services.map((s) => s.serviceName).join(", ") || "–");
      const v = detail.vehicle || {};
      setText("ring-vehicle", [v.make, v.model].filter(Boolean).join(" ") || "–");
    })
    .catch(() => setText("ring-services", "(not loaded: no connection)"));
}

function showRingDistance() {
  if (!state.ring) return;
  setText("ring-distance", state.lastFix ? fixgate.distance(metres([state.lastFix.lat, state.lastFix.lon], state.ring.at)) : "–");
}

function tickRing() {
  if (!state.ring) return;
  const left = Math.max(0, Math.round((state.ring.deadline - Date.now()) / 1000));
  setText("ring-countdown", String(left));
  if (left <= 0) hideRing("The ring ended.");
}

function hideRing(note) {
  if (!state.ring) return;
  state.ring = null;
  $("ring").hidden = true;
  unmark("ring");
  if (note) status(note);
}

function answerRing(accept) {
  const ring = state.ring;
  if (!ring) return;
  hideRing("");
  if (accept) {
    const body = state.lastFix ? { locationUpdate: { latitude: state.lastFix.lat, longitude: state.lastFix.lon } } : undefined;
    act("accept", `Accept ${ring.number}`, "PUT", `/service-request/${ring.id}/1`, body, ring.id);
  } else {
    const reason = $("reject-reason").value.trim() || undefined;
    act("reject", `Reject ${ring.number}`, "PUT", `/service-request/${ring.id}/2`, reason ? { reason } : undefined, ring.id);
  }
}

// ---- the job -------------------------------------------------------------------------

const ORDER = ["Assigned", "EnRoute", "InProgress", "Completed"];

function effectiveStatus(job) {
  // What the job will be once the outbox is sent: the API's state, moved on by the
  // actions waiting (and those applied that the last load did not show yet).
  let s = job.requestStatus;
  for (const a of [...state.applied, ...state.outbox, ...state.tapped]) {
    const next = a.requestId === job.requestId && AFTER[a.kind];
    if (next && ORDER.indexOf(next) > ORDER.indexOf(s)) s = next;
  }
  return s;
}

function waiting(job) {
  return state.outbox.some((a) => a.requestId === job.requestId && AFTER[a.kind]);
}

function renderJob() {
  const job = state.job;
  $("job-none").hidden = Boolean(job);
  $("job-body").hidden = !job;
  if (!job) {
    unmark("job");
    renderDuty();
    return;
  }
  const s = effectiveStatus(job);
  const pending = waiting(job);
  setText("job-status", `${WORDS[s] || s}${pending ? " (waiting to be sent)" : ""}`);
  setText("job-note", s === "Assigned" ? "Start the journey when you set off." : s === "EnRoute" ? "Drive to the place; start work when you are there." : "");
  setText("job-number", job.requestNumber);
  const c = job.customer || {};
  const name = [c.firstName, c.lastName].filter(Boolean).join(" ") || "–";
  const customer = $("job-customer");
  customer.replaceChildren(name);
  if (c.phoneNumber) customer.append(" · ", fixgate.el("a", { href: `tel:${c.phoneNumber.replace(/\s/g, "")}` }, c.phoneNumber));
  const v = job.vehicle || {};
  setText("job-vehicle", [v.make, v.model, v.year, v.vin].filter(Boolean).join(" · ") || "–");
  setText("job-place", `${job.location || ""} (${job.latitude.toFixed(5)}, ${job.longitude.toFixed(5)})`.trim());
  setText("job-description", job.description || "–");
  setText("job-services", job.services.map((x) => x.serviceName).join(", ") || "–");
  setText("job-arrival", job.arrivedAt ? `Arrived ${time(job.arrivedAt)} (detected)` : s === "EnRoute" ? "Not yet" : "–");
  const label = encodeURIComponent(job.location || job.requestNumber);
  $("directions").href = `geo:${job.latitude},${job.longitude}?q=${job.latitude},${job.longitude}(${label})`;
  $("start-journey").hidden = s !== "Assigned";
  $("start-work").hidden = s !== "EnRoute";
  const form = $("complete-form");
  const showForm = s === "InProgress";
  if (showForm && form.hidden) fillCompletion(job);
  form.hidden = !showForm;
  mark("job", [job.latitude, job.longitude], "#c2410c", "Your job");
  renderDuty();
}

function fillCompletion(job) {
  const requested = new Set(job.services.map((x) => x.serviceId));
  const box = (name, svc, checked) =>
    fixgate.el("label", { class: "choice" },
      Object.assign(fixgate.el("input", { type: "checkbox", name, value: svc.serviceId }), { checked }),
      ` ${svc.serviceName}`);  // prettier-ignore
  const done = $("completed-services");
  done.replaceChildren(fixgate.el("legend", {}, "Completed services"), ...job.services.map((x) => box("completed", x, true)));
  const extra = $("additional-services");
  const others = state.catalog.filter((x) => !requested.has(x.serviceId));
  extra.replaceChildren(fixgate.el("legend", {}, "Additional services"), ...others.map((x) => box("additional", x, false)));
  extra.hidden = !others.length;
  setText("complete-error", "");
}

function submitCompletion(event) {
  event.preventDefault();
  const job = state.job;
  if (!job) return;
  const mileage = Number.parseInt($("mileage").value, 10);
  const evidences = $("evidence").value.split("\n").map((x) => x.trim()).filter(Boolean);
  const picked = (name) => [...document.querySelectorAll(`input[name="${name}"]:checked`)].map((x) => x.value);
  const completed = picked("completed");
  let problem = "";
  if (!Number.isFinite(mileage) || mileage < 0) problem = "Enter the mileage.";
  else if (!evidences.length) problem = "Write at least one evidence note.";
  else if (!completed.length) problem = "Tick at least one completed service.";
  setText("complete-error", problem);
  if (problem) return;
  const body = { mileage, evidences, completedServices: completed, additionalServices: picked("additional") };
  act("complete", `Complete ${job.requestNumber}`, "PUT", `/service-request/${job.requestId}?workAction=2`, body, job.requestId);
}

function renderQueue() {
  const list = $("queue");
  if (!state.queue.length) {
    list.replaceChildren(fixgate.el("li", { class: "muted" }, "None."));
    return;
  }
  list.replaceChildren(
    ...state.queue.map((r) =>
      fixgate.el("li", {}, `${r.requestNumber} · ${r.location || `${r.latitude.toFixed(4)}, ${r.longitude.toFixed(4)}`} · ${r.services.map((x) => x.serviceName).join(", ")}`),
    ),
  );
}

// ---- the map -------------------------------------------------------------------------

async function makeMap() {
  state.map = await makeBaseMap("map");
}

function mark(name, at, colour, title) {
  if (!state.map) return;
  const existing = state.marks[name];
  if (existing) existing.setLatLng(at);
  else {
    state.marks[name] = L.circleMarker(at, { radius: 10, color: "#1d2430", weight: 2, fillColor: colour, fillOpacity: 1, interactive: false })
      .bindTooltip(title)
      .addTo(state.map);
    fitMap();
  }
}

function unmark(name) {
  const existing = state.marks[name];
  if (existing) existing.remove();
  delete state.marks[name];
}

function showMe(at) {
  if (!state.map) return;
  if (state.marks.me) state.marks.me.setLatLng(at);
  else {
    state.marks.me = L.marker(at, {
      icon: L.divIcon({ className: "you-icon", iconSize: [18, 18] }),
      interactive: false,
      keyboard: false,
    }).addTo(state.map);
    fitMap();
  }
}

function fitMap() {
  const marks = Object.values(state.marks);
  if (!state.map || !marks.length) return;
  const bounds = L.featureGroup(marks).getBounds();
  if (bounds.isValid()) state.map.fitBounds(bounds.pad(0.4), { maxZoom: 16 });
}

// ---- loading -------------------------------------------------------------------------

async function load() {
  const applied = state.applied.length;
  try {
    const [me, current, assigned] = await Promise.all([
      call("/technician/me"),
      call("/technician/current-request").catch((e) => (e instanceof HttpError && e.status === 404 ? null : Promise.reject(e))),
      call("/service-requests?requestStatus=Assigned&rowsPerPage=20"),
    ]);
    state.me = me.data;
    state.job = current ? current.data : null;
    state.queue = assigned.data.filter((r) => !state.job || r.requestId !== state.job.requestId);
    state.applied.splice(0, applied); // their effect is in what was just read
    state.apiOk = true;
    await state.db.put("snapshot", { me: state.me, job: state.job, queue: state.queue, at: new Date().toISOString() }, "state");
    if (!state.catalog.length) state.catalog = (await call("/services?rowsPerPage=100")).data;
    status("");
  } catch (e) {
    if (!(e instanceof Offline)) throw e;
    state.apiOk = false;
    const kept = await state.db.get("snapshot", "state");
    if (kept && !state.me) Object.assign(state, { me: kept.me, job: kept.job, queue: kept.queue });
    status(`No connection: showing what was known at ${time(kept ? kept.at : null)}.`, true);
  }
  setText("who", state.me ? `${state.me.firstName} ${state.me.lastName}`.trim() : "");
  renderJob();
  renderQueue();
  renderOutbox();
}

let loadTimer = null;
function scheduleLoad() {
  window.clearTimeout(loadTimer);
  loadTimer = window.setTimeout(() => load().catch((e) => status(e.message, true)), 150);
}

function onEvent(name, data) {
  if (name === "ring_notification_received") {
    showRing(data);
    return;
  }
  const info = data.serviceRequestInfo || data;
  if (state.ring && info && info.requestId === state.ring.id && ["request_status_changed", "request_accepted", "request_canceled"].includes(name)) {
    const mine = info.technicianId && state.claims && info.technicianId === state.claims.sub;
    if (!mine) hideRing("Another technician took that job, or it was canceled.");
  }
  if (JOB_EVENTS.has(name)) scheduleLoad();
}

// ---- start ---------------------------------------------------------------------------

async function main() {
  state.claims = await signIn("technician");
  registerWorker("tech");
  state.db = await openDB(`fixgate-tech-${state.claims.tenant}-${state.claims.sub}`, 1, {
    upgrade(db) {
      db.createObjectStore("actions", { keyPath: "seq", autoIncrement: true });
      db.createObjectStore("fixes", { keyPath: "seq", autoIncrement: true });
      db.createObjectStore("failed", { keyPath: "seq", autoIncrement: true });
      db.createObjectStore("snapshot");
    },
  });
  // The radios come disabled in the page and renderDuty enables them once the first load
  // has said what the duty is: a tap before that would be lost or drawn over by it.
  for (const radio of document.querySelectorAll('input[name="duty"]')) radio.addEventListener("change", onDutyChange);
  $("accept").addEventListener("click", () => answerRing(true));
  $("reject").addEventListener("click", () => answerRing(false));
  $("start-journey").addEventListener("click", () => {
    const job = state.job;
    act("start_journey", `Start journey ${job.requestNumber}`, "POST", `/service-request/${job.requestId}/start-journey`, undefined, job.requestId);
  });
  $("start-work").addEventListener("click", () => {
    const job = state.job;
    act("start_work", `Start work ${job.requestNumber}`, "PUT", `/service-request/${job.requestId}?workAction=1`, undefined, job.requestId);
  });
  $("complete-form").addEventListener("submit", submitCompletion);
  window.addEventListener("online", () => {
    holdUntil = 0;
    flushActions();
    flushFixes();
    scheduleLoad();
  });
  window.addEventListener("offline", () => renderOutbox());
  window.setInterval(() => {
    tickRing();
    if (state.outbox.length) flushActions();
    if (state.fixesWaiting) flushFixes();
  }, TICK_MS / 2);
  window.setInterval(tickRing, 250);
  await makeMap();
  await refreshOutbox();
  await load();
  fixgate.connect({
    event: (name, data) => onEvent(name, data),
    resync: () => scheduleLoad(),
  });
  flushActions();
  flushFixes();
}

main().catch((e) => status(e.message, true));
