// The customer app (/help): ask for help (a vehicle, where, what happened, which
// services), then follow the request: its status in words, the technician, the ETA and
// distance, the technician on the map while on the way (the API sends their position only
// then: api/personal.py), the queue position while waiting; cancel while it can be, rate
// once it is done. A request is sent with an Idempotency-Key made when "Request help" is
// tapped and kept for the same request until it is answered, so a retry after a lost
// answer never makes a second request.
import { HttpError, Offline, call, makeMap as makeBaseMap, registerWorker, setText, signIn, time, uuid } from "../field/field.js";

const OPEN = new Set(["Ringing", "Pending", "Assigned", "EnRoute", "InProgress"]);
const RATE_WITHIN_MS = 7 * 24 * 3600 * 1000; // a completed request is offered for rating this long
const EVENTS = new Set([
  "new_service_request", "request_accepted", "request_status_changed", "request_assigned",
  "journey_started", "technician_arrived", "service_started", "service_completed",
  "request_canceled", "request_escalated",
]);

const state = {
  claims: null,
  vehicles: [],
  catalog: [],
  request: null,
  queue: null,
  route: null,
  dismissed: new Set(),
  create: null, // {key, body}: the request being sent, kept for a retry
  map: null,
  marks: {},
  line: null,
};

const $ = (id) => document.getElementById(id);

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function technicianName(r) {
  const t = r && r.technician;
  return t ? `${t.firstName} ${t.lastName}`.trim() : null;
}

// ---- asking --------------------------------------------------------------------------

function renderAsk() {
  // A reload (the socket's resync, an event) redraws the form: what the customer already
  // chose stays chosen.
  const select = $("vehicle");
  const chosen = select.value;
  const ticked = new Set([...document.querySelectorAll('input[name="service"]:checked')].map((x) => x.value));
  select.replaceChildren(
    ...state.vehicles.map((v) =>
      fixgate.el("option", { value: v.vehicleId }, [v.make, v.model, v.year].filter(Boolean).join(" ") || v.vin || "Vehicle"),
    ),
  );
  if (state.vehicles.some((v) => v.vehicleId === chosen)) select.value = chosen;
  const box = $("services");
  box.replaceChildren(
    fixgate.el("legend", {}, "Services"),
    ...state.catalog.map((s) =>
      fixgate.el("label", { class: "choice" },
        fixgate.el("input", { type: "checkbox", name: "service", value: s.serviceId, ...(ticked.has(s.serviceId) ? { checked: "" } : {}) }),
        ` ${s.serviceName} (${s.servicePrice.toFixed(2)})`),  // prettier-ignore
    ),
  );
}

function setPlace(lat, lon, how) {
  $("latitude").value = lat.toFixed(6);
  $("longitude").value = lon.toFixed(6);
  placeMark([lat, lon]);
  if (how) setText("locate-note", how);
}

function locate() {
  if (!navigator.geolocation) {
    setText("locate-note", "This browser cannot share a position: tap the map where you are.");
    return;
  }
  setText("locate-note", "Finding your position…");
  navigator.geolocation.getCurrentPosition(
    (p) => setPlace(p.coords.latitude, p.coords.longitude, `Your position (±${Math.round(p.coords.accuracy)} m).`),
    (e) => setText("locate-note", `No position (${e.message}): tap the map where you are.`),
    { enableHighAccuracy: true, maximumAge: 30000, timeout: 20000 },
  );
}

async function requestHelp(event) {
  event.preventDefault();
  const lat = Number.parseFloat($("latitude").value);
  const lon = Number.parseFloat($("longitude").value);
  const services = [...document.querySelectorAll('input[name="service"]:checked')].map((x) => x.value);
  let problem = "";
  if (!$("vehicle").value) problem = "Choose your vehicle.";
  else if (!Number.isFinite(lat) || !Number.isFinite(lon)) problem = "Share your position or tap the map where you are.";
  else if (!services.length) problem = "Tick at least one service.";
  setText("ask-error", problem);
  if (problem) return;
  const body = {
    vehicleId: $("vehicle").value,
    latitude: lat,
    longitude: lon,
    location: $("place").value.trim() || undefined,
    description: $("problem").value.trim() || undefined,
    services,
  };
  const text = JSON.stringify(body);
  if (!state.create || state.create.text !== text) state.create = { key: uuid(), text };
  $("request-help").disabled = true;
  try {
    const answer = await call("/service-request", { method: "POST", body, key: state.create.key });
    state.create = null;
    await follow(answer.data.requestId);
  } catch (e) {
    if (e instanceof Offline) setText("ask-error", "No connection: your request was not sent. Try again when you have one.");
    else if (e instanceof HttpError) setText("ask-error", e.message);
    else throw e;
  } finally {
    $("request-help").disabled = false;
  }
}

// ---- following -----------------------------------------------------------------------

async function follow(requestId) {
  const { data } = await call(`/service-request/${requestId}`);
  state.request = data;
  state.queue = null;
  state.route = null;
  const tasks = [];
  if (data.requestStatus === "Assigned") {
    tasks.push(call(`/service-request/${requestId}/queue`).then((q) => { state.queue = q.data; }));
  }
  if (data.requestStatus === "EnRoute") {
    tasks.push(call(`/service-request/${requestId}/route-info`).then((r) => { state.route = r.data; }));
  }
  await Promise.all(tasks);
  render();
}

function words(r) {
  const name = technicianName(r) || "Your technician";
  switch (r.requestStatus) {
    case "Ringing": return ["Looking for a technician near you", "Technicians nearby are being asked now."];
    case "Pending": return ["Waiting for a technician", "Nobody nearby could take it yet; the next free technician will."];
    case "Assigned": return [`${name} has your request`, "They will set off once their earlier jobs allow."];
    case "EnRoute":
      return r.arrivedAt ? [`${name} has arrived`, "Your technician is at your place."] : [`${name} is on the way`, "Follow them on the map."];
    case "InProgress": return [`${name} is working on your vehicle`, ""];
    case "Completed": return ["Done", "Thank you for waiting."];
    case "Canceled": return ["Canceled", r.cancellationReason || ""];
    default: return [r.requestStatus, ""];
  }
}

function render() {
  const r = state.request;
  $("ask").hidden = Boolean(r);
  $("follow").hidden = !r;
  if (!r) {
    unmark("technician");
    if (state.line) state.line.remove();
    state.line = null;
    return;
  }
  const [title, note] = words(r);
  setText("request-status", title);
  setText("request-note", note);
  setText("request-number", r.requestNumber);
  setText("technician", technicianName(r) || "not assigned yet");
  setText("van", r.van ? r.van.registrationNumber || r.van.vanNumber || "–" : "–");
  let eta = "–";
  let distance = "–";
  if (r.requestStatus === "EnRoute" && !r.arrivedAt && state.route) {
    eta = fixgate.duration(state.route.etaInSec);
    distance = fixgate.distance(state.route.distanceInMeter);
    showTechnician(state.route);
  } else {
    unmark("technician");
  }
  if (r.requestStatus === "Assigned" && state.queue && state.queue.etaSeconds != null) {
    const q = state.queue;
    eta = `${fixgate.duration(q.etaSeconds)} (between ${time(q.etaWindowStart)} and ${time(q.etaWindowEnd)})`;
  }
  setText("eta", eta);
  setText("distance", distance);
  const q = state.queue;
  setText("queue-position", q && q.queuePosition ? `number ${q.queuePosition} of ${q.queueLength}` : "–");
  placeMark([r.latitude, r.longitude]);
  $("cancel-box").hidden = !OPEN.has(r.requestStatus);
  const rateable = r.requestStatus === "Completed" && r.rating == null;
  $("rate-form").hidden = !rateable;
  $("rated").hidden = r.rating == null;
  setText("rated", r.rating == null ? "" : `Thank you: you rated it ${r.rating} out of 5.`);
  $("again-box").hidden = OPEN.has(r.requestStatus) || rateable;
}

function showTechnician(info) {
  const at = info.technicianLocation;
  if (at) mark("technician", [at.latitude, at.longitude], "#1f57b5", "Your technician");
  if (info.encodedPolyline && state.map) {
    const points = fixgate.decodePolyline(info.encodedPolyline);
    if (!state.line) state.line = L.polyline(points, { color: "#1f57b5", weight: 5, opacity: 0.8, interactive: false }).addTo(state.map);
    else state.line.setLatLngs(points);
  }
}

async function cancel() {
  const r = state.request;
  try {
    await call(`/service-request/${r.requestId}/3`, { method: "PUT", body: { reason: "Canceled by the customer" }, key: uuid() });
    await follow(r.requestId);
  } catch (e) {
    status(e instanceof Offline ? "No connection: not canceled yet. Try again." : e.message, true);
  }
}

async function rate(event) {
  event.preventDefault();
  const r = state.request;
  const stars = document.querySelector('input[name="stars"]:checked');
  if (!stars) {
    setText("rate-error", "Choose from 1 to 5 stars.");
    return;
  }
  setText("rate-error", "");
  const body = { rating: Number(stars.value), feedback: $("comment").value.trim() || undefined };
  try {
    await call(`/service-request/feedback/${r.requestId}`, { method: "POST", body, key: uuid() });
    await follow(r.requestId);
  } catch (e) {
    setText("rate-error", e instanceof Offline ? "No connection: not sent. Try again." : e.message);
  }
}

function askAgain() {
  if (state.request) state.dismissed.add(state.request.requestId);
  state.request = null;
  render();
}

// ---- the map -------------------------------------------------------------------------

async function makeMap() {
  state.map = await makeBaseMap("map");
  state.map.on("click", (e) => {
    if (!state.request) setPlace(e.latlng.lat, e.latlng.lng, "The place you tapped on the map.");
  });
}

function mark(name, at, colour, title) {
  if (!state.map) return;
  if (state.marks[name]) state.marks[name].setLatLng(at);
  else {
    state.marks[name] = L.circleMarker(at, { radius: 10, color: "#1d2430", weight: 2, fillColor: colour, fillOpacity: 1, interactive: false })
      .bindTooltip(title)
      .addTo(state.map);
  }
  const bounds = L.featureGroup(Object.values(state.marks)).getBounds();
  if (bounds.isValid()) state.map.fitBounds(bounds.pad(0.4), { maxZoom: 16 });
}

function placeMark(at) {
  mark("place", at, "#c2410c", "You");
}

function unmark(name) {
  if (state.marks[name]) state.marks[name].remove();
  delete state.marks[name];
}

// ---- loading -------------------------------------------------------------------------

async function load() {
  const [me, vehicles, catalog, mine] = await Promise.all([
    call("/customer/me"),
    call("/customer/vehicles?rowsPerPage=100"),
    call("/services?rowsPerPage=100"),
    call("/service-requests?rowsPerPage=10"),
  ]);
  setText("who", `${me.data.firstName || ""} ${me.data.lastName || ""}`.trim());
  state.vehicles = vehicles.data;
  state.catalog = catalog.data;
  renderAsk();
  const recent = (r) => r.completedAt && Date.now() - Date.parse(r.completedAt) < RATE_WITHIN_MS;
  const shown = mine.data.filter((r) => !state.dismissed.has(r.requestId));
  const current =
    shown.find((r) => OPEN.has(r.requestStatus)) ||
    shown.find((r) => r.requestStatus === "Completed" && r.rating == null && recent(r)) ||
    (state.request && shown.find((r) => r.requestId === state.request.requestId));
  if (current) await follow(current.requestId);
  else {
    state.request = null;
    render();
  }
  status("");
}

let loadTimer = null;
function scheduleLoad() {
  window.clearTimeout(loadTimer);
  loadTimer = window.setTimeout(() => load().catch(report), 150);
}

function report(e) {
  status(e instanceof Offline ? "No connection: the page updates when it returns." : e.message, true);
}

function onEvent(name, data) {
  const r = state.request;
  if (name === "LocationUpdated" && r && data.serviceRequestInfo && data.serviceRequestInfo.requestId !== r.requestId) return;
  if (name === "LocationUpdated" && r) {
    state.route = { ...(state.route || {}), ...Object.fromEntries(Object.entries(data).filter(([, v]) => v != null)) };
    render();
    return;
  }
  if (name === "QueuePositionChanged" && r && data.requestId === r.requestId) {
    state.queue = { ...(state.queue || {}), ...data, queueLength: (state.queue && state.queue.queueLength) || data.queuePosition };
    render();
    return;
  }
  if (EVENTS.has(name)) scheduleLoad();
}

async function main() {
  state.claims = await signIn("customer");
  registerWorker("help");
  $("ask-form").addEventListener("submit", (e) => requestHelp(e).catch(report));
  $("locate").addEventListener("click", locate);
  // Both come disabled in the page: a tap before their listeners would do nothing (or
  // submit the form as a plain GET).
  $("locate").disabled = false;
  $("request-help").disabled = false;
  $("latitude").addEventListener("change", () => {
    const lat = Number.parseFloat($("latitude").value);
    const lon = Number.parseFloat($("longitude").value);
    if (Number.isFinite(lat) && Number.isFinite(lon)) placeMark([lat, lon]);
  });
  $("longitude").addEventListener("change", () => $("latitude").dispatchEvent(new Event("change")));
  $("cancel").addEventListener("click", () => cancel().catch(report));
  $("rate-form").addEventListener("submit", (e) => rate(e).catch(report));
  $("again").addEventListener("click", askAgain);
  window.addEventListener("online", scheduleLoad);
  await makeMap();
  await load().catch(report);
  fixgate.connect({ event: onEvent, resync: scheduleLoad });
}

main().catch(report);
