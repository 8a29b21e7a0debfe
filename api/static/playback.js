"use strict";
// A vehicle's history played back: the track of a device (or a technician's device) over a
// time range from /devices/{id}/track, drawn on the map with its stops; a time slider with
// play/pause and speed; the position, speed and time at the cursor; the same range exported
// as CSV, GPX or GeoJSON (/devices/{id}/track/export, fetched with the token, saved as a file).
(() => {
  const { api, el } = fixgate;
  const TICK_MS = 100;
  const STOP_SPEED_MPS = 1.0; // slower than a walk: standing
  const STOP_MIN_S = 60; // standing this long is a stop (a red light is not)
  const MAX_DEVICE_PAGES = 10;
  const $ = (id) => document.getElementById(id);
  let map;
  let layer;
  let marker = null;
  let points = [];
  let timer = null;
  let clock = 0; // the played time, ms since the epoch

  function localInput(date) {
    const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
    return shifted.toISOString().slice(0, 19);
  }

  async function loadVehicles() {
    const [fleet, devices] = await Promise.all([api("/console/fleet").then((b) => b.data),
      fixgate.pages("/devices", MAX_DEVICE_PAGES)]);
    const owner = new Map(fleet.filter((t) => t.deviceId).map((t) => [t.deviceId, t.name]));
    $("vehicle").replaceChildren(...devices.map((d) => el("option", { value: d.deviceId },
      owner.has(d.deviceId) ? `${owner.get(d.deviceId)} · ${d.deviceId}` : `${d.deviceId} (${d.kind.replace("_", " ")})`)));
    const asked = new URLSearchParams(window.location.search).get("device");
    if (asked) $("vehicle").value = asked;
  }

  function range() {
    const from = new Date($("from").value);
    const to = new Date($("to").value);
    if (!$("vehicle").value) throw new Error("Choose a vehicle.");
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from) {
      throw new Error("Choose a time range: From before To.");
    }
    return { device: $("vehicle").value, from: from.toISOString(), to: to.toISOString() };
  }

  function stopsOf(track) {
    const stops = [];
    let start = null;
    for (let i = 0; i <= track.length; i += 1) {
      const still = i < track.length && track[i].speed != null && track[i].speed < STOP_SPEED_MPS;
      if (still && start === null) start = i;
      if (!still && start !== null) {
        const seconds = (Date.parse(track[i - 1].time) - Date.parse(track[start].time)) / 1000;
        if (seconds >= STOP_MIN_S) stops.push({ first: start, last: i - 1, seconds });
        start = null;
      }
    }
    return stops;
  }

  function stopCursor() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    $("play").textContent = "Play";
  }

  async function show(e) {
    if (e) e.preventDefault();
    $("playback-error").textContent = "";
    stopCursor();
    try {
      const r = range();
      const query = new URLSearchParams({ fromTime: r.from, toTime: r.to });
      const track = (await api(`/devices/${encodeURIComponent(r.device)}/track?${query}`)).data;
      points = track.points;
      layer.clearLayers();
      marker = null;
      $("player").hidden = !points.length;
      if (!points.length) throw new Error("No fix of this vehicle in that range.");
      const line = L.polyline(points.map((p) => [p.latitude, p.longitude]), { color: "#2f6fd6", weight: 4 }).addTo(layer);
      const stops = stopsOf(points);
      $("stops").replaceChildren(...(stops.length ? stops.map((s) => {
        const p = points[s.first];
        L.circleMarker([p.latitude, p.longitude], { radius: 7, color: "#7a1f1f", fillColor: "#e0533d", fillOpacity: 0.9, className: "stop" })
          .bindTooltip(`stopped ${fixgate.duration(s.seconds)} from ${new Date(p.time).toLocaleTimeString()}`).addTo(layer);
        return el("li", {}, el("button", { type: "button", class: "link", onclick: () => seek(s.first) },
          `${new Date(p.time).toLocaleTimeString()} · ${fixgate.duration(s.seconds)}`));
      }) : [el("li", { class: "muted" }, "No stop of a minute or more.")]));
      map.fitBounds(line.getBounds().pad(0.2), { maxZoom: 17 });
      $("cursor").max = String(points.length - 1);
      $("track-summary").textContent = track.bucketSeconds
        ? `${points.length} points, each the average of ${track.bucketSeconds.toFixed(0)} s (a long range)`
        : `${points.length} fixes, as stored`;
      seek(0);
    } catch (err) {
      $("playback-error").textContent = err.message;
    }
  }

  function seek(index) {
    const i = Math.max(0, Math.min(points.length - 1, index));
    const p = points[i];
    $("cursor").value = String(i);
    clock = Date.parse(p.time);
    if (!marker) marker = L.circleMarker([p.latitude, p.longitude], { radius: 9, color: "#111", fillColor: "#ffd400", fillOpacity: 1 }).addTo(layer);
    else marker.setLatLng([p.latitude, p.longitude]);
    const out = $("cursor-readout");
    out.dataset.time = p.time;
    out.dataset.lat = String(p.latitude);
    out.dataset.lon = String(p.longitude);
    const speed = p.speed != null ? `${(p.speed * 3.6).toFixed(1)} km/h` : "speed unknown";
    out.textContent = `${new Date(p.time).toLocaleString()} · ${p.latitude.toFixed(6)}, ${p.longitude.toFixed(6)} · ${speed}`;
    $("cursor").setAttribute("aria-valuetext", new Date(p.time).toLocaleTimeString());
  }

  function play() {
    if (timer !== null) {
      stopCursor();
      return;
    }
    if (Number($("cursor").value) >= points.length - 1) seek(0);
    $("play").textContent = "Pause";
    timer = window.setInterval(() => {
      clock += TICK_MS * Number($("speed").value);
      let i = Number($("cursor").value);
      while (i < points.length - 1 && Date.parse(points[i + 1].time) <= clock) i += 1;
      if (i !== Number($("cursor").value)) seek(i);
      if (i >= points.length - 1) stopCursor();
    }, TICK_MS);
  }

  async function exportAs(format) {
    try {
      const r = range();
      const query = new URLSearchParams({ fromTime: r.from, toTime: r.to, format });
      const response = await fetch(`/devices/${encodeURIComponent(r.device)}/track/export?${query}`, {
        headers: { Authorization: `Bearer ${sessionStorage.getItem("fixgate.token")}` },
      });
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).message || response.statusText);
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const link = el("a", { href: URL.createObjectURL(await response.blob()), download: name ? name[1] : `track.${format}` });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      fixgate.status(`Exported ${format.toUpperCase()}`);
    } catch (err) {
      $("playback-error").textContent = `Export: ${err.message}`;
    }
  }

  fixgate.start(async (claims) => {
    if (!["admin", "dispatcher"].includes(claims.role)) throw new Error("Playback is for admins and dispatchers.");
    $("who").textContent = `tenant ${claims.tenant} · ${claims.role}`;
    ({ map } = await fixgate.baseMap($("map")));
    layer = L.featureGroup().addTo(map);
    const now = new Date();
    $("to").value = localInput(now);
    $("from").value = localInput(new Date(now.getTime() - 24 * 3600 * 1000));
    await loadVehicles();
    $("range-form").addEventListener("submit", show);
    $("cursor").addEventListener("input", () => seek(Number($("cursor").value)));
    $("play").onclick = play;
    for (const format of ["csv", "gpx", "geojson"]) $(`export-${format}`).onclick = () => exportAs(format);
  }, { loginUrl: "/login" });
})();
