// The field apps' service worker, served as /tech/sw.js and /help/sw.js (scope: the app).
// It keeps the app shell (the page, its scripts, styles, icons and the map library) so the
// app opens without a connection. Network first: online, every visit gets the current
// files (and refreshes the copies); offline, the copies. Data never goes through here: the
// API's answers are not cached (the apps keep what they need in IndexedDB), and requests
// to other origins (the gateway) pass untouched. Online, the copy is checked with the server
// (a 304 when unchanged), so a new release is what the next visit runs.
const APP = new URL(self.location.href).pathname.split("/")[1];
const CACHE = `fixgate-${APP}-shell-v1`;
const SHELL = [
  `/${APP}`,
  `/${APP}/manifest.webmanifest`,
  `/static/${APP}/app.js`,
  "/static/field/field.js",
  "/static/field/field.css",
  "/static/field/icon.svg",
  "/static/field/icon-192.png",
  "/static/field/icon-512.png",
  "/static/common.js",
  "/static/vendor/leaflet/leaflet.js",
  "/static/vendor/leaflet/leaflet.css",
  "/static/vendor/idb/index.js",
];
const IN_SHELL = new Set(SHELL);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names.filter((n) => n.startsWith(`fixgate-${APP}-`) && n !== CACHE).map((n) => caches.delete(n)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !IN_SHELL.has(url.pathname)) {
    return; // the network as usual
  }
  event.respondWith(
    fetch(request, { cache: "no-cache" })
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
        }
        return response;
      })
      .catch(() =>
        caches.match(url.pathname).then((hit) => hit || Response.error()),
      ),
  );
});
