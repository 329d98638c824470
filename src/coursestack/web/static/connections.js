// The connections page: secrets stay masked until the user asks to reveal them.
"use strict";
(() => {
  const button = document.getElementById("reveal");
  let masked = null;
  button.addEventListener("click", async () => {
    const reveal = button.getAttribute("aria-pressed") !== "true";
    const response = await fetch("/api/connections?reveal=" + reveal,
                                 { credentials: "same-origin" });
    if (!response.ok) { window.coursestack.announce("Could not load the connections"); return; }
    const document_ = await response.json();
    for (const [name, service] of Object.entries(document_.services || {})) {
      for (const code of document.querySelectorAll('code[data-service="' + name + '"]')) {
        const value = code.dataset.key ? service[code.dataset.key]
                                       : (service.env || {})[code.dataset.env];
        if (value !== undefined && value !== null) { code.textContent = String(value); }
      }
    }
    masked = !reveal;
    button.setAttribute("aria-pressed", String(reveal));
    button.textContent = reveal ? "Hide secrets" : "Reveal secrets";
    window.coursestack.announce(masked ? "Secrets hidden" : "Secrets revealed");
  });
})();
