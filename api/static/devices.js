"use strict";
// The device registry from the browser: register a device (its token shown once), list the
// tenant's devices with when each was last seen, by which protocol, live or stale, and
// disable or enable them (admins; dispatchers read). Everything through /devices.
(() => {
  const { api, el } = fixgate;
  const REFRESH_MS = 10000;
  const $ = (id) => document.getElementById(id);
  let admin = false;

  function row(d) {
    const ids = [d.imei && `IMEI ${d.imei}`, d.traccarId && `Traccar ${d.traccarId}`, d.owntracks && `OwnTracks ${d.owntracks}`]
      .filter(Boolean).join(" · ") || "token login";
    const toggle = el("button", { type: "button", class: "small",
      "aria-label": `${d.enabled ? "Disable" : "Enable"} ${d.deviceId}`,
      onclick: () => setEnabled(d.deviceId, !d.enabled) }, d.enabled ? "Disable" : "Enable");
    toggle.disabled = !admin;
    return el("tr", { dataset: { deviceId: d.deviceId } },
      el("th", { scope: "row" }, d.deviceId),
      el("td", {}, d.kind.replace("_", " ")),
      el("td", {}, ids),
      el("td", { class: "seen" }, d.lastSeenAt ? new Date(d.lastSeenAt).toLocaleString() : "never"),
      el("td", { class: "protocol" }, d.lastProtocol || "–"),
      el("td", { class: "state" }, el("span", { class: `badge state-${d.state}` }, d.state)),
      el("td", { class: "enabled" }, d.enabled ? "yes" : "no"),
      el("td", {}, toggle));
  }

  async function load() {
    try {
      const search = $("device-search").value.trim();
      const query = new URLSearchParams({ rowsPerPage: "100", ...(search ? { search } : {}) });
      const devices = (await api(`/devices?${query}`)).data;
      $("devices").querySelector("tbody").replaceChildren(...(devices.length ? devices.map(row)
        : [el("tr", {}, el("td", { colspan: "8", class: "muted" }, "No device."))]));
      $("devices-error").textContent = "";
    } catch (e) {
      $("devices-error").textContent = e.message;
    }
  }

  async function setEnabled(deviceId, enabled) {
    try {
      const body = await api(`/devices/${encodeURIComponent(deviceId)}/${enabled ? "enable" : "disable"}`, { method: "POST" });
      fixgate.status(`${deviceId}: ${body.message}`);
      await load();
    } catch (e) {
      $("devices-error").textContent = `${deviceId}: ${e.message}`;
    }
  }

  async function register(e) {
    e.preventDefault();
    $("register-error").textContent = "";
    const value = (id) => $(id).value.trim() || null;
    const body = { deviceId: value("device-id"), kind: $("device-kind").value, imei: value("device-imei"),
      traccarId: value("device-traccar"), owntracks: value("device-owntracks") };
    try {
      if (!body.deviceId) throw new Error("Give the device an id.");
      const made = (await api("/devices", { method: "POST", body: JSON.stringify(body) })).data;
      $("token-box").hidden = false;
      $("token-device").textContent = made.deviceId;
      $("device-token").value = made.token;
      $("device-token").focus();
      $("device-token").select();
      $("register-form").reset();
      fixgate.status(`Registered ${made.deviceId}`);
      await load();
    } catch (err) {
      $("register-error").textContent = err.message;
    }
  }

  fixgate.start(async (claims) => {
    if (!["admin", "dispatcher"].includes(claims.role)) throw new Error("The device page is for admins and dispatchers.");
    admin = claims.role === "admin";
    $("who").textContent = `tenant ${claims.tenant} · ${claims.role}`;
    $("register-section").hidden = !admin; // only an admin manages devices
    $("register-form").addEventListener("submit", register);
    $("device-search").addEventListener("input", load);
    $("refresh").onclick = load;
    await load();
    window.setInterval(load, REFRESH_MS);
  }, { loginUrl: "/login" });
})();
