// Shared by the field apps (/tech, /help): signing in (a one-time link's code or a token in
// the link's fragment, traded into the session the console's common.js also reads), REST
// calls that tell "no connection" from "the API said no", the service worker, ids, sound.
// An ES module; common.js (classic) provides `fixgate` (the WebSocket, the map, formats).

export const TOKEN_KEY = "fixgate.token"; // common.js's key: one session per tab

export class Offline extends Error {
  constructor(cause) {
    super("No connection");
    this.cause = cause;
  }
}

export class HttpError extends Error {
  constructor(status, body, retryAfterS) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.retryAfterS = retryAfterS;
  }
}

export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch (e) {
    return null;
  }
}

function usable(token, role) {
  const c = token && claims(token);
  return Boolean(c && c.tenant && c.role === role && (!c.exp || c.exp * 1000 > Date.now()));
}

function dropFromAddress(fragment) {
  fragment.delete("code");
  fragment.delete("token");
  const rest = fragment.toString();
  history.replaceState(null, "", window.location.pathname + window.location.search + (rest ? `#${rest}` : ""));
}

async function redeem(code) {
  let response;
  try {
    response = await fetch("/auth/redeem", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code }),
    });
  } catch (e) {
    return { reason: "No connection: open your sign-in link again when you have one." };
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) return { reason: body.message || "That sign-in link did not work." };
  sessionStorage.setItem(TOKEN_KEY, body.data.token);
  return { reason: "" };
}

// The sign-in box: paste the link (or its code, or a token) when the page was opened
// without one, or the one it was opened with is used up.
function askForLink(reason, role) {
  return new Promise((resolve) => {
    const box = document.getElementById("signin");
    box.hidden = false;
    const why = box.querySelector(".reason");
    why.textContent = reason || "";
    const input = box.querySelector("input");
    input.focus();
    box.querySelector("form").onsubmit = async (event) => {
      event.preventDefault();
      const given = input.value.trim();
      const fragment = new URLSearchParams(given.includes("#") ? given.split("#")[1] : "");
      const code = fragment.get("code") || (given.split(".").length === 3 ? null : given);
      const token = fragment.get("token") || (given.split(".").length === 3 ? given : null);
      if (token) {
        if (!usable(token, role)) {
          why.textContent = `That is not a valid, unexpired ${role}'s sign-in.`;
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, token);
      } else if (code) {
        const { reason: failed } = await redeem(code);
        if (failed) {
          why.textContent = failed;
          return;
        }
      }
      const now = sessionStorage.getItem(TOKEN_KEY);
      if (!usable(now, role)) {
        why.textContent = `This sign-in is not a ${role}'s.`;
        return;
      }
      box.hidden = true;
      resolve(now);
    };
  });
}

// The session's token: from the link's fragment (`#code=` redeemed once, or `#token=`),
// else the one this tab already holds, else asked for. The fragment never reaches a
// server and leaves the address bar at once.
export async function signIn(role) {
  // A sign-in link opened where the app is open already changes only the fragment (no new
  // page): start again with it.
  window.addEventListener("hashchange", () => {
    const again = new URLSearchParams(window.location.hash.slice(1));
    if (again.get("code") || again.get("token")) window.location.reload();
  });
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const code = fragment.get("code");
  const token = fragment.get("token");
  let reason = "";
  if (code || token) dropFromAddress(fragment);
  if (code) ({ reason } = await redeem(code.trim()));
  else if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  let current = sessionStorage.getItem(TOKEN_KEY);
  if (!usable(current, role)) {
    if (current && !reason) reason = "Your sign-in has expired: open a new sign-in link.";
    current = await askForLink(reason, role);
  }
  document.getElementById("logout").addEventListener("click", signOut);
  return claims(current);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  window.location.reload();
}

// A REST call in the API's envelope. Throws Offline when the request never got an answer
// (no connection, the server away) and HttpError for an answer that is not 2xx.
export async function call(path, { method = "GET", body, key, headers = {} } = {}) {
  const all = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`, ...headers };
  if (body !== undefined) all["Content-Type"] = "application/json";
  if (key) all["Idempotency-Key"] = key;
  let response;
  try {
    response = await fetch(path, { method, headers: all, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Offline(e);
  }
  const parsed = await response.json().catch(() => ({}));
  if (!response.ok) {
    const retry = Number(response.headers.get("Retry-After")) || null;
    throw new HttpError(response.status, parsed, retry);
  }
  return parsed;
}

// A UUID for an idempotency key: crypto.randomUUID where the page is a secure context,
// else from crypto.getRandomValues (version 4 either way).
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The app shell for offline use (api/static/field/sw.js), where the browser has service
// workers (secure contexts: https, or localhost).
export function registerWorker(app) {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register(`/${app}/sw.js`, { scope: `/${app}` }).catch((e) => {
    console.warn("service worker not registered", e);
  });
}

// Sound where the browser allows it: an AudioContext made (or resumed) on a tap first.
let audio = null;
export function unlockSound() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch (e) {
    audio = null;
  }
}

export function ringTone() {
  if (navigator.vibrate) navigator.vibrate([400, 150, 400, 150, 400]);
  if (!audio) return;
  try {
    for (const [at, hz] of [[0, 880], [0.25, 660], [0.5, 880]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      gain.gain.value = 0.25;
      osc.connect(gain).connect(audio.destination);
      osc.start(audio.currentTime + at);
      osc.stop(audio.currentTime + at + 0.2);
    }
  } catch (e) {
    // no audio output: the ring is still on the screen (and vibrating)
  }
}

export function setText(id, text) {
  document.getElementById(id).textContent = text;
}

export function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "–";
}

// Great-circle distance, metres.
export function metres(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b[0] - a[0]) * rad;
  const dLon = (b[1] - a[1]) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(h));
}

// The map (common.js's base layer: tiles, or the extract's roads); without a connection,
// a plain one, on a fresh container (Leaflet keeps the one the failed attempt took).
export async function makeMap(id) {
  const element = document.getElementById(id);
  try {
    return (await fixgate.baseMap(element)).map;
  } catch (e) {
    const fresh = element.cloneNode(false);
    fresh.className = `${element.className.split(" ").filter((c) => c && !c.startsWith("leaflet")).join(" ")} plain`;
    fresh.removeAttribute("tabindex");
    element.replaceWith(fresh);
    return L.map(fresh).setView([0, 0], 2);
  }
}
