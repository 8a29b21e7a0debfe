"use strict";
// The dispatcher console: the fleet on a map (REST, then `TechnicianLocationUpdated` events
// applied in batches, once a frame at most), the tenant's geofences and service areas under
// it, rings in progress, requests with filters, SLA countdowns, queue positions and ETAs,
// and the dispatcher's levers: take a call (New request), assign (to anyone, rung or not),
// unassign, cancel with a reason, escalate, reorder a technician's queue, and sign-in links
// for technicians and customers. Every action goes through the API; a refusal is shown in
// words (the API's message).
(() => {
  const { api, el } = fixgate;
  const RING_POLL_MS = 2000; // ring phases move on without an event to staff: look again
  const ROUTE_POLL_MS = 5000; // route-info of en-route requests (LocationUpdated is per request)
  const COUNTDOWN_MS = 1000;
  const LAG_SAMPLES = 60000; // the newest fleet lags kept (a minute of 1,000 a second)
  const OPEN = new Set(["Ringing", "Pending", "Assigned", "EnRoute", "InProgress"]);
  const QUEUED = new Set(["Assigned", "EnRoute", "InProgress"]);
  const UNDER_WAY = new Set(["EnRoute", "InProgress"]);
  const PRIORITIES = ["Low", "Medium", "High", "Critical"];
  const PAGE_ROWS = 100; // the API's largest page
  const MAX_FENCE_PAGES = 10; // a thousand fences is more than a map shows legibly
  const SEARCH_DELAY_MS = 250;
  const CANVAS_FLEET = 150;
  const FLEET_SLICE = 100; // technicians placed per task while loading // more technicians than this: dots on a canvas, not elements
  const AVAILABILITY_COLOR = { Available: "#1e7a41", EnRoute: "#2f6fd6", Servicing: "#7a4fd6",
    Offline: "#666", OnBreak: "#7f6010" };
  const FENCE_STYLE = {
    service_area: { color: "#2f6fb5", weight: 2, dashArray: "6 4", fillOpacity: 0.05 },
    depot: { color: "#5b6573", weight: 2, fillOpacity: 0.15 },
    customer: { color: "#8a5bb5", weight: 1, fillOpacity: 0.1 },
    other: { color: "#7a8594", weight: 1, fillOpacity: 0.05 },
  };

  const fleet = new Map(); // technicianId -> {info, marker, item}
  const byDevice = new Map(); // deviceId -> technicianId
  const requests = new Map(); // requestId -> {info, marker}
  const routes = new Map(); // requestId -> {info, line}
  const queued = new Map(); // requestId -> queue entry {queuePosition, etaSeconds, ...}
  const pendingMoves = new Map(); // technicianId -> newest location event, not drawn yet
  const lags = []; // ms from a fix's time to the frame that drew it, the newest LAG_SAMPLES
  let received = 0; // fleet events received
  let frames = 0; // frames that drew fleet moves
  let drawnTotal = 0; // positions drawn since the page loaded (lags[0] is number drawnTotal - lags.length)
  let rings = [];
  let selected = null; // requestId
  let map;
  let layers;
  let fitted = false;
  let moveFrame = null;
  let canvasFleet = false; // a fleet larger than CANVAS_FLEET is drawn on a canvas
  let fleetCanvas = null;
  const draft = { marker: null, customer: null };

  const $ = (id) => document.getElementById(id);

  function say(text, isError = false) {
    $("action-error").textContent = isError ? text : "";
    $("action-done").textContent = isError ? "" : text;
    fixgate.status(text, isError);
  }

  // ---- fleet --------------------------------------------------------------------------
  function techIcon(t) {
    // Built as elements, not markup: the page's Content-Security-Policy allows no inline
    // style attributes; a style set through the DOM is not one.
    const arrow = el("div", { class: `arrow ${t.availabilityStatus}` }, "▲");
    arrow.style.transform = `rotate(${(t.location && t.location.heading) || 0}deg)`;
    const label = el("span", { class: "tech-label" }, t.vanNumber ? `${t.name} · ${t.vanNumber}` : t.name);
    return L.divIcon({ className: "tech-icon", iconSize: [28, 28], iconAnchor: [14, 14],
      html: el("div", {}, arrow, label) });
  }

  function whereText(t) {
    if (!t.location) return "no live position";
    const l = t.location;
    return `${l.latitude.toFixed(5)}, ${l.longitude.toFixed(5)}` +
      (l.heading != null ? ` · ${Math.round(l.heading)}°` : "") +
      (l.updatedAt ? ` · ${new Date(l.updatedAt).toLocaleTimeString()}` : "");
  }

  function techItem(t) {
    const item = el("li", { dataset: { technicianId: t.technicianId } });
    const pick = el("button", { type: "button", class: "link", onclick: () => chooseTechnician(t.technicianId) }, t.name);
    const link = el("button", { type: "button", class: "small", "aria-label": `Sign-in link for ${t.name}`,
      onclick: () => signInLink("technician", t.technicianId, t.name) }, "Sign-in link");
    const badge = el("span", { class: "badge" });
    const code = el("div", { class: "muted code" });
    const position = el("div", { class: "muted position" });
    item.append(pick, " ", badge, " ", link, code, position);
    return { item, badge, code, position };
  }

  function drawTechnicianItem(entry) {
    const t = entry.info;
    const { badge, code } = entry.view;
    if (badge.textContent !== t.availabilityStatus) {
      badge.className = `badge ${t.availabilityStatus}`;
      badge.textContent = t.availabilityStatus;
    }
    code.textContent = `${t.technicianCode}${t.vanNumber ? " · van " + t.vanNumber : ""}`;
    entry.view.position.textContent = whereText(t);
  }

  // Only the list items on screen are kept current as positions come in (a thousand
  // technicians' lines rewritten a second would cost the page its frames); the others are
  // brought up to date when they scroll into view.
  const onScreen = new Set();
  const staleItems = new Set();
  const watcher = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const id = e.target.dataset.technicianId;
      if (e.isIntersecting) {
        onScreen.add(id);
        if (staleItems.delete(id) && fleet.has(id)) drawTechnicianItem(fleet.get(id));
      } else onScreen.delete(id);
    }
  });

  function markerOf(t, at) {
    if (canvasFleet) {
      // A large fleet: dots on one canvas, redrawn once a frame, not a thousand elements.
      return L.circleMarker(at, { renderer: fleetCanvas, radius: 5, weight: 1, color: "#fff",
        fillColor: AVAILABILITY_COLOR[t.availabilityStatus] || "#666", fillOpacity: 1 })
        .bindTooltip(t.name);
    }
    return L.marker(at, { icon: techIcon(t), title: t.name, keyboard: false });
  }

  function restyle(entry, t) {
    if (canvasFleet) {
      if (entry.availability !== t.availabilityStatus) {
        entry.marker.setStyle({ fillColor: AVAILABILITY_COLOR[t.availabilityStatus] || "#666" });
      }
      return;
    }
    // A move is a transform; the arrow turns and recolours in place (no new icon).
    const arrow = entry.marker.getElement() && entry.marker.getElement().querySelector(".arrow");
    if (arrow && entry.heading !== t.location.heading) arrow.style.transform = `rotate(${t.location.heading || 0}deg)`;
    if (arrow && entry.availability !== t.availabilityStatus) arrow.className = `arrow ${t.availabilityStatus}`;
  }

  function placeTechnician(t, listed = true) {
    let entry = fleet.get(t.technicianId);
    if (!entry) {
      entry = { info: t, marker: null, view: techItem(t), heading: null, availability: null };
      fleet.set(t.technicianId, entry);
      $("fleet").append(entry.view.item);
      watcher.observe(entry.view.item);
    }
    entry.info = t;
    if (t.deviceId) byDevice.set(t.deviceId, t.technicianId);
    if (listed || onScreen.has(t.technicianId)) drawTechnicianItem(entry);
    else staleItems.add(t.technicianId);
    if (!t.location) return;
    const at = [t.location.latitude, t.location.longitude];
    if (!entry.marker) {
      entry.marker = markerOf(t, at).on("click", () => chooseTechnician(t.technicianId)).addTo(layers.fleet);
    } else {
      entry.marker.setLatLng(at);
      restyle(entry, t);
    }
    entry.heading = t.location.heading;
    entry.availability = t.availabilityStatus;
  }

  // Fleet events come a thousand a second with a large fleet: they are kept per technician
  // (newest wins) and drawn together once a frame, never one layout per event.
  function onTechnicianLocation(d) {
    received += 1;
    pendingMoves.set(d.technicianId || byDevice.get(d.deviceId), d);
    if (moveFrame === null) moveFrame = requestAnimationFrame(drawMoves);
  }

  function drawMoves() {
    moveFrame = null;
    frames += 1;
    const now = Date.now();
    for (const [technicianId, d] of pendingMoves) {
      const entry = fleet.get(technicianId);
      if (!entry) continue;
      const t = entry.info;
      t.location = { latitude: d.lat, longitude: d.lon, heading: d.heading, speed: d.speed, updatedAt: d.time };
      if (d.availability) t.availabilityStatus = d.availability;
      placeTechnician(t, false);
      if (d.time) {
        lags.push(now - Date.parse(d.time));
        drawnTotal += 1;
      }
    }
    pendingMoves.clear();
    if (!fitted) fit(); // the first positions of a fleet that had none when the page loaded
    if (lags.length > LAG_SAMPLES) lags.splice(0, lags.length - LAG_SAMPLES);
  }

  function showLag() {
    if (!lags.length) return;
    const recent = lags.slice(-200).sort((a, b) => a - b);
    $("fleet-lag").textContent = `positions ${(recent[Math.floor(recent.length / 2)] / 1000).toFixed(1)} s old`;
  }

  function fillTechnicianChoices() {
    const chosen = $("assign-technician").value;
    const filterChosen = $("filter-technician").value;
    const all = [...fleet.values()].map((e) => e.info).sort((a, b) => a.name.localeCompare(b.name));
    $("assign-technician").replaceChildren(
      ...all.map((t) => el("option", { value: t.technicianId }, `${t.name} (${t.availabilityStatus})`)));
    $("filter-technician").replaceChildren(el("option", { value: "" }, "Any technician"),
      ...all.map((t) => el("option", { value: t.technicianId }, t.name)));
    if (chosen) $("assign-technician").value = chosen;
    $("filter-technician").value = filterChosen;
  }

  function chooseTechnician(technicianId) {
    $("assign-technician").value = technicianId;
    for (const e of fleet.values()) e.view.item.classList.toggle("selected", e.info.technicianId === technicianId);
  }

  // ---- geofences and service areas ----------------------------------------------------
  async function loadFences() {
    const [fences, areas] = await Promise.all([fixgate.pages("/geofences", MAX_FENCE_PAGES), fixgate.pages("/service-areas?enabled=true", MAX_FENCE_PAGES)]);
    const sla = new Map(areas.map((a) => [a.geofenceId, a.responseTimeSlaMinutes]));
    const names = new Map(fences.map((f) => [f.geofenceId, f.name]));
    const area = $("filter-area").value;
    $("filter-area").replaceChildren(el("option", { value: "" }, "Any area"),
      ...areas.map((a) => el("option", { value: a.serviceAreaId }, names.get(a.geofenceId) || a.serviceAreaId)));
    $("filter-area").value = area;
    layers.fences.clearLayers();
    for (const f of fences) {
      const style = { ...(FENCE_STYLE[f.kind] || FENCE_STYLE.other), className: `fence fence-${f.kind}`, interactive: false };
      const [lon, lat] = f.geometryType === "POINT" ? f.geometry.coordinates : [0, 0];
      const shape = f.geometryType === "POINT"
        ? L.circle([lat, lon], { ...style, radius: f.radiusM })
        : L.geoJSON(f.geometry, { style: () => style });
      const minutes = sla.get(f.geofenceId);
      shape.bindTooltip(`${f.name} · ${f.kind.replace("_", " ")}${minutes ? ` · SLA ${minutes} min` : ""}`, { sticky: true });
      shape.addTo(layers.fences);
    }
  }

  // ---- requests -----------------------------------------------------------------------
  function clock(s) {
    const minutes = Math.floor(s / 60);
    return `${minutes}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }

  function slaText(r) {
    if (r.slaViolatedAt) return { text: `SLA missed · ${r.serviceAreaName || "service area"}`, missed: true };
    if (!r.slaDueAt || r.arrivedAt || !OPEN.has(r.requestStatus)) return null;
    const left = (Date.parse(r.slaDueAt) - Date.now()) / 1000;
    if (left <= 0) return { text: `SLA missed · ${r.serviceAreaName || "service area"}`, missed: true };
    return { text: `SLA ${clock(left)} left · ${r.serviceAreaName || "service area"}`, missed: false };
  }

  function placeRequest(r) {
    const entry = requests.get(r.requestId) || { info: r, marker: null };
    entry.info = r;
    requests.set(r.requestId, entry);
    if (!OPEN.has(r.requestStatus)) {
      if (entry.marker) entry.marker.remove();
      entry.marker = null;
      return;
    }
    const style = {
      radius: 8, weight: 2, fillOpacity: 0.9,
      color: selected === r.requestId ? "#ffd400" : "#1d2430",
      fillColor: { Ringing: "#f5c242", Pending: "#f2a15e", EnRoute: "#6ea8f2" }[r.requestStatus] || "#9cc3f5",
    };
    if (!entry.marker) {
      entry.marker = L.circleMarker([r.latitude, r.longitude], style)
        .bindTooltip(() => `${entry.info.requestNumber} · ${entry.info.requestStatus}`)
        .on("click", () => selectRequest(r.requestId)).addTo(layers.requests);
    } else {
      entry.marker.setLatLng([r.latitude, r.longitude]).setStyle(style);
    }
  }

  function matches(r) {
    const status = $("filter-status").value;
    if (status === "open" && !OPEN.has(r.requestStatus)) return false;
    if (status && status !== "open" && r.requestStatus !== status) return false;
    if ($("filter-priority").value && r.priority !== $("filter-priority").value) return false;
    if ($("filter-area").value && r.serviceAreaId !== $("filter-area").value) return false;
    const technician = $("filter-technician").value;
    if (technician && (!r.technician || r.technician.technicianId !== technician)) return false;
    const text = $("filter-text").value.trim().toLowerCase();
    if (!text) return true;
    const customer = r.customer ? `${r.customer.firstName} ${r.customer.lastName}` : "";
    return [r.requestNumber, customer, r.location || "", r.description || ""].join(" ").toLowerCase().includes(text);
  }

  function queueText(r) {
    const q = queued.get(r.requestId);
    const route = routes.get(r.requestId);
    const parts = [];
    if (QUEUED.has(r.requestStatus) && (q || r.queuePosition)) parts.push(`queue #${q ? q.queuePosition : r.queuePosition}`);
    const eta = route && route.info.etaInSec != null ? route.info.etaInSec : q && q.etaSeconds;
    if (eta != null && QUEUED.has(r.requestStatus)) parts.push(`ETA ${fixgate.duration(eta)}`);
    if (route && route.info.distanceInMeter != null) parts.push(fixgate.distance(route.info.distanceInMeter));
    return parts.join(" · ");
  }

  function renderRequests() {
    const shown = [...requests.values()].map((e) => e.info).filter(matches);
    shown.sort((a, b) => (a.requestedAt < b.requestedAt ? 1 : -1));
    const list = $("requests");
    if (!shown.length) {
      list.replaceChildren(el("li", { class: "muted" }, "No request matches."));
      return;
    }
    list.replaceChildren(...shown.map((r) => {
      const who = r.technician ? `${r.technician.firstName} ${r.technician.lastName}` : "unassigned";
      const customer = r.customer ? `${r.customer.firstName} ${r.customer.lastName}` : "";
      const sla = slaText(r);
      return el("li", { class: selected === r.requestId ? "selected" : "", dataset: { requestId: r.requestId, status: r.requestStatus } },
        el("button", { type: "button", class: "link", onclick: () => selectRequest(r.requestId) }, r.requestNumber), " ",
        el("span", { class: `badge ${r.requestStatus}` }, r.requestStatus), " ",
        el("span", { class: `priority ${r.priority}` }, r.priority),
        sla ? el("div", { class: sla.missed ? "sla missed" : "sla" }, sla.text) : "",
        el("div", { class: "muted" }, `${customer} · ${r.location || `${r.latitude.toFixed(4)}, ${r.longitude.toFixed(4)}`}`),
        el("div", { class: "muted technician" }, `technician: ${who}`),
        el("div", { class: "eta" }, queueText(r)));
    }));
  }

  async function refreshQueue(requestId) {
    const q = (await api(`/service-request/${requestId}/queue`)).data;
    if (q.queuePosition != null) queued.set(requestId, q);
    else queued.delete(requestId);
  }

  async function refreshRequest(requestId) {
    const r = (await api(`/service-request/${requestId}`)).data;
    placeRequest(r);
    if (QUEUED.has(r.requestStatus)) await refreshQueue(requestId);
    else queued.delete(requestId);
    if (r.requestStatus === "EnRoute") await refreshRoute(requestId);
    else dropRoute(requestId);
    renderRequests();
    if (selected === requestId) renderPanel();
  }

  // ---- routes -------------------------------------------------------------------------
  function dropRoute(requestId) {
    const route = routes.get(requestId);
    if (route && route.line) route.line.remove();
    routes.delete(requestId);
  }

  function drawRoute(requestId, info) {
    const route = routes.get(requestId) || { info, line: null };
    route.info = info;
    routes.set(requestId, route);
    const points = info.encodedPolyline ? fixgate.decodePolyline(info.encodedPolyline) : [];
    if (!points.length) return;
    if (!route.line) route.line = L.polyline(points, { color: "#2f6fd6", weight: 4, opacity: 0.8 }).addTo(layers.routes);
    else route.line.setLatLngs(points);
  }

  async function refreshRoute(requestId) {
    drawRoute(requestId, (await api(`/service-request/${requestId}/route-info`)).data);
  }

  async function pollRoutes() {
    const enRoute = [...requests.values()].filter((e) => e.info.requestStatus === "EnRoute");
    await Promise.all(enRoute.map((e) => refreshRoute(e.info.requestId)));
    if (enRoute.length) renderRequests();
  }

  // ---- rings --------------------------------------------------------------------------
  function renderRings() {
    const box = $("rings");
    if (!rings.length) {
      box.replaceChildren(el("span", { class: "muted" }, "No request is ringing."));
      return;
    }
    box.replaceChildren(...rings.map((ring) => {
      const left = Math.max(0, (Date.parse(ring.phaseEndsAt) - Date.now()) / 1000);
      const rung = ring.rung.length
        ? ring.rung.map((t) => `${t.name} (phase ${t.phase + 1}, ${t.action.toLowerCase()})`).join(", ")
        : "nobody in range yet";
      return el("div", { class: "ring", dataset: { requestId: ring.requestId } },
        el("b", {}, ring.requestNumber),
        ` · ring ${ring.phase + 1} of ${ring.phaseCount} (${ring.minRadiusMiles}–${ring.maxRadiusMiles} mi) · `,
        el("span", { class: "countdown" }, `${left.toFixed(0)} s left`),
        el("div", { class: "muted rung" }, `rung: ${rung}`));
    }));
  }

  async function refreshRings() {
    rings = (await api("/console/rings")).data;
    renderRings();
    // A ring of a request not listed yet (created while the socket was away): list it.
    await Promise.all(rings.filter((r) => !requests.has(r.requestId)).map((r) => refreshRequest(r.requestId)));
  }

  // ---- the selected request and its levers ---------------------------------------------
  function selectRequest(requestId) {
    const before = selected;
    selected = requestId;
    for (const id of [before, requestId]) if (id && requests.has(id)) placeRequest(requests.get(id).info);
    $("request-panel").hidden = false;
    say("");
    renderRequests();
    renderPanel();
    const r = requests.get(requestId).info;
    if (r.technician) chooseTechnician(r.technician.technicianId);
  }

  function renderPanel() {
    if (!selected || !requests.has(selected)) return;
    const r = requests.get(selected).info;
    $("request-title").textContent = `${r.requestNumber} · ${r.requestStatus} · ${r.priority}`;
    const customer = r.customer ? `${r.customer.firstName} ${r.customer.lastName}`.trim() : "";
    const services = (r.services || []).map((s) => s.serviceName).join(", ");
    const sla = slaText(r);
    $("request-facts").replaceChildren(
      el("div", {}, `${customer}${r.customer && r.customer.phoneNumber ? " · " + r.customer.phoneNumber : ""}`),
      el("div", {}, r.location || `${r.latitude.toFixed(5)}, ${r.longitude.toFixed(5)}`),
      el("div", {}, services),
      el("div", {}, r.technician ? `technician: ${r.technician.firstName} ${r.technician.lastName}` : "no technician"),
      el("div", { class: "eta" }, queueText(r)),
      sla ? el("div", { class: sla.missed ? "sla missed" : "sla" }, sla.text) : "");
    const open = OPEN.has(r.requestStatus);
    $("assign").disabled = !["Pending", "Ringing"].includes(r.requestStatus);
    $("unassign").disabled = !["Assigned", "EnRoute"].includes(r.requestStatus);
    $("cancel-request").disabled = !open;
    $("escalate").disabled = !open || r.priority === "Critical";
    const higher = PRIORITIES.slice(PRIORITIES.indexOf(r.priority) + 1);
    const choice = $("escalate-priority").value;
    $("escalate-priority").replaceChildren(...higher.map((p) => el("option", {}, p)));
    if (higher.includes(choice)) $("escalate-priority").value = choice;
    renderQueue(r);
  }

  // A technician's queue, in order: drag an item, or Move up / Move down.
  function queueOf(technicianId) {
    return [...requests.values()].map((e) => e.info)
      .filter((q) => q.technician && q.technician.technicianId === technicianId && QUEUED.has(q.requestStatus))
      .sort((a, b) => position(a) - position(b));
  }

  function position(r) {
    const q = queued.get(r.requestId);
    return (q && q.queuePosition) || r.queuePosition || 99;
  }

  function renderQueue(r) {
    const technicianId = r.technician && QUEUED.has(r.requestStatus) ? r.technician.technicianId : null;
    $("queue-box").hidden = !technicianId;
    if (!technicianId) return;
    const order = queueOf(technicianId);
    $("queue-title").textContent = `Queue of ${r.technician.firstName} ${r.technician.lastName}`;
    $("queue").replaceChildren(...order.map((q, i) => {
      const item = el("li", { draggable: "true", dataset: { requestId: q.requestId } },
        el("span", {}, `${q.requestNumber} · ${q.requestStatus}`), " ",
        el("button", { type: "button", class: "small", "aria-label": `Move ${q.requestNumber} up`,
          onclick: () => moveInQueue(technicianId, order, i, i - 1) }, "Move up"), " ",
        el("button", { type: "button", class: "small", "aria-label": `Move ${q.requestNumber} down`,
          onclick: () => moveInQueue(technicianId, order, i, i + 1) }, "Move down"));
      item.querySelector("button").disabled = i === 0;
      item.querySelectorAll("button")[1].disabled = i === order.length - 1;
      item.addEventListener("dragstart", (e) => e.dataTransfer.setData("text/plain", String(i)));
      item.addEventListener("dragover", (e) => e.preventDefault());
      item.addEventListener("drop", (e) => {
        e.preventDefault();
        moveInQueue(technicianId, order, Number(e.dataTransfer.getData("text/plain")), i);
      });
      return item;
    }));
  }

  async function act(what, call, after) {
    try {
      const body = await call();
      say(`${what}: ${body.message}`);
      await after();
    } catch (e) {
      say(`${what}: ${e.message}`, true); // the API's refusal, in its words
    }
  }

  async function moveInQueue(technicianId, order, from, to) {
    if (to < 0 || to >= order.length || from === to) return;
    const ids = order.map((q) => q.requestId);
    const [moved] = ids.splice(from, 1);
    ids.splice(to, 0, moved);
    await act(`Queue of ${order[0].technician.firstName}`, () => api(`/technician/${technicianId}/queue`, {
      method: "PUT", body: JSON.stringify({ requestIds: ids }),
    }), () => Promise.all(ids.map((id) => refreshRequest(id))));
  }

  function current() {
    return requests.get(selected).info;
  }

  function wireActions() {
    $("assign").onclick = () => {
      const r = current();
      const technicianId = $("assign-technician").value;
      const name = fleet.has(technicianId) ? fleet.get(technicianId).info.name : technicianId;
      act(`Assign ${r.requestNumber} → ${name}`, () => api("/service-request/assign", {
        method: "POST", body: JSON.stringify({ requestId: r.requestId, technicianId }),
      }), () => Promise.all([refreshRequest(r.requestId), loadFleet(), refreshRings()]));
    };
    $("unassign").onclick = () => {
      const r = current();
      act(`Unassign ${r.requestNumber}`, () => api(`/service-request/${r.requestId}/unassign`, { method: "POST" }),
        () => Promise.all([refreshRequest(r.requestId), loadFleet()]));
    };
    $("cancel-request").onclick = () => {
      const r = current();
      const reason = $("cancel-reason").value.trim();
      if (!reason) {
        say("Cancel: say why (the reason is kept with the request).", true);
        $("cancel-reason").focus();
        return;
      }
      act(`Cancel ${r.requestNumber}`, () => api(`/service-request/${r.requestId}/3`, {
        method: "PUT", body: JSON.stringify({ reason }),
      }), () => Promise.all([refreshRequest(r.requestId), loadFleet(), refreshRings()]));
    };
    $("escalate").onclick = () => {
      const r = current();
      const priority = $("escalate-priority").value;
      const reason = $("escalate-reason").value.trim() || null;
      act(`Escalate ${r.requestNumber} to ${priority}`, () => api(`/service-request/${r.requestId}/priority`, {
        method: "PUT", body: JSON.stringify({ priority, reason }),
      }), () => refreshRequest(r.requestId));
    };
    $("customer-link").onclick = () => {
      const r = current();
      signInLink("customer", r.customerId, r.customer ? `${r.customer.firstName} ${r.customer.lastName}` : "the customer");
    };
  }

  async function signInLink(role, subject, name) {
    try {
      const link = (await api("/auth/links", { method: "POST", body: JSON.stringify({ role, subject }) })).data;
      $("link-box").hidden = false;
      $("link-url").value = link.url;
      $("link-url").focus();
      $("link-url").select();
      say(`Sign-in link for ${name}, valid until ${new Date(link.expiresAt).toLocaleTimeString()}`);
    } catch (e) {
      say(`Sign-in link for ${name}: ${e.message}`, true);
    }
  }

  // ---- taking a call --------------------------------------------------------------------
  function openForm(open) {
    $("new-request-section").hidden = !open;
    $("new-request").setAttribute("aria-expanded", String(open));
    if (open) $("customer-search").focus();
    else if (draft.marker) {
      draft.marker.remove();
      draft.marker = null;
    }
  }

  function setPlace(lat, lon, fromInputs = false) {
    if (!Number.isFinite(lat) || !Number.isFinite(lon)) return;
    if (!fromInputs) {
      $("place-lat").value = lat.toFixed(6);
      $("place-lon").value = lon.toFixed(6);
    }
    if (!draft.marker) {
      draft.marker = L.marker([lat, lon], { draggable: true, title: "The caller's place", keyboard: false }).addTo(map);
      draft.marker.on("dragend", () => {
        const at = draft.marker.getLatLng();
        setPlace(at.lat, at.lng);
      });
    } else {
      draft.marker.setLatLng([lat, lon]);
    }
  }

  let searchTimer = null;
  async function searchCustomers() {
    const keyword = $("customer-search").value.trim();
    if (!keyword) {
      $("customer-results").replaceChildren();
      return;
    }
    const found = (await api(`/customers?rowsPerPage=8&searchKeyword=${encodeURIComponent(keyword)}`)).data;
    $("customer-results").replaceChildren(...(found.length ? found.map((c) => el("li", {},
      el("button", { type: "button", class: "link", onclick: () => chooseCustomer(c) },
        `${c.firstName} ${c.lastName} · ${c.phoneNumber || "no phone"} · ${c.customerCode}`))) : [el("li", { class: "muted" }, "No customer found.")]));
  }

  async function chooseCustomer(c) {
    draft.customer = c;
    $("customer-chosen").textContent = `Customer: ${c.firstName} ${c.lastName} (${c.customerCode})`;
    $("new-customer").open = false;
    const vehicles = (await api(`/customers/${c.customerId}/vehicles?rowsPerPage=${PAGE_ROWS}`)).data;
    $("vehicle").disabled = false;
    $("vehicle").replaceChildren(...(vehicles.length
      ? vehicles.map((v) => el("option", { value: v.vehicleId }, [v.make, v.model, v.vin].filter(Boolean).join(" · ")))
      : [el("option", { value: "" }, "no vehicle: add one below")]));
    $("customer-results").replaceChildren();
  }

  async function loadServices() {
    const services = (await api(`/services?rowsPerPage=${PAGE_ROWS}`)).data.filter((s) => s.enabled !== false);
    $("service-choices").replaceChildren(...services.map((s, i) => el("label", {},
      el("input", { type: "checkbox", value: s.serviceId, ...(i === 0 ? { checked: "" } : {}) }),
      ` ${s.serviceName}`)));
  }

  // A new customer and their vehicle first (when the form names one), then the request.
  async function customerAndVehicle() {
    const first = $("nc-first").value.trim();
    const last = $("nc-last").value.trim();
    if ($("new-customer").open || (!draft.customer && (first || last))) {
      const vin = $("nc-vin").value.trim();
      if (!(first || last) || !vin) throw new Error("A new customer needs a name and a vehicle plate or VIN.");
      const code = `CALL-${Date.now().toString(36).toUpperCase()}`;
      const customerId = (await api("/customers", { method: "POST", body: JSON.stringify({
        customerCode: code, firstName: first, lastName: last, phoneNumber: $("nc-phone").value.trim(),
      }) })).data.id;
      const [make, ...model] = $("nc-make").value.trim().split(/\s+/);
      const vehicleId = (await api(`/customers/${customerId}/vehicles`, { method: "POST", body: JSON.stringify({
        vin, make: make || null, model: model.join(" ") || null,
      }) })).data.id;
      await chooseCustomer({ customerId, firstName: first, lastName: last, customerCode: code, phoneNumber: "" });
      return { customerId, vehicleId };
    }
    if (!draft.customer) throw new Error("Find the customer, or add a new one.");
    if (!$("vehicle").value) throw new Error("Choose the customer's vehicle.");
    return { customerId: draft.customer.customerId, vehicleId: $("vehicle").value };
  }

  async function createRequest(e) {
    e.preventDefault();
    $("new-request-error").textContent = "";
    const latitude = Number($("place-lat").value);
    const longitude = Number($("place-lon").value);
    const services = [...$("service-choices").querySelectorAll("input:checked")].map((i) => i.value);
    const schedule = document.querySelector('input[name="schedule"]:checked').value;
    try {
      if ($("place-lat").value === "" || !Number.isFinite(latitude) || !Number.isFinite(longitude)) {
        throw new Error("Set the place: click the map, or type its latitude and longitude.");
      }
      if (!services.length) throw new Error("Choose at least one service.");
      if (schedule === "Scheduled" && !$("scheduled-at").value) throw new Error("Say when (Scheduled at).");
      const who = await customerAndVehicle();
      const body = {
        ...who, latitude, longitude, services, priority: $("new-priority").value,
        location: $("place-address").value.trim() || null,
        description: $("place-notes").value.trim() || null,
        serviceScheduleType: schedule,
        scheduledAt: schedule === "Scheduled" ? new Date($("scheduled-at").value).toISOString() : null,
      };
      const made = (await api("/service-request", { method: "POST", body: JSON.stringify(body) })).data;
      say(`Created ${made.requestNumber}`);
      openForm(false);
      $("new-request-form").reset();
      $("scheduled-at").disabled = true;
      draft.customer = null;
      $("customer-chosen").textContent = "No customer chosen.";
      await Promise.all([refreshRequest(made.requestId), refreshRings()]);
      selectRequest(made.requestId);
    } catch (err) {
      $("new-request-error").textContent = err.message;
    }
  }

  function wireForm() {
    $("new-request").onclick = () => openForm($("new-request-section").hidden);
    $("close-new-request").onclick = () => openForm(false);
    $("new-request-form").addEventListener("submit", createRequest);
    $("customer-search").addEventListener("input", () => {
      window.clearTimeout(searchTimer);
      searchTimer = window.setTimeout(() => searchCustomers().catch((e) => say(e.message, true)), SEARCH_DELAY_MS);
    });
    for (const id of ["place-lat", "place-lon"]) {
      $(id).addEventListener("change", () => setPlace(Number($("place-lat").value), Number($("place-lon").value), true));
    }
    for (const radio of document.querySelectorAll('input[name="schedule"]')) {
      radio.addEventListener("change", () => {
        $("scheduled-at").disabled = document.querySelector('input[name="schedule"]:checked').value !== "Scheduled";
      });
    }
    map.on("click", (e) => {
      if (!$("new-request-section").hidden) setPlace(e.latlng.lat, e.latlng.lng);
    });
  }

  // ---- loading and events ---------------------------------------------------------------
  async function loadFleet() {
    const technicians = (await api("/console/fleet")).data;
    if (!fleet.size && technicians.length > CANVAS_FLEET) {
      canvasFleet = true;
      fleetCanvas = L.canvas({ padding: 0.2 });
    }
    // In slices, yielding between them: a thousand technicians are not one long task.
    for (let first = 0; first < technicians.length; first += FLEET_SLICE) {
      for (const t of technicians.slice(first, first + FLEET_SLICE)) placeTechnician(t, !fleet.has(t.technicianId));
      if (first + FLEET_SLICE < technicians.length) await new Promise((go) => window.setTimeout(go, 0));
    }
    fillTechnicianChoices();
  }

  function fit() {
    const bounds = L.featureGroup([layers.fleet, layers.requests]).getBounds();
    if (bounds.isValid()) map.fitBounds(bounds.pad(0.3), { maxZoom: 15 });
    fitted = bounds.isValid();
  }

  async function loadAll() {
    const [, page] = await Promise.all([
      loadFleet(), api(`/service-requests?rowsPerPage=${PAGE_ROWS}`), refreshRings(), loadFences(), loadServices(),
    ]);
    for (const r of page.data) placeRequest(r);
    await Promise.all(page.data.filter((r) => QUEUED.has(r.requestStatus)).map((r) => refreshQueue(r.requestId)));
    renderRequests();
    renderPanel();
    await pollRoutes();
    if (!fitted) fit();
    fixgate.status(`loaded ${new Date().toLocaleTimeString()}`);
  }

  function requestIdOf(data) {
    return data.requestId || (data.serviceRequestInfo && data.serviceRequestInfo.requestId) || null;
  }

  async function onEvent(name, data) {
    if (name === "TechnicianLocationUpdated" || name === "TechnicianLocation") return onTechnicianLocation(data);
    if (name === "TechnicianLocationsUpdated") {
      for (const move of data.technicians || []) onTechnicianLocation(move);
      return undefined;
    }
    if (name === "welcome" || name.startsWith("geofence_")) return undefined;
    if (name === "LocationUpdated") {
      const id = requestIdOf(data);
      if (id) drawRoute(id, data);
      return renderRequests();
    }
    if (name === "QueueUpdated") {
      for (const q of data.queue || []) queued.set(q.requestId, q);
      renderRequests();
      return renderPanel();
    }
    if (name === "QueuePositionChanged") return undefined; // QueueUpdated says it all to staff
    const id = requestIdOf(data);
    if (!id) return undefined;
    await Promise.all([refreshRequest(id), refreshRings(), loadFleet()]);
    return undefined;
  }

  function tick() {
    renderRings();
    for (const item of $("requests").children) {
      const entry = requests.get(item.dataset.requestId);
      const line = item.querySelector(".sla");
      const sla = entry && slaText(entry.info);
      if (line && sla) {
        line.textContent = sla.text;
        line.className = sla.missed ? "sla missed" : "sla";
      }
    }
    showLag();
  }

  // What the fleet-scale check reads (devtools/console_load.py): how many positions were
  // drawn, and the age of each (ms) from the `from`-th drawn on.
  window.fixgateConsole = {
    drawn: () => drawnTotal,
    received: () => received,
    frames: () => frames,
    lags: (from = 0) => lags.slice(Math.max(0, from - (drawnTotal - lags.length))),
    technicians: () => fleet.size,
  };

  fixgate.start(async (claims) => {
    if (!["admin", "dispatcher"].includes(claims.role)) {
      throw new Error(`The console is for admins and dispatchers (this token: ${claims.role}).`);
    }
    $("who").textContent = `tenant ${claims.tenant} · ${claims.role}`;
    ({ map } = await fixgate.baseMap($("map")));
    layers = {
      fences: L.featureGroup().addTo(map),
      routes: L.featureGroup().addTo(map),
      requests: L.featureGroup().addTo(map),
      fleet: L.featureGroup().addTo(map),
    };
    for (const id of ["filter-status", "filter-priority", "filter-area", "filter-technician"]) $(id).onchange = renderRequests;
    $("filter-text").oninput = renderRequests;
    wireActions();
    wireForm();
    await loadAll();
    fixgate.connect({
      event: (name, data) => onEvent(name, data).catch((e) => fixgate.status(e.message, true)),
      resync: () => loadAll().catch((e) => fixgate.status(e.message, true)),
    });
    window.setInterval(tick, COUNTDOWN_MS);
    window.setInterval(() => refreshRings().catch(() => {}), RING_POLL_MS);
    window.setInterval(() => pollRoutes().catch(() => {}), ROUTE_POLL_MS);
  }, { loginUrl: "/login" });
})();
