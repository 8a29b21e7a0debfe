"use strict";
// Shared by the console and the tracking page: the token, REST calls in the API's
// envelope, the WebSocket with missed-event recovery, the map's base layer, and Google's
// encoded polyline. No framework: plain DOM and Leaflet (vendored, no CDN).
const fixgate = (() => {
  const TOKEN_KEY = "fixgate.token";
  const RECONNECT_MIN_MS = 500; // first retry soon: most drops are an API restart
  const RECONNECT_MAX_MS = 10000; // and no faster than this while the API stays away

  // A token in the link's fragment (`#token=...`: a fragment never leaves the browser, so
  // no server, proxy or Referer sees it) moves to session storage and leaves the address
  // bar, so it is not bookmarked or shared by accident.
  function takeToken() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const given = fragment.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given.trim());
      fragment.delete("token");
      const rest = fragment.toString();
      history.replaceState(null, "", window.location.pathname + window.location.search + (rest ? `#${rest}` : ""));
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part));
    } catch (e) {
      return null;
    }
  }

  function usable(token) {
    const c = token && claims(token);
    return Boolean(c && c.tenant && c.role && (!c.exp || c.exp * 1000 > Date.now()));
  }

  // The login box: paste a token (`fixgate token issue ...` prints one).
  function login(reason) {
    return new Promise((resolve) => {
      const box = document.getElementById("login");
      box.hidden = false;
      box.querySelector(".reason").textContent = reason || "";
      box.querySelector("form").onsubmit = (e) => {
        e.preventDefault();
        const token = box.querySelector("textarea").value.trim();
        if (!usable(token)) {
          box.querySelector(".reason").textContent = "That is not a valid, unexpired token.";
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, token);
        box.hidden = true;
        resolve(token);
      };
    });
  }

  // A page that has a login page of its own (the console: /login) goes there to sign in
  // again; the others reload and show the paste-a-token box.
  let loginUrl = null;

  function logout() {
    sessionStorage.removeItem(TOKEN_KEY);
    if (loginUrl) window.location.assign(loginUrl);
    else window.location.reload();
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: {
        Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`,
        "Content-Type": "application/json",
        ...(options.headers || {}),
      },
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) logout();
    if (!response.ok) throw new Error(body.message || `${response.status} ${response.statusText}`);
    return body;
  }

  // Every row of a paged list (the API's largest pages), up to `maxPages` of them.
  const PAGE_ROWS = 100;
  async function pages(path, maxPages = 10) {
    const rows = [];
    for (let page = 1; page <= maxPages; page += 1) {
      const body = await api(`${path}${path.includes("?") ? "&" : "?"}rowsPerPage=${PAGE_ROWS}&pageNumber=${page}`);
      rows.push(...body.data);
      if (!body.hasNextPage) break;
    }
    return rows;
  }

  function status(text, isError = false) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  // options.loginUrl: where to sign in when there is no usable token (else the box).
  async function start(main, options = {}) {
    loginUrl = options.loginUrl || null;
    let token = takeToken();
    if (!usable(token) && loginUrl) {
      sessionStorage.removeItem(TOKEN_KEY);
      window.location.assign(`${loginUrl}?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    if (!usable(token)) token = await login(token ? "The saved token has expired." : "");
    document.getElementById("logout").onclick = logout;
    try {
      await main(claims(token));
    } catch (e) {
      status(e.message, true);
    }
  }

  // The WebSocket: events as {event, id, data}. Each reconnect sends the last id seen, so
  // the server replays what was missed; "resync" (too long away, or the first connect)
  // means reload the state over REST. handlers: {event(name, data), resync()}.
  function connect(handlers) {
    let lastId = null;
    let delay = RECONNECT_MIN_MS;
    const live = document.getElementById("live");
    // A socket takes a single-use ticket, asked for with the token in the header: the
    // token itself never goes into the socket's URL.
    async function open() {
      let ticket;
      try {
        ticket = (await api("/ws-ticket", { method: "POST" })).data.ticket;
      } catch (e) {
        live.textContent = "offline";
        live.className = "live off";
        live.title = e.message;
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
        return;
      }
      const query = new URLSearchParams({ ticket });
      if (lastId) query.set("last_event_id", lastId);
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${window.location.host}/ws?${query}`);
      ws.onopen = () => {
        delay = RECONNECT_MIN_MS;
        live.textContent = "live";
        live.className = "live on";
        if (!lastId) handlers.resync(); // events from now on; the state so far over REST
      };
      ws.onmessage = (message) => {
        const msg = JSON.parse(message.data);
        if (msg.id) lastId = msg.id;
        if (msg.event === "resync") handlers.resync();
        else handlers.event(msg.event, msg.data || {});
      };
      ws.onclose = (e) => {
        live.textContent = "offline";
        live.className = "live off";
        live.title = e.reason || `closed (${e.code})`;
        if (e.code === 4401) {
          logout(); // the token expired or the account was disabled: sign in again
          return;
        }
        window.setTimeout(open, delay);
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
      };
    }
    open();
  }

  // Tiles from FIXGATE_MAP_TILES_URL when configured; else a plain background with the
  // routing extract's roads as vector lines (works offline).
  async function baseMap(element) {
    const map = L.map(element, { zoomControl: true }).setView([0, 0], 2);
    const config = (await api("/map/config")).data;
    let roads = null;
    if (config.tilesUrl) {
      L.tileLayer(config.tilesUrl, { attribution: config.attribution, maxZoom: 19 }).addTo(map);
    } else {
      element.classList.add("plain");
      if (config.hasRoads) {
        const network = (await api("/map/roads")).data;
        roads = L.geoJSON(network, {
          style: { color: "#b9c0c8", weight: 2, opacity: 0.9 },
          interactive: false,
        }).addTo(map);
        map.attributionControl.addAttribution(config.attribution);
      }
    }
    return { map, roads };
  }

  // Google's encoded polyline (precision 5) -> [[lat, lon], ...].
  function decodePolyline(encoded) {
    const points = [];
    let index = 0;
    let lat = 0;
    let lon = 0;
    while (index < encoded.length) {
      for (const axis of [0, 1]) {
        let shift = 0;
        let result = 0;
        let byte;
        do {
          byte = encoded.charCodeAt(index++) - 63;
          result |= (byte & 0x1f) << shift;
          shift += 5;
        } while (byte >= 0x20);
        const delta = result & 1 ? ~(result >> 1) : result >> 1;
        if (axis === 0) lat += delta;
        else lon += delta;
      }
      points.push([lat / 1e5, lon / 1e5]);
    }
    return points;
  }

  function distance(m) {
    if (m == null) return "–";
    return m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${Math.round(m)} m`;
  }

  function duration(s) {
    if (s == null) return "–";
    const minutes = Math.floor(s / 60);
    const seconds = Math.round(s % 60);
    return minutes >= 60
      ? `${Math.floor(minutes / 60)} h ${minutes % 60} min`
      : `${minutes} min ${String(seconds).padStart(2, "0")} s`;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  return { start, api, pages, connect, baseMap, decodePolyline, distance, duration, status, el };
})();
