// Shared by the dashboard pages: the CSRF token, messages for screen readers,
// and an EventSource that comes back after the daemon restarts.
"use strict";
window.coursestack = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const announcer = document.getElementById("announcer");
  const banner = document.getElementById("connection");

  function announce(text) {
    announcer.textContent = "";
    window.setTimeout(() => { announcer.textContent = text; }, 50);
  }

  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = !text;
  }

  async function post(url) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
    });
    if (response.status === 401) { window.location.assign("/login?next=" +
      encodeURIComponent(window.location.pathname)); }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.detail) || ("the daemon answered " + response.status));
    }
    return body;
  }

  // EventSource reconnects by itself after a dropped connection, but gives up after an
  // HTTP error (the daemon restarting can answer 502 through a proxy): then we retry.
  function stream(url, handlers, onOpen) {
    let source = null;
    let delay = 500;
    function connect() {
      source = new EventSource(url);
      source.onopen = () => { delay = 500; showBanner(""); if (onOpen) { onOpen(); } };
      for (const [name, handler] of Object.entries(handlers)) {
        source.addEventListener(name, (message) => handler(JSON.parse(message.data)));
      }
      source.onerror = () => {
        showBanner("Connection to the daemon lost; reconnecting…");
        if (source.readyState === EventSource.CLOSED) {
          fetch("/api/session", { credentials: "same-origin" }).then((r) => {
            if (r.status === 401) { window.location.assign("/login"); }
          }).catch(() => {});
          window.setTimeout(connect, delay);
          delay = Math.min(delay * 2, 5000);
        }
      };
    }
    connect();
    return () => source && source.close();
  }

  return { csrf, announce, post, stream, showBanner };
})();
