"use strict";
// Staff log in with e-mail and password; the session token goes to session storage (as a
// `#token=` link's would) and the console opens. A refusal is said in words.
(() => {
  const TOKEN_KEY = "fixgate.token"; // common.js's key: the console reads it from there
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const email = document.getElementById("email").value.trim();
    const password = document.getElementById("password").value;
    if (!email || !password) {
      error.textContent = "Enter your e-mail and your password.";
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch("/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email, password }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        error.textContent = body.message || `Login failed (${response.status})`;
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, body.data.token);
      const next = new URLSearchParams(window.location.search).get("next");
      // Only a page of this site: a login link cannot send the token elsewhere.
      window.location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/console");
    } catch (err) {
      error.textContent = `The API did not answer: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
})();
