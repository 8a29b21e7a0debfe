"use strict";
// The customer's tracking page: the request's status, the technician's position, the
// remaining route, distance and ETA (REST, then `LocationUpdated` and status events).
(() => {
  const { api } = fixgate;
  const requestId = decodeURIComponent(window.location.pathname.split("/").pop());
  const NOTES = {
    Ringing: "Looking for a technician near you.",
    Pending: "Waiting for a technician to take your request.",
    Assigned: "A technician has your request.",
    EnRoute: "Your technician is on the way.",
    InProgress: "Work is under way.",
    Completed: "Done. Thank you!",
    Canceled: "This request was canceled.",
  };
  let map;
  let destination = null;
  let technician = null;
  let route = null;
  let fitted = false;

  function show(id, text) {
    document.getElementById(id).textContent = text;
  }

  function showRequest(r) {
    show("number", r.requestNumber);
    show("request-status", r.requestStatus);
    show("status-note", r.arrivedAt && r.requestStatus === "EnRoute" ? "Your technician has arrived." : NOTES[r.requestStatus] || "");
    if (r.technician) show("technician", `${r.technician.firstName} ${r.technician.lastName}`);
    if (r.van) show("van", r.van.registrationNumber || r.van.vanNumber || "–");
    if (!destination) {
      destination = L.circleMarker([r.latitude, r.longitude], {
        radius: 9, color: "#1d2430", weight: 2, fillColor: "#f2a15e", fillOpacity: 1,
      }).bindTooltip("You").addTo(map);
    }
  }

  // Route info (REST) and LocationUpdated share these fields.
  function showLocation(info) {
    if (info.distanceInMeter != null) show("distance", fixgate.distance(info.distanceInMeter));
    if (info.etaInSec != null) show("eta", fixgate.duration(info.etaInSec));
    show("updated", new Date().toLocaleTimeString());
    const at = info.technicianLocation;
    if (at) {
      const ll = [at.latitude, at.longitude];
      if (!technician) {
        technician = L.marker(ll, {
          icon: L.divIcon({ className: "tech-icon", iconSize: [28, 28], iconAnchor: [14, 14],
            html: '<div class="arrow EnRoute">▲</div>' }),
          title: "Technician",
        }).addTo(map);
      } else technician.setLatLng(ll);
      technician.getElement()?.querySelector(".arrow")?.style.setProperty("transform", `rotate(${at.heading || 0}deg)`);
    }
    if (info.encodedPolyline) {
      const points = fixgate.decodePolyline(info.encodedPolyline);
      if (!route) route = L.polyline(points, { color: "#2f6fd6", weight: 5, opacity: 0.8 }).addTo(map);
      else route.setLatLngs(points);
    }
    if (!fitted) {
      const bounds = L.featureGroup([destination, technician, route].filter(Boolean)).getBounds();
      if (bounds.isValid()) map.fitBounds(bounds.pad(0.3), { maxZoom: 16 });
      fitted = true;
    }
  }

  async function load() {
    const [detail, info] = await Promise.all([
      api(`/service-request/${requestId}`),
      api(`/service-request/${requestId}/route-info`),
    ]);
    showRequest(detail.data);
    showLocation(info.data);
    fixgate.status("");
  }

  async function onEvent(name, data) {
    if (name === "LocationUpdated") return showLocation(data);
    if (["welcome", "QueuePositionChanged", "QueueUpdated"].includes(name)) return undefined;
    return load(); // any status event of this request: reload its state
  }

  fixgate.start(async (claims) => {
    ({ map } = await fixgate.baseMap(document.getElementById("map")));
    await load();
    fixgate.connect({
      event: (name, data) => onEvent(name, data).catch((e) => fixgate.status(e.message, true)),
      resync: () => load().catch((e) => fixgate.status(e.message, true)),
    });
  });
})();
