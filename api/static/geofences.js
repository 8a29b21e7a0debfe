"use strict";
// Geofences and service areas drawn and edited on the map (leaflet-geoman, vendored from the
// npm registry): polygons and circles, a service area's SLA minutes and priority; saved
// through /geofences and /service-areas (the engines reload a changed fence within a
// second). The shape can be typed too, as coordinates, so the page works from the keyboard.
(() => {
  const { api, el } = fixgate;
  const MAX_PAGES = 10;
  const STYLE = { service_area: "#2f6fb5", depot: "#5b6573", customer: "#8a5bb5", other: "#7a8594" };
  const $ = (id) => document.getElementById(id);
  let map;
  let shown; // the saved fences
  let shape = null; // the layer being drawn or edited
  let editing = null; // {fence, area} of the fence in the form, or null for a new one
  let admin = false;

  // ---- the shape: layer <-> GeoJSON <-> text -----------------------------------------
  function geometryOf(layer) {
    if (layer instanceof L.Circle) {
      const c = layer.getLatLng();
      return { geometry: { type: "Point", coordinates: [c.lng, c.lat] }, radiusM: layer.getRadius() };
    }
    const ring = layer.getLatLngs()[0].map((p) => [p.lng, p.lat]);
    ring.push(ring[0]);
    return { geometry: { type: "Polygon", coordinates: [ring] }, radiusM: null };
  }

  function textOf(layer) {
    if (layer instanceof L.Circle) {
      const c = layer.getLatLng();
      return `${c.lat.toFixed(6)}, ${c.lng.toFixed(6)}, ${Math.round(layer.getRadius())}`;
    }
    return layer.getLatLngs()[0].map((p) => `${p.lat.toFixed(6)}, ${p.lng.toFixed(6)}`).join("\n");
  }

  function layerOfText(text) {
    const lines = text.split("\n").map((l) => l.trim()).filter(Boolean)
      .map((l) => l.split(/[,\s]+/).filter(Boolean).map(Number));
    if (lines.some((l) => l.some((n) => !Number.isFinite(n)))) throw new Error("Shape: numbers only, “lat, lon” a line.");
    if (lines.length === 1 && lines[0].length === 3) {
      const [lat, lon, radius] = lines[0];
      return L.circle([lat, lon], { radius });
    }
    if (lines.length < 3 || lines.some((l) => l.length !== 2)) {
      throw new Error("Shape: a polygon needs at least 3 “lat, lon” lines; a circle one “lat, lon, radius” line.");
    }
    return L.polygon(lines.map(([lat, lon]) => [lat, lon]));
  }

  function take(layer) {
    if (shape && shape !== layer) shape.remove();
    shape = layer;
    shape.setStyle({ color: "#d94f00", weight: 3, className: "fence-draft" });
    if (!map.hasLayer(shape)) shape.addTo(map);
    shape.pm.enable({ allowSelfIntersection: false });
    shape.on("pm:edit", () => { $("fence-shape").value = textOf(shape); });
    $("fence-shape").value = textOf(shape);
  }

  // ---- the form ------------------------------------------------------------------------
  function showAreaFields() {
    $("area-fields").hidden = $("fence-kind").value !== "service_area";
  }

  function clearForm() {
    editing = null;
    $("fence-form").reset();
    $("fence-kind").disabled = false;
    $("editor-title").textContent = "New geofence";
    if (shape) shape.remove();
    shape = null;
    $("fence-error").textContent = "";
    showAreaFields();
  }

  function edit(fence, area) {
    clearForm();
    editing = { fence, area };
    $("editor-title").textContent = `Edit ${fence.name}`;
    $("fence-name").value = fence.name;
    $("fence-kind").value = fence.kind;
    $("fence-kind").disabled = true; // a fence keeps its kind (a service area's stays one)
    $("fence-dwell").value = String(fence.dwellS);
    if (area) {
      $("area-sla").value = String(area.responseTimeSlaMinutes);
      $("area-priority").value = String(area.priorityLevel);
      $("area-description").value = area.description || "";
    }
    showAreaFields();
    if (fence.geometryType === "POINT") {
      const [lon, lat] = fence.geometry.coordinates;
      take(L.circle([lat, lon], { radius: fence.radiusM }));
    } else if (fence.geometryType === "POLYGON") {
      take(L.polygon(fence.geometry.coordinates[0].slice(0, -1).map(([lon, lat]) => [lat, lon])));
    } else {
      $("fence-shape").value = "";
      $("fence-error").textContent = "A multipolygon is edited through the API; name, dwell and SLA here.";
    }
    $("fence-name").focus();
  }

  async function save(e) {
    e.preventDefault();
    $("fence-error").textContent = "";
    try {
      const name = $("fence-name").value.trim();
      if (!name) throw new Error("Give the geofence a name.");
      const kind = $("fence-kind").value;
      const dwellS = Number($("fence-dwell").value || 0);
      let drawn = null;
      if ($("fence-shape").value.trim()) {
        drawn = geometryOf(shape && textOf(shape) === $("fence-shape").value ? shape : layerOfText($("fence-shape").value));
      }
      let geofenceId;
      if (editing) {
        geofenceId = editing.fence.geofenceId;
        await api(`/geofences/${geofenceId}`, { method: "PATCH", body: JSON.stringify({ name, dwellS, ...(drawn || {}) }) });
      } else {
        if (!drawn) throw new Error("Draw the shape on the map, or type its coordinates.");
        geofenceId = Number((await api("/geofences", { method: "POST", body: JSON.stringify({ name, kind, dwellS, ...drawn }) })).data.id);
      }
      if (kind === "service_area") {
        const area = {
          responseTimeSlaMinutes: Number($("area-sla").value), priorityLevel: Number($("area-priority").value),
          description: $("area-description").value.trim() || null,
        };
        if (editing && editing.area) {
          await api(`/service-areas/${editing.area.serviceAreaId}`, { method: "PATCH", body: JSON.stringify(area) });
        } else {
          await api("/service-areas", { method: "POST", body: JSON.stringify({ geofenceId, ...area }) });
        }
      }
      fixgate.status(`Saved ${name}`);
      clearForm();
      await load();
    } catch (err) {
      $("fence-error").textContent = err.message;
    }
  }

  async function remove(fence) {
    try {
      await api(`/geofences/${fence.geofenceId}`, { method: "DELETE" });
      fixgate.status(`Deleted ${fence.name}`);
      if (editing && editing.fence.geofenceId === fence.geofenceId) clearForm();
      await load();
    } catch (err) {
      $("fence-error").textContent = `Delete ${fence.name}: ${err.message}`;
    }
  }

  // ---- the saved fences ------------------------------------------------------------------
  async function load() {
    const [fences, areas] = await Promise.all([fixgate.pages("/geofences", MAX_PAGES), fixgate.pages("/service-areas", MAX_PAGES)]);
    const areaOf = new Map(areas.map((a) => [a.geofenceId, a]));
    shown.clearLayers();
    for (const f of fences) {
      const style = { color: STYLE[f.kind] || STYLE.other, weight: 2, fillOpacity: 0.08, className: `fence fence-${f.kind}`, pmIgnore: true };
      const [lon, lat] = f.geometryType === "POINT" ? f.geometry.coordinates : [0, 0];
      const layer = f.geometryType === "POINT" ? L.circle([lat, lon], { ...style, radius: f.radiusM }) : L.geoJSON(f.geometry, { style: () => style, pmIgnore: true });
      const area = areaOf.get(f.geofenceId);
      layer.bindTooltip(`${f.name}${area ? ` · SLA ${area.responseTimeSlaMinutes} min` : ""}`).addTo(shown);
    }
    $("fences").replaceChildren(...(fences.length ? fences.map((f) => {
      const area = areaOf.get(f.geofenceId);
      const item = el("li", { dataset: { geofenceId: String(f.geofenceId) } },
        el("b", {}, f.name), " ", el("span", { class: "muted" },
          `${f.kind.replace("_", " ")} · ${f.geometryType === "POINT" ? `circle ${Math.round(f.radiusM)} m` : f.geometryType.toLowerCase()}` +
          (area ? ` · SLA ${area.responseTimeSlaMinutes} min · priority ${area.priorityLevel}` : "") +
          (f.dwellS ? ` · dwell ${f.dwellS} s` : "")));
      if (admin) {
        item.append(" ", el("button", { type: "button", class: "small", "aria-label": `Edit ${f.name}`, onclick: () => edit(f, area) }, "Edit"),
          " ", el("button", { type: "button", class: "small", "aria-label": `Delete ${f.name}`, onclick: () => remove(f) }, "Delete"));
      }
      return item;
    }) : [el("li", { class: "muted" }, "No geofence yet.")]));
    const bounds = shown.getBounds();
    if (bounds.isValid() && !shape) map.fitBounds(bounds.pad(0.2), { maxZoom: 16 });
  }

  fixgate.start(async (claims) => {
    if (!["admin", "dispatcher"].includes(claims.role)) throw new Error("Geofences are for admins and dispatchers.");
    admin = claims.role === "admin";
    $("who").textContent = `tenant ${claims.tenant} · ${claims.role}`;
    $("editor-section").hidden = !admin; // only an admin manages geofences; dispatchers look
    const base = await fixgate.baseMap($("map"));
    map = base.map;
    shown = L.featureGroup().addTo(map);
    // Before any fence: the area of the roads (the routing extract) rather than the world.
    if (base.roads && base.roads.getBounds().isValid()) map.fitBounds(base.roads.getBounds());
    map.pm.setGlobalOptions({ allowSelfIntersection: false });
    map.on("pm:create", (e) => take(e.layer));
    $("draw-polygon").onclick = () => map.pm.enableDraw("Polygon", { allowSelfIntersection: false });
    $("draw-circle").onclick = () => map.pm.enableDraw("Circle");
    $("fence-shape").addEventListener("change", () => {
      try {
        if ($("fence-shape").value.trim()) take(layerOfText($("fence-shape").value));
        $("fence-error").textContent = "";
      } catch (err) {
        $("fence-error").textContent = err.message;
      }
    });
    $("fence-kind").addEventListener("change", showAreaFields);
    $("fence-form").addEventListener("submit", save);
    $("new-fence").onclick = clearForm;
    showAreaFields();
    await load();
  }, { loginUrl: "/login" });
})();
