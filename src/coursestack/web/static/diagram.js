// The live course picture on the services page: the daemon's SVG (/diagram.svg), each
// service's box coloured by its state from /api/events; a box links to the service's row.
"use strict";
// Runs after every deferred script (common.js comes after this one in the page).
document.addEventListener("DOMContentLoaded", () => {
  const cs = window.coursestack;
  const holder = document.getElementById("diagram");
  if (!holder) { return; }
  const states = new Map();   // service name -> state
  let drawn = new Set();      // services in the current picture
  let loading = null;

  function paint(name) {
    const node = holder.querySelector('g.node[data-service="' + CSS.escape(name) + '"]');
    if (!node) { return; }
    const state = states.get(name) || "stopped";
    node.setAttribute("class", node.getAttribute("class").replace(/\s*state-\S+/g, "")
                      + " state-" + state);
    const label = node.querySelector(".node-state");
    if (label) { label.textContent = state; }
    const link = node.closest("a");
    if (link) {
      link.setAttribute("aria-label", name + ", " + node.dataset.kind + ", " + state
                        + ": go to its row");
    }
  }

  async function load() {
    const response = await fetch(holder.dataset.src, { credentials: "same-origin" });
    if (!response.ok) { return; }
    // Our own daemon's SVG: every text in it is escaped on the server.
    holder.innerHTML = await response.text();
    drawn = new Set(Array.from(holder.querySelectorAll("g.node[data-service]"))
      .map((node) => node.dataset.service).filter((name) => name !== "front-door"));
    for (const name of drawn) { paint(name); }
    holder.dataset.ready = "true";
  }

  function reload() {
    if (!loading) { loading = load().finally(() => { loading = null; }); }
    return loading;
  }

  function sameServices(names) {
    return names.length === drawn.size && names.every((name) => drawn.has(name));
  }

  function snapshot(views) {
    for (const view of views) { states.set(view.name, view.state); }
    if (!sameServices(views.map((view) => view.name))) { reload(); return; }
    for (const view of views) { paint(view.name); }
  }

  // A box is a link to "#svc-NAME": bring its row into view and put focus on it.
  holder.addEventListener("click", (click) => {
    const link = click.target.closest("a.node-link");
    if (!link) { return; }
    const row = document.querySelector(link.getAttribute("href"));
    if (!row) { return; }
    click.preventDefault();
    history.replaceState(null, "", link.getAttribute("href"));
    row.scrollIntoView({ block: "center" });
    row.classList.add("picked");
    window.setTimeout(() => row.classList.remove("picked"), 2000);
    const first = row.querySelector("button, a");
    if (first) { first.focus(); }
  });

  reload();
  cs.stream("/api/events", {
    snapshot: snapshot,
    tick: snapshot,
    state: (message) => {
      states.set(message.service.name, message.service.state);
      if (!drawn.has(message.service.name)) { reload(); } else { paint(message.service.name); }
    },
  });
});
