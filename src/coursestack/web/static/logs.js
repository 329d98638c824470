// The log page: the last lines, then new ones as the service writes them.
"use strict";
(() => {
  const cs = window.coursestack;
  const log = document.getElementById("log");
  const follow = document.getElementById("follow");
  const service = log.dataset.service;
  const keep = 5000;
  let fresh = true;   // the first batch after (re)connecting replaces what is shown

  function add(lines) {
    const text = lines.map((line) => line + "\n").join("");
    if (fresh) { log.textContent = text; fresh = false; } else { log.append(text); }
    const all = log.textContent.split("\n");
    if (all.length > keep) { log.textContent = all.slice(-keep).join("\n"); }
    if (follow.checked) { log.scrollTop = log.scrollHeight; }
  }
  cs.stream("/api/services/" + encodeURIComponent(service) + "/logs/stream?lines=200",
            { lines: add }, () => { fresh = true; });
  log.scrollTop = log.scrollHeight;
})();
