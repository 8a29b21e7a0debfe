"use strict";
// The dispatcher console: the fleet on a map (REST, then `TechnicianLocationUpdated` events),
// the tenant's geofences and service areas under it, requests with filters (priority and
// service-area SLA shown), rings in progress, routes and ETAs of en-route technicians, and
// manual assignment (select a request and a technician, then Assign).
(() => {
  const { api, el } = fixgate;
  const RING_POLL_MS = 2000; // ring phases move on without an event to staff: look again
  const ROUTE_POLL_MS = 5000; // route-info of en-route requests (LocationUpdated is per request)
  const COUNTDOWN_MS = 250;
  const OPEN = new Set(["Ringing", "Pending", "Assigned", "EnRoute", "InProgress"]);
  const PAGE_ROWS = 100; // the API's largest page
  const MAX_FENCE_PAGES = 10; // a thousand fences is more than a map shows legibly
  const FENCE_STYLE = {
    service_area: { color: "#2f6fb5", weight: 2, dashArray: "6 4", fillOpacity: 0.05 },
    depot: { color: "#5b6573", weight: 2, fillOpacity: 0.15 },
    customer: { color: "#8a5bb5", weight: 1, fillOpacity: 0.1 },
    other: { color: "#7a8594", weight: 1, fillOpacity: 0.05 },
  };

  const fleet = new Map(); // technicianId -> {info, marker}
  const requests = new Map(); // requestId -> {info, marker}
  const routes = new Map(); // requestId -> {info, line}
  let rings = [];
  const selected = { request: null, technician: null };
  let map;
  let layers;
  let fitted = false;

  // ---- fleet ------------------------------------------------------------------------
  function techIcon(t) {
    const heading = t.location && t.location.heading != null ? t.location.heading : 0;
    const chosen = selected.technician === t.technicianId ? " selected" : "";
    // Built as elements, not markup: the page's Content-Security-Policy allows no inline
    // style attributes; a style set through the DOM is not one.
    const arrow = fixgate.el("div", { class: `arrow ${t.availabilityStatus}` }, "▲");
    arrow.style.transform = `rotate(${heading}deg)`;
    const label = fixgate.el(
      "span", { class: "tech-label" }, t.vanNumber ? `${t.name} · ${t.vanNumber}` : t.name
    );
    return L.divIcon({
      className: `tech-icon${chosen}`,
      iconSize: [28, 28],
      iconAnchor: [14, 14],
      html: fixgate.el("div", {}, arrow, label),
    });
  }

  function placeTechnician(t) {
    const entry = fleet.get(t.technicianId) || { info: t, marker: null };
    entry.info = t;
    fleet.set(t.technicianId, entry);
    if (!t.location) return;
    const at = [t.location.latitude, t.location.longitude];
    if (!entry.marker) {
      entry.marker = L.marker(at, { icon: techIcon(t), title: t.name })
        .on("click", () => selectTechnician(t.technicianId))
        .addTo(layers.fleet);
    } else {
      entry.marker.setLatLng(at);
      entry.marker.setIcon(techIcon(t));
    }
  }

  function renderFleet() {
    const list = document.getElementById("fleet");
    list.replaceChildren(
      ...[...fleet.values()].map(({ info: t }) => {
        const where = t.location
          ? `${t.location.latitude.toFixed(5)}, ${t.location.longitude.toFixed(5)}` +
            (t.location.heading != null ? ` · ${Math.round(t.location.heading)}°` : "") +
            (t.location.updatedAt ? ` · ${new Date(t.location.updatedAt).toLocaleTimeString()}` : "")
          : "no live position";
        return el(
          "li",
          {
            class: selected.technician === t.technicianId ? "selected" : "",
            dataset: { technicianId: t.technicianId },
            onclick: () => selectTechnician(t.technicianId),
          },
          el("b", {}, t.name), " ",
          el("span", { class: `badge ${t.availabilityStatus}` }, t.availabilityStatus),
          el("div", { class: "muted" }, `${t.technicianCode}${t.vanNumber ? " · van " + t.vanNumber : ""}`),
          el("div", { class: "muted position" }, where),
        );
      }),
    );
  }

  function onTechnicianLocation(d) {
    const entry = [...fleet.values()].find(
      (e) => e.info.technicianId === d.technicianId || e.info.deviceId === d.deviceId,
    );
    if (!entry) return;
    const t = { ...entry.info };
    t.location = {
      latitude: d.lat,
      longitude: d.lon,
      heading: d.heading,
      speed: d.speed,
      updatedAt: d.time,
    };
    if (d.availability) t.availabilityStatus = d.availability;
    placeTechnician(t);
    renderFleet();
  }

  // ---- geofences and service areas ----------------------------------------------------
  async function pages(path) {
    const rows = [];
    for (let page = 1; page <= MAX_FENCE_PAGES; page += 1) {
      const body = await api(`${path}${path.includes("?") ? "&" : "?"}rowsPerPage=${PAGE_ROWS}&pageNumber=${page}`);
      rows.push(...body.data);
      if (!body.hasNextPage) break;
    }
    return rows;
  }

  async function loadFences() {
    const [fences, areas] = await Promise.all([pages("/geofences"), pages("/service-areas?enabled=true")]);
    const sla = new Map(areas.map((a) => [a.geofenceId, a.responseTimeSlaMinutes]));
    layers.fences.clearLayers();
    for (const f of fences) {
      const style = { ...(FENCE_STYLE[f.kind] || FENCE_STYLE.other), className: `fence fence-${f.kind}` };
      const [lon, lat] = f.geometryType === "POINT" ? f.geometry.coordinates : [0, 0];
      const shape =
        f.geometryType === "POINT"
          ? L.circle([lat, lon], { ...style, radius: f.radiusM })
          : L.geoJSON(f.geometry, { style: () => style });
      const minutes = sla.get(f.geofenceId);
      const label = `${f.name} · ${f.kind.replace("_", " ")}` + (minutes ? ` · SLA ${minutes} min` : "");
      shape.bindTooltip(escape(label), { sticky: true }).addTo(layers.fences);
    }
  }

  // ---- requests ---------------------------------------------------------------------
  function slaLine(r) {
    if (r.slaViolatedAt) {
      return el("div", { class: "sla missed" }, `SLA missed · ${r.serviceAreaName || "service area"}`);
    }
    if (r.slaDueAt && !r.arrivedAt && OPEN.has(r.requestStatus)) {
      const due = new Date(r.slaDueAt).toLocaleTimeString();
      return el("div", { class: "sla" }, `${r.serviceAreaName || "service area"}: due by ${due}`);
    }
    return "";
  }

  function placeRequest(r) {
    const entry = requests.get(r.requestId) || { info: r, marker: null };
    entry.info = r;
    requests.set(r.requestId, entry);
    const style = {
      radius: 8,
      color: selected.request === r.requestId ? "#ffd400" : "#1d2430",
      weight: 2,
      fillColor: { Ringing: "#f5c242", Pending: "#f2a15e", EnRoute: "#6ea8f2" }[r.requestStatus] || "#9cc3f5",
      fillOpacity: 0.9,
    };
    if (!OPEN.has(r.requestStatus)) {
      if (entry.marker) entry.marker.remove();
      entry.marker = null;
      return;
    }
    if (!entry.marker) {
      entry.marker = L.circleMarker([r.latitude, r.longitude], style)
        .bindTooltip(() => `${entry.info.requestNumber} · ${entry.info.requestStatus}`)
        .on("click", () => selectRequest(r.requestId))
        .addTo(layers.requests);
    } else {
      entry.marker.setLatLng([r.latitude, r.longitude]).setStyle(style);
    }
  }

  function matches(r) {
    const status = document.getElementById("filter-status").value;
    const text = document.getElementById("filter-text").value.trim().toLowerCase();
    if (status === "open" && !OPEN.has(r.requestStatus)) return false;
    if (status && status !== "open" && r.requestStatus !== status) return false;
    if (!text) return true;
    const customer = r.customer ? `${r.customer.firstName} ${r.customer.lastName}` : "";
    return [r.requestNumber, customer, r.location || "", r.description || ""]
      .join(" ")
      .toLowerCase()
      .includes(text);
  }

  function renderRequests() {
    const shown = [...requests.values()].map((e) => e.info).filter(matches);
    shown.sort((a, b) => (a.requestedAt < b.requestedAt ? 1 : -1));
    const list = document.getElementById("requests");
    if (!shown.length) {
      list.replaceChildren(el("li", { class: "muted" }, "No request matches."));
      return;
    }
    list.replaceChildren(
      ...shown.map((r) => {
        const route = routes.get(r.requestId);
        const who = r.technician ? `${r.technician.firstName} ${r.technician.lastName}` : "unassigned";
        const customer = r.customer ? `${r.customer.firstName} ${r.customer.lastName}` : "";
        return el(
          "li",
          {
            class: selected.request === r.requestId ? "selected" : "",
            dataset: { requestId: r.requestId, status: r.requestStatus },
            onclick: () => selectRequest(r.requestId),
          },
          el("b", {}, r.requestNumber), " ",
          el("span", { class: `badge ${r.requestStatus}` }, r.requestStatus), " ",
          el("span", { class: `priority ${r.priority}` }, r.priority),
          slaLine(r),
          el("div", { class: "muted" }, `${customer} · ${r.location || `${r.latitude.toFixed(4)}, ${r.longitude.toFixed(4)}`}`),
          el("div", { class: "muted" }, `technician: ${who}`),
          route && route.info.etaInSec != null
            ? el("div", { class: "eta" }, `ETA ${fixgate.duration(route.info.etaInSec)} · ${fixgate.distance(route.info.distanceInMeter)}`)
            : "",
        );
      }),
    );
  }

  async function refreshRequest(requestId) {
    const r = (await api(`/service-request/${requestId}`)).data;
    placeRequest(r);
    renderRequests();
    if (r.requestStatus === "EnRoute") await refreshRoute(requestId);
    else dropRoute(requestId);
  }

  // ---- routes -----------------------------------------------------------------------
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
    if (!route.line) {
      route.line = L.polyline(points, { color: "#2f6fd6", weight: 4, opacity: 0.8 }).addTo(layers.routes);
    } else {
      route.line.setLatLngs(points);
    }
    route.line.bindTooltip(`ETA ${fixgate.duration(info.etaInSec)} · ${fixgate.distance(info.distanceInMeter)}`);
  }

  async function refreshRoute(requestId) {
    drawRoute(requestId, (await api(`/service-request/${requestId}/route-info`)).data);
  }

  async function pollRoutes() {
    const enRoute = [...requests.values()].filter((e) => e.info.requestStatus === "EnRoute");
    await Promise.all(enRoute.map((e) => refreshRoute(e.info.requestId)));
    if (enRoute.length) renderRequests();
  }

  // ---- rings ------------------------------------------------------------------------
  function renderRings() {
    const box = document.getElementById("rings");
    if (!rings.length) {
      box.replaceChildren(el("span", { class: "muted" }, "No request is ringing."));
      return;
    }
    box.replaceChildren(
      ...rings.map((ring) => {
        const left = Math.max(0, (Date.parse(ring.phaseEndsAt) - Date.now()) / 1000);
        const rung = ring.rung.length
          ? ring.rung.map((t) => `${t.name} (phase ${t.phase + 1}, ${t.action.toLowerCase()})`).join(", ")
          : "nobody in range yet";
        return el(
          "div",
          { class: "ring", dataset: { requestId: ring.requestId } },
          el("b", {}, ring.requestNumber),
          ` · ring ${ring.phase + 1} of ${ring.phaseCount} (${ring.minRadiusMiles}–${ring.maxRadiusMiles} mi) · `,
          el("span", { class: "countdown" }, `${left.toFixed(0)} s left`),
          el("div", { class: "muted rung" }, `rung: ${rung}`),
        );
      }),
    );
  }

  async function refreshRings() {
    rings = (await api("/console/rings")).data;
    renderRings();
    // A ring of a request not listed yet (created while the socket was away): list it.
    await Promise.all(rings.filter((r) => !requests.has(r.requestId)).map((r) => refreshRequest(r.requestId)));
  }

  // ---- selection and assignment -----------------------------------------------------
  function selectRequest(requestId) {
    selected.request = requestId;
    const r = requests.get(requestId).info;
    document.getElementById("assign-request").textContent = `${r.requestNumber} (${r.requestStatus})`;
    for (const e of requests.values()) placeRequest(e.info);
    renderRequests();
    updateAssign();
  }

  function selectTechnician(technicianId) {
    selected.technician = technicianId;
    const t = fleet.get(technicianId).info;
    document.getElementById("assign-technician").textContent = `${t.name} (${t.availabilityStatus})`;
    for (const e of fleet.values()) placeTechnician(e.info);
    renderFleet();
    updateAssign();
  }

  function updateAssign() {
    document.getElementById("assign").disabled = !(selected.request && selected.technician);
  }

  async function assign() {
    const r = requests.get(selected.request).info;
    const t = fleet.get(selected.technician).info;
    try {
      const body = await api("/service-request/assign", {
        method: "POST",
        body: JSON.stringify({ requestId: r.requestId, technicianId: t.technicianId }),
      });
      fixgate.status(`${body.message}: ${r.requestNumber} → ${t.name}`);
      selected.request = null;
      selected.technician = null;
      document.getElementById("assign-request").textContent = "click a request";
      document.getElementById("assign-technician").textContent = "click a technician";
      updateAssign();
      await Promise.all([refreshRequest(r.requestId), loadFleet(), refreshRings()]);
    } catch (e) {
      fixgate.status(`Assign ${r.requestNumber} → ${t.name}: ${e.message}`, true);
    }
  }

  // ---- loading and events -----------------------------------------------------------
  async function loadFleet() {
    for (const t of (await api("/console/fleet")).data) placeTechnician(t);
    renderFleet();
  }

  async function loadAll() {
    const [, page] = await Promise.all([
      loadFleet(),
      api(`/service-requests?rowsPerPage=${PAGE_ROWS}`),
      refreshRings(),
      loadFences(),
    ]);
    for (const r of page.data) placeRequest(r);
    renderRequests();
    await pollRoutes();
    if (!fitted) {
      const bounds = L.featureGroup([layers.fleet, layers.requests]).getBounds();
      if (bounds.isValid()) map.fitBounds(bounds.pad(0.3), { maxZoom: 15 });
      fitted = bounds.isValid();
    }
    fixgate.status(`loaded ${new Date().toLocaleTimeString()}`);
  }

  function requestIdOf(data) {
    return data.requestId || (data.serviceRequestInfo && data.serviceRequestInfo.requestId) || null;
  }

  async function onEvent(name, data) {
    // The fleet event (at most 1/s per technician); the contract's first name, and the built one.
    if (name === "TechnicianLocationUpdated" || name === "TechnicianLocation") {
      return onTechnicianLocation(data);
    }
    if (name === "welcome") return undefined;
    if (name === "LocationUpdated") {
      const id = requestIdOf(data);
      if (id) drawRoute(id, data);
      return renderRequests();
    }
    if (name === "QueueUpdated" || name === "QueuePositionChanged") return undefined;
    const id = requestIdOf(data);
    if (!id) return undefined;
    await Promise.all([refreshRequest(id), refreshRings(), loadFleet()]);
    return undefined;
  }

  function escape(text) {
    return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }

  fixgate.start(async (claims) => {
    if (!["admin", "dispatcher"].includes(claims.role)) {
      throw new Error(`The console is for admins and dispatchers (this token: ${claims.role}).`);
    }
    document.getElementById("who").textContent = `tenant ${claims.tenant} · ${claims.role} ${claims.sub}`;
    ({ map } = await fixgate.baseMap(document.getElementById("map")));
    layers = {
      fences: L.featureGroup().addTo(map),
      routes: L.featureGroup().addTo(map),
      requests: L.featureGroup().addTo(map),
      fleet: L.featureGroup().addTo(map),
    };
    document.getElementById("filter-status").onchange = renderRequests;
    document.getElementById("filter-text").oninput = renderRequests;
    document.getElementById("assign").onclick = assign;
    await loadAll();
    fixgate.connect({
      event: (name, data) => onEvent(name, data).catch((e) => fixgate.status(e.message, true)),
      resync: () => loadAll().catch((e) => fixgate.status(e.message, true)),
    });
    window.setInterval(renderRings, COUNTDOWN_MS);
    window.setInterval(() => refreshRings().catch(() => {}), RING_POLL_MS);
    window.setInterval(() => pollRoutes().catch(() => {}), ROUTE_POLL_MS);
  }, { loginUrl: "/login" });
})();
