// The services page: live rows from /api/events, buttons that call the API.
"use strict";
(() => {
  const cs = window.coursestack;
  const known = new Map();   // name -> {view, receivedAt (client ms), offset (server-client s)}

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "–"; }
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60) + " s"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function size(bytes) { return bytes ? Math.round(bytes / 1048576) + " MB" : "–"; }

  function cell(row, field) { return row.querySelector('[data-field="' + field + '"]'); }

  function clocks() {
    const now = Date.now() / 1000;
    for (const [name, entry] of known) {
      const row = document.getElementById("svc-" + name);
      if (!row) { continue; }
      const view = entry.view;
      const serverNow = now + entry.offset;
      cell(row, "heartbeat").textContent = view.heartbeat && view.pid
        ? duration(serverNow - view.heartbeat) + " ago" : "–";
      cell(row, "uptime").textContent = view.uptime === null ? "–"
        : duration(view.uptime + (now - entry.receivedAt));
    }
  }

  function update(view, serverNow) {
    const row = document.getElementById("svc-" + view.name);
    if (!row) { return; }
    const now = Date.now() / 1000;
    const previous = known.get(view.name);
    known.set(view.name, { view, receivedAt: now,
                           offset: serverNow ? serverNow - now : (previous ? previous.offset : 0) });
    const state = cell(row, "state");
    state.textContent = view.state;
    state.className = "state state-" + view.state;
    cell(row, "detail").textContent = view.detail || "";
    cell(row, "port").textContent = view.port || "–";
    cell(row, "memory").textContent = size(view.memory);
    cell(row, "restarts").textContent = String(view.restarts);
    cell(row, "reason").textContent = view.reason || "";
    row.dataset.state = view.state;
  }

  function snapshot(views) { for (const view of views) { update(view, view.now); } clocks(); }

  cs.stream("/api/events", {
    snapshot: snapshot,
    tick: snapshot,
    state: (message) => {
      update(message.service, message.event.time);
      clocks();
      if (message.event.state !== message.event.previous) {
        cs.announce(message.service.name + " is now " + message.event.state);
      }
    },
  });
  window.setInterval(clocks, 1000);

  const result = document.getElementById("result");
  document.addEventListener("click", async (click) => {
    const button = click.target.closest("button.action");
    if (!button) { return; }
    const action = button.dataset.action;
    const service = button.dataset.service;
    const url = service ? "/api/services/" + encodeURIComponent(service) + "/" + action
                        : "/api/" + action;
    const label = service ? action + " " + service : "restart everything that has stopped";
    button.disabled = true;
    result.textContent = "Working: " + label + "…";
    try {
      await cs.post(url);
      result.textContent = "Done: " + label + ".";
    } catch (error) {
      result.textContent = "Could not " + label + ": " + error.message;
    } finally {
      button.disabled = false;
    }
  });

  // Course material: the same report as `coursestack update`, file by file.
  const updateButton = document.getElementById("update-content");
  const updateReport = document.getElementById("update-report");
  if (updateButton && updateReport) {
    updateButton.addEventListener("click", async () => {
      updateButton.disabled = true;
      updateReport.hidden = false;
      updateReport.textContent = "Updating the course material…";
      try {
        const report = await cs.post("/api/content/update");
        updateReport.textContent = report.lines.join("\n");
        cs.announce(report.summary);
      } catch (error) {
        updateReport.textContent = "The course material was not updated: " + error.message;
      } finally {
        updateButton.disabled = false;
      }
    });
  }
})();
