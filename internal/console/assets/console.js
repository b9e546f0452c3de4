// Sluice operator console. The page works without this script; with it,
// <main id="main"> is refreshed once a second from the same path (the
// server answers X-Sluice-Partial: 1 with main's inner HTML alone), and
// the rollout buttons are sent with fetch so the page can show the answer.
"use strict";
(function () {
  const main = document.getElementById("main");
  const flash = document.getElementById("flash");
  if (!main) {
    return;
  }
  let latest = 0;   // the newest refresh asked for; an older answer is dropped
  let inFlight = false;

  function swap(html) {
    // Keep each table's horizontal scroll across the swap (phones).
    const scrolled = Array.from(main.querySelectorAll(".scroll"), (el) => el.scrollLeft);
    main.innerHTML = html;
    main.querySelectorAll(".scroll").forEach((el, i) => {
      if (scrolled[i]) {
        el.scrollLeft = scrolled[i];
      }
    });
  }

  function refresh() {
    const mine = ++latest;
    inFlight = true;
    return fetch(location.pathname, {
      headers: { "X-Sluice-Partial": "1" },
      credentials: "same-origin",
      cache: "no-store",
      signal: AbortSignal.timeout(5000), // a hung request must not stop the refreshing
    })
      .then((resp) => (resp.ok ? resp.text() : null))
      .then((html) => {
        if (html !== null && mine === latest) {
          swap(html);
        }
      })
      .catch(() => {
        // The gateway restarting, a network blip: keep the page as it is
        // and try again at the next tick.
      })
      .finally(() => {
        if (mine === latest) {
          inFlight = false;
        }
      });
  }

  function say(kind, text) {
    if (!flash) {
      return;
    }
    flash.className = kind;
    flash.textContent = text;
  }

  // The buttons are forms, and main is replaced every second: listen on
  // the document for any form.act submitted.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("act")) {
      return;
    }
    event.preventDefault();
    const button = form.querySelector("button");
    const route = button ? button.dataset.route : "";
    const action = button ? button.dataset.action : "action";
    fetch(form.action, { method: "POST", credentials: "same-origin" })
      .then((resp) => resp.json().catch(() => ({})).then((body) => ({ resp, body })))
      .then(({ resp, body }) => {
        if (resp.ok) {
          const state = body.rollout && body.rollout.state;
          say("ok", route + ": " + action + " → " + (state || "done"));
        } else {
          // The API's own words: a 409 says why the state does not allow it.
          const message = body.error && body.error.message;
          say("error", route + ": " + (message || action + ": HTTP " + resp.status));
        }
      })
      .catch((err) => say("error", route + ": " + action + ": " + err.message))
      .then(refresh);
  });

  setInterval(() => {
    if (!inFlight && !document.hidden) {
      refresh();
    }
  }, 1000);
})();
