// The composer: the course as boxes and arrows, edited by dragging, clicking or keyboard.
//
// The page keeps the spec as data (what the file reads as); every edit sends that data and
// the file's text to /api/spec/compose, which writes it back into the text with tomlkit
// (comments and order kept) and runs the real spec loader: its problems come back with
// their keys, and are shown on the box, next to the field, and in the list.
// Every drag has a click and keyboard equal (WCAG 2.1.1, 2.5.7): a kind's button adds it,
// a service's "Needs…" button followed by another service adds a dependency.
//
// Over 600 lines on purpose: the page's one model (the data, the selection, the link being
// made) is shared by the canvas, the form and the three ways of editing; split further,
// each part would need that state handed around. The schema-driven fields live apart
// (schema_form.js), as they know nothing of courses.
"use strict";
(() => {
  const cs = window.coursestack;
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas"), nodesBox = $("nodes"), edgesSvg = $("edges");
  const form = $("settings"), problemsList = $("problems"), statusLine = $("status");
  const ghost = $("ghost"), linkHint = $("link-hint");

  const NODE_W = 170, NODE_H = 92, GAP_X = 28, GAP_Y = 64, PAD = 16;
  // What a new service of each kind starts with: enough to be valid at once.
  const TEMPLATES = {
    command: { command: ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
               port: 8000 },
    openrefine: { start: "on-demand" },
  };
  const HIDDEN = new Set(["kind", "depends_on"]);

  const model = {
    base: "",          // the file's text when it was read (compose starts from it)
    version: "",       // its version: a save must name it
    data: null,        // the spec as data, edited here
    text: "",          // the text a save would write
    valid: false,
    problems: [],
    selected: null,    // a service's name, or null for the course settings
    linkFrom: null,    // "Needs…" pressed on this service: the next one chosen is its need
    schema: null,
  };
  let composeTimer = null, composeSeq = 0, pending = null;

  // -- talking to the daemon ---------------------------------------------------------------

  async function call(method, url, body, headers) {
    const response = await fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRF-Token": cs.csrf, ...(headers || {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
    }
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    return { status: response.status, ok: response.ok, body: payload };
  }

  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "composer-status" + (kind ? " " + kind : "");
  }

  async function load() {
    const [spec, schema] = await Promise.all([call("GET", "/api/spec"),
                                              model.schema ? null : call("GET", "/api/spec/schema")]);
    if (schema) { model.schema = schema.body; buildPalette(); }
    model.base = spec.body.text;
    model.version = spec.body.version;
    model.text = spec.body.text;
    model.data = spec.body.data;
    model.valid = spec.body.valid;
    model.problems = spec.body.problems;
    if (model.selected && !(services()[model.selected])) { model.selected = null; }
    $("conflict").hidden = true;
    drawAll();
    document.body.dataset.composer = "ready";
  }

  function scheduleCompose() {
    window.clearTimeout(composeTimer);
    pending = new Promise((resolve) => {
      composeTimer = window.setTimeout(() => { compose().then(resolve); }, 120);
    });
    document.body.dataset.composer = "checking";
  }

  async function compose() {
    const sequence = ++composeSeq;
    const answer = await call("POST", "/api/spec/compose", { base: model.base, data: model.data });
    if (sequence !== composeSeq) { return; }
    if (!answer.ok) {
      model.valid = false;
      model.problems = [{ line: 0, key: "", message: (answer.body && answer.body.detail)
                          || "cannot check the spec", hint: "" }];
    } else {
      model.text = answer.body.text;
      model.valid = answer.body.valid;
      model.problems = answer.body.problems;
    }
    drawProblems();
    drawCanvas();
    $("toml").textContent = model.text;
    document.body.dataset.composer = "ready";
  }

  async function settled() {
    while (pending) { const waiting = pending; await waiting; if (waiting === pending) { pending = null; } }
  }

  async function saveSpec() {
    await settled();
    if (model.text === model.base) { say("Nothing to save: the file already says this."); return true; }
    const answer = await call("PUT", "/api/spec", { text: model.text, version: model.version },
                              { "If-Match": '"' + model.version + '"' });
    if (answer.status === 409) {
      model.conflict = answer.body;
      $("conflict").hidden = false;
      say("Not saved: the file changed on disk. Your changes are kept.", "bad");
      return false;
    }
    if (answer.status === 400) {
      model.problems = answer.body.problems;
      model.valid = false;
      drawProblems();
      drawCanvas();
      say("Not saved: fix the problems first (" + answer.body.problems.length + ").", "bad");
      problemsList.querySelector("button")?.focus();
      return false;
    }
    if (!answer.ok) {
      say("Not saved: " + ((answer.body && answer.body.detail) || answer.status), "bad");
      return false;
    }
    model.base = model.text;
    model.version = answer.body.version;
    say("Saved " + answer.body.path + (answer.body.backup ? " (previous version kept as "
        + answer.body.backup + ")" : "") + ".", "good");
    return true;
  }

  async function runSpec() {
    if (!(await saveSpec())) { return; }
    say("Applying the course to this instance…");
    const answer = await call("POST", "/api/spec/apply");
    if (!answer.ok) {
      say("Not applied: " + ((answer.body && answer.body.detail) || answer.status), "bad");
      return;
    }
    const parts = [];
    for (const [label, names] of [["added", answer.body.added], ["removed", answer.body.removed],
                                  ["changed", answer.body.changed], ["started", answer.body.started]]) {
      if (names.length) { parts.push(label + ": " + names.join(", ")); }
    }
    say("Applied. " + (parts.length ? parts.join("; ") + "." : "Nothing changed.")
        + " The services page shows them live.", "good");
  }

  // -- the data --------------------------------------------------------------------------------

  function services() {
    if (!model.data) { return {}; }
    if (!model.data.services || typeof model.data.services !== "object") { model.data.services = {}; }
    return model.data.services;
  }

  function needs(service) {
    const deps = service && service.depends_on;
    if (Array.isArray(deps)) { return Object.fromEntries(deps.map((name) => [String(name), "ready"])); }
    if (deps && typeof deps === "object") { return { ...deps }; }
    return {};
  }

  function setNeeds(service, map) {
    const names = Object.keys(map);
    if (!names.length) { delete service.depends_on; return; }
    const allReady = names.every((name) => map[name] === "ready");
    service.depends_on = allReady && !(service.depends_on && !Array.isArray(service.depends_on))
      ? names : map;
  }

  function freeName(kind) {
    const taken = services();
    if (!taken[kind]) { return kind; }
    let number = 2;
    while (taken[kind + "-" + number]) { number += 1; }
    return kind + "-" + number;
  }

  function changed(message) {
    drawCanvas();
    scheduleCompose();
    if (message) { cs.announce(message); linkHint.textContent = message; }
  }

  function addService(kind) {
    if (!model.data) { return; }
    const name = freeName(kind);
    services()[name] = { kind, ...JSON.parse(JSON.stringify(TEMPLATES[kind] || {})) };
    model.selected = name;
    drawForm();
    changed("Added " + name + " (" + kind + ").");
    focusNode(name);
  }

  function addNeed(from, to) {
    const all = services();
    if (!all[from] || !all[to]) { return; }
    if (from === to) { changed(from + " cannot need itself."); return; }
    const map = needs(all[from]);
    if (map[to]) { changed(from + " already needs " + to + "."); return; }
    map[to] = "ready";
    setNeeds(all[from], map);
    if (model.selected === from) { drawForm(); }
    changed(from + " now needs " + to + ".");
  }

  function removeService(name) {
    const all = services();
    delete all[name];
    for (const service of Object.values(all)) {
      const map = needs(service);
      if (name in map) { delete map[name]; setNeeds(service, map); }
    }
    if (model.selected === name) { model.selected = null; }
    if (model.linkFrom === name) { model.linkFrom = null; }
    drawForm();
    changed("Removed " + name + ".");
  }

  function renameService(from, to) {
    const all = services();
    const renamed = {};
    for (const [name, service] of Object.entries(all)) { renamed[name === from ? to : name] = service; }
    for (const service of Object.values(renamed)) {
      const map = needs(service);
      if (from in map) {
        const next = {};
        for (const [name, condition] of Object.entries(map)) { next[name === from ? to : name] = condition; }
        setNeeds(service, next);
      }
    }
    model.data.services = renamed;
    model.selected = to;
    changed("Renamed " + from + " to " + to + ".");
  }

  // -- the canvas ------------------------------------------------------------------------------

  function waves() {
    const all = services();
    const names = Object.keys(all);
    const done = new Set(), rows = [];
    let left = names.slice();
    while (left.length) {
      const row = left.filter((name) => Object.keys(needs(all[name]))
        .every((dep) => done.has(dep) || !(dep in all) || dep === name));
      if (!row.length) { rows.push(left); break; }   // a cycle: the rest in one row
      rows.push(row);
      row.forEach((name) => done.add(name));
      left = left.filter((name) => !done.has(name));
    }
    return rows;
  }

  function problemsOf(name) {
    const prefix = "services." + name;
    return model.problems.filter((p) => p.key === prefix || p.key.startsWith(prefix + "."));
  }

  function drawCanvas() {
    const all = services();
    const rows = waves();
    const widest = Math.max(1, ...rows.map((row) => row.length));
    const width = Math.max(canvas.clientWidth || 0, PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X);
    const height = PAD * 2 + Math.max(1, rows.length) * NODE_H + Math.max(0, rows.length - 1) * GAP_Y;
    canvas.style.height = Math.max(height, 220) + "px";
    nodesBox.style.width = width + "px";
    edgesSvg.setAttribute("width", width);
    edgesSvg.setAttribute("height", Math.max(height, 220));
    const places = {};
    rows.forEach((row, level) => {
      const y = PAD + (rows.length - 1 - level) * (NODE_H + GAP_Y);
      const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
      const x0 = Math.max(PAD, (width - rowWidth) / 2);
      row.forEach((name, index) => { places[name] = { x: x0 + index * (NODE_W + GAP_X), y }; });
    });
    const focused = document.activeElement && document.activeElement.closest(".cnode")
      ? [document.activeElement.closest(".cnode").dataset.service, document.activeElement.className]
      : null;
    nodesBox.replaceChildren();
    for (const name of Object.keys(all)) {
      nodesBox.append(drawNode(name, all[name], places[name]));
    }
    if (!Object.keys(all).length) {
      const empty = document.createElement("p");
      empty.className = "canvas-empty";
      empty.textContent = "No services yet: drag a kind here, or press a kind's button.";
      nodesBox.append(empty);
    }
    drawEdges(all, places);
    if (focused) {
      const again = nodesBox.querySelector('.cnode[data-service="' + CSS.escape(focused[0]) + '"] .'
                                           + focused[1].split(" ")[0]);
      if (again) { again.focus(); }
    }
  }

  function drawNode(name, service, place) {
    const box = document.createElement("div");
    const problems = problemsOf(name);
    box.className = "cnode" + (model.selected === name ? " selected" : "")
      + (problems.length ? " has-problem" : "") + (model.linkFrom === name ? " linking" : "");
    box.dataset.service = name;
    box.dataset.drop = "node";
    box.setAttribute("role", "listitem");
    box.style.left = place.x + "px";
    box.style.top = place.y + "px";
    const main = document.createElement("button");
    main.type = "button";
    main.className = "cnode-main";
    main.dataset.service = name;
    const needList = Object.keys(needs(service));
    const what = name + ", " + (service.kind || "no kind") + (service.port ? ", port " + service.port : "")
      + (needList.length ? ", needs " + needList.join(" and ") : "")
      + (problems.length ? ", " + problems.length + " problem(s)" : "");
    main.setAttribute("aria-label", model.linkFrom && model.linkFrom !== name
      ? what + ": choose as what " + model.linkFrom + " needs" : what);
    main.setAttribute("aria-pressed", String(model.selected === name));
    const title = document.createElement("span");
    title.className = "cnode-name";
    title.textContent = name;
    const kind = document.createElement("span");
    kind.className = "cnode-kind";
    kind.textContent = (service.kind || "?") + (service.port ? " :" + service.port : "");
    main.append(title, kind);
    const tools = document.createElement("div");
    tools.className = "cnode-tools";
    const link = document.createElement("button");
    link.type = "button";
    link.className = "cnode-link";
    link.dataset.service = name;
    link.textContent = model.linkFrom === name ? "Cancel" : "Needs…";
    link.setAttribute("aria-label", model.linkFrom === name ? "Cancel choosing what " + name + " needs"
      : "Choose a service " + name + " needs");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "cnode-remove";
    remove.dataset.service = name;
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", "Remove " + name);
    tools.append(link, remove);
    box.append(main, tools);
    if (problems.length) {
      const note = document.createElement("p");
      note.className = "cnode-problem";
      note.textContent = problems[0].message;
      box.append(note);
    }
    return box;
  }

  function drawEdges(all, places) {
    edgesSvg.replaceChildren();
    const ns = "http://www.w3.org/2000/svg";
    const defs = document.createElementNS(ns, "defs");
    const marker = document.createElementNS(ns, "marker");
    for (const [key, value] of Object.entries({ id: "composer-arrow", viewBox: "0 0 10 10", refX: "10",
      refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" })) {
      marker.setAttribute(key, value);
    }
    const tip = document.createElementNS(ns, "path");
    tip.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
    tip.setAttribute("class", "arrow-tip");
    marker.append(tip);
    defs.append(marker);
    edgesSvg.append(defs);
    for (const [name, service] of Object.entries(all)) {
      for (const [dep, condition] of Object.entries(needs(service))) {
        if (!places[dep] || !places[name]) { continue; }
        const from = places[name], to = places[dep];
        const x1 = from.x + NODE_W / 2, x2 = to.x + NODE_W / 2;
        let y1 = from.y + NODE_H, y2 = to.y;
        if (from.y >= to.y) { y1 = from.y; y2 = to.y + NODE_H; }
        const group = document.createElementNS(ns, "g");
        group.setAttribute("class", "edge");
        group.dataset.source = name;
        group.dataset.target = dep;
        const line = document.createElementNS(ns, "line");
        for (const [key, value] of Object.entries({ x1, y1, x2, y2 })) { line.setAttribute(key, value); }
        line.setAttribute("marker-end", "url(#composer-arrow)");
        const label = document.createElementNS(ns, "text");
        label.setAttribute("x", (x1 + x2) / 2 + 6);
        label.setAttribute("y", (y1 + y2) / 2);
        label.textContent = condition;
        group.append(line, label);
        edgesSvg.append(group);
      }
    }
  }

  function focusNode(name) {
    const button = nodesBox.querySelector('.cnode[data-service="' + CSS.escape(name) + '"] .cnode-main');
    if (button) { button.focus(); }
  }

  // -- the palette -----------------------------------------------------------------------------

  function buildPalette() {
    const list = $("palette");
    list.replaceChildren();
    for (const [kind, schema] of Object.entries(model.schema.kinds)) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "kind-button";
      button.dataset.kind = kind;
      button.textContent = kind;
      button.setAttribute("aria-label", "Add a " + kind + " service");
      button.title = schema.description || kind;
      item.append(button);
      list.append(item);
    }
  }

  // -- the settings form (fields built from the kind's JSON schema: schema_form.js) ------------

  const { makeField, readInput, setPath } = window.coursestackSchemaForm;

  function drawForm() {
    form.replaceChildren();
    if (!model.data) {
      const note = document.createElement("p");
      note.textContent = "The file is not valid TOML, so it cannot be drawn: see the problems "
        + "below, fix the file in a text editor, then Reload from disk.";
      form.append(note);
      return;
    }
    const name = model.selected;
    const service = name ? services()[name] : null;
    if (!service) {
      const heading = document.createElement("h3");
      heading.textContent = "Course";
      form.append(heading);
      const root = model.schema.course;
      for (const [key, schema] of Object.entries(root.properties)) {
        form.append(makeField(["course", key], schema, root,
                              (model.data.course || {})[key], (root.required || []).includes(key)));
      }
      drawProblems();
      return;
    }
    const heading = document.createElement("h3");
    heading.textContent = name;
    form.append(heading);
    const nameField = document.createElement("div");
    nameField.className = "field";
    nameField.dataset.key = "services." + name;
    nameField.innerHTML = '<label for="field-name">name</label><input id="field-name" type="text" '
      + 'aria-describedby="field-name-error"><p class="field-error" id="field-name-error"></p>';
    nameField.querySelector("input").value = name;
    form.append(nameField);
    const kindField = document.createElement("div");
    kindField.className = "field";
    kindField.dataset.key = "services." + name + ".kind";
    kindField.innerHTML = '<label for="field-kind">kind</label><select id="field-kind" '
      + 'aria-describedby="field-kind-error"></select><p class="field-error" id="field-kind-error"></p>';
    const kindSelect = kindField.querySelector("select");
    const kinds = Object.keys(model.schema.kinds);
    if (!kinds.includes(service.kind)) { kinds.unshift(String(service.kind)); }
    for (const kind of kinds) {
      const option = document.createElement("option");
      option.value = kind;
      option.textContent = kind;
      kindSelect.append(option);
    }
    kindSelect.value = service.kind;
    form.append(kindField);
    form.append(drawNeeds(name, service));
    const root = model.schema.kinds[service.kind];
    if (root) {
      for (const [key, schema] of Object.entries(root.properties)) {
        if (HIDDEN.has(key)) { continue; }
        form.append(makeField(["services", name, key], schema, root, service[key],
                              (root.required || []).includes(key)));
      }
    }
    drawProblems();
  }

  function drawNeeds(name, service) {
    const set = document.createElement("fieldset");
    set.className = "field needs";
    set.dataset.key = "services." + name + ".depends_on";
    const legend = document.createElement("legend");
    legend.textContent = "depends_on: what " + name + " needs";
    set.append(legend);
    const list = document.createElement("ul");
    for (const [dep, condition] of Object.entries(needs(service))) {
      const item = document.createElement("li");
      const label = document.createElement("label");
      label.textContent = dep + " must be ";
      const select = document.createElement("select");
      select.className = "need-condition";
      select.dataset.dep = dep;
      for (const option of model.schema.conditions) {
        const choice = document.createElement("option");
        choice.value = option;
        choice.textContent = option;
        select.append(choice);
      }
      select.value = condition;
      label.append(select);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "need-remove";
      remove.dataset.dep = dep;
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", name + " no longer needs " + dep);
      item.append(label, " ", remove);
      list.append(item);
    }
    set.append(list);
    const others = Object.keys(services()).filter((other) => other !== name && !(other in needs(service)));
    if (others.length) {
      const add = document.createElement("div");
      add.className = "toolbar";
      add.innerHTML = '<label for="need-new">Needs also</label><select id="need-new"></select>'
        + '<button type="button" id="need-add">Add</button>';
      const select = add.querySelector("select");
      for (const other of others) {
        const option = document.createElement("option");
        option.value = other;
        option.textContent = other;
        select.append(option);
      }
      set.append(add);
    }
    const error = document.createElement("p");
    error.className = "field-error";
    error.id = "field-depends_on-error";
    set.append(error);
    return set;
  }

  function drawProblems() {
    problemsList.replaceChildren();
    for (const field of form.querySelectorAll(".field-error")) {
      if (!field.dataset.local) { field.textContent = ""; }
    }
    for (const field of form.querySelectorAll("[aria-invalid]")) { field.removeAttribute("aria-invalid"); }
    if (!model.problems.length) {
      const item = document.createElement("li");
      item.className = "no-problems";
      item.textContent = model.valid ? "None: the spec is valid." : "Checking…";
      problemsList.append(item);
    }
    for (const problem of model.problems) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "problem link";
      button.dataset.key = problem.key;
      button.textContent = (problem.line ? "line " + problem.line + ": " : "")
        + (problem.key ? problem.key + ": " : "") + problem.message;
      item.append(button);
      if (problem.hint) {
        const hint = document.createElement("span");
        hint.className = "problem-hint";
        hint.textContent = " — " + problem.hint;
        item.append(hint);
      }
      problemsList.append(item);
      const holder = fieldFor(problem.key);
      if (holder) {
        const error = holder.querySelector(".field-error");
        if (error) { error.textContent = (error.textContent ? error.textContent + " " : "") + problem.message; }
        const input = holder.querySelector("input, select, textarea");
        if (input) { input.setAttribute("aria-invalid", "true"); }
      }
    }
  }

  function fieldFor(key) {
    if (!key) { return null; }
    const parts = key.split(".");
    while (parts.length) {
      const found = form.querySelector('.field[data-key="' + CSS.escape(parts.join(".")) + '"]');
      if (found) { return found; }
      parts.pop();
    }
    return null;
  }

  function showProblem(key) {
    const parts = key.split(".");
    if (parts[0] === "services" && parts[1] && services()[parts[1]]) {
      if (model.selected !== parts[1]) { model.selected = parts[1]; drawCanvas(); drawForm(); }
    } else if (parts[0] === "course" && model.selected) {
      model.selected = null; drawCanvas(); drawForm();
    }
    const holder = fieldFor(key);
    const input = holder && holder.querySelector("input, select, textarea");
    if (input) { input.focus(); }
  }

  function drawAll() { drawCanvas(); drawForm(); drawProblems(); $("toml").textContent = model.text; }

  // -- events: form -----------------------------------------------------------------------------

  form.addEventListener("input", (event) => {
    const input = event.target;
    if (!input.dataset.path) { return; }
    setPath(model.data, JSON.parse(input.dataset.path), readInput(input));
    changed();
  });
  form.addEventListener("change", (event) => {
    const target = event.target;
    const name = model.selected;
    if (target.id === "field-name") {
      const wanted = target.value.trim();
      const error = $("field-name-error");
      error.dataset.local = "";
      if (wanted === name) { error.textContent = ""; return; }
      if (services()[wanted]) {
        error.textContent = "A service named " + wanted + " already exists: choose another name.";
        error.dataset.local = "true";
        target.setAttribute("aria-invalid", "true");
        target.value = name;
        cs.announce(error.textContent);
        return;
      }
      renameService(name, wanted);
      drawForm();
      $("field-name").focus();
    } else if (target.id === "field-kind") {
      services()[name].kind = target.value;
      drawForm();
      changed();
      $("field-kind").focus();
    } else if (target.classList.contains("need-condition")) {
      const map = needs(services()[name]);
      map[target.dataset.dep] = target.value;
      setNeeds(services()[name], map);
      changed();
    }
  });
  form.addEventListener("click", (event) => {
    const name = model.selected;
    const remove = event.target.closest(".need-remove");
    if (remove) {
      const map = needs(services()[name]);
      delete map[remove.dataset.dep];
      setNeeds(services()[name], map);
      drawForm();
      changed(name + " no longer needs " + remove.dataset.dep + ".");
      form.querySelector(".needs button, .needs select")?.focus();
    }
    if (event.target.id === "need-add") {
      addNeed(name, $("need-new").value);
      $("need-add")?.focus();
    }
  });
  form.addEventListener("submit", (event) => event.preventDefault());

  // -- events: clicks and keys on the canvas and the palette --------------------------------------

  let suppressClick = 0;
  document.addEventListener("click", (event) => {
    if (Date.now() < suppressClick) { event.preventDefault(); return; }
    const kindButton = event.target.closest(".kind-button");
    if (kindButton) { addService(kindButton.dataset.kind); return; }
    const main = event.target.closest(".cnode-main");
    if (main) {
      const name = main.dataset.service;
      if (model.linkFrom && model.linkFrom !== name) {
        const from = model.linkFrom;
        model.linkFrom = null;
        addNeed(from, name);
        focusNode(from);
        return;
      }
      model.selected = name;
      drawCanvas();
      drawForm();
      focusNode(name);
      linkHint.textContent = "Settings of " + name + " are on the right.";
      return;
    }
    const link = event.target.closest(".cnode-link");
    if (link) {
      const name = link.dataset.service;
      model.linkFrom = model.linkFrom === name ? null : name;
      drawCanvas();
      const message = model.linkFrom ? "Now choose the service " + name + " needs (Escape cancels)."
        : "Cancelled.";
      linkHint.textContent = message;
      cs.announce(message);
      const next = model.linkFrom && nodesBox.querySelector('.cnode:not([data-service="'
        + CSS.escape(name) + '"]) .cnode-main');
      if (next) { next.focus(); } else { focusNode(name); }
      return;
    }
    const remove = event.target.closest(".cnode-remove");
    if (remove) { removeService(remove.dataset.service); return; }
    const problem = event.target.closest("button.problem");
    if (problem) { showProblem(problem.dataset.key); }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && model.linkFrom) {
      const name = model.linkFrom;
      model.linkFrom = null;
      drawCanvas();
      focusNode(name);
      linkHint.textContent = "Cancelled.";
    }
  });

  // -- dragging (pointer events: mouse, pen and touch alike) ------------------------------------

  let drag = null;
  const THRESHOLD = 5;

  document.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) { return; }
    const kindButton = event.target.closest(".kind-button");
    const main = event.target.closest(".cnode-main");
    if (!kindButton && !main) { return; }
    drag = { kind: kindButton ? kindButton.dataset.kind : null,
             from: main ? main.dataset.service : null,
             x: event.clientX, y: event.clientY, moved: false };
  });
  document.addEventListener("pointermove", (event) => {
    if (!drag) { return; }
    if (!drag.moved && Math.hypot(event.clientX - drag.x, event.clientY - drag.y) < THRESHOLD) { return; }
    drag.moved = true;
    ghost.hidden = false;
    ghost.textContent = drag.kind ? "New " + drag.kind : drag.from + " needs…";
    ghost.style.left = event.clientX + 12 + "px";
    ghost.style.top = event.clientY + 12 + "px";
    event.preventDefault();
  });
  document.addEventListener("pointerup", (event) => {
    if (!drag) { return; }
    const current = drag;
    drag = null;
    ghost.hidden = true;
    if (!current.moved) { return; }
    suppressClick = Date.now() + 300;
    const under = document.elementFromPoint(event.clientX, event.clientY);
    const node = under && under.closest(".cnode");
    if (current.kind && under && under.closest("#canvas")) {
      addService(current.kind);
    } else if (current.from && node && node.dataset.service !== current.from) {
      addNeed(current.from, node.dataset.service);
    }
  });
  document.addEventListener("pointercancel", () => { drag = null; ghost.hidden = true; });

  // -- the toolbar ------------------------------------------------------------------------------

  $("save").addEventListener("click", () => { saveSpec(); });
  $("run").addEventListener("click", () => { runSpec(); });
  $("reload").addEventListener("click", async () => { await load(); say("Loaded the file from disk."); });
  $("empty").addEventListener("click", () => {
    if (!model.data) { return; }
    model.data.services = {};
    model.selected = null;
    drawForm();
    changed("All services removed (nothing is saved until you press Save).");
  });
  $("overwrite").addEventListener("click", async () => {
    // Put this page's data onto the file as it is now: its comments and order are kept.
    model.base = model.conflict.text;
    model.version = model.conflict.version;
    $("conflict").hidden = true;
    scheduleCompose();
    await saveSpec();
  });
  $("discard").addEventListener("click", async () => { await load(); say("Loaded the new file."); });

  // Nothing lost by accident: leaving with unsaved changes asks first.
  window.addEventListener("beforeunload", (event) => {
    if (model.data && model.text !== model.base) { event.preventDefault(); event.returnValue = ""; }
  });

  load().catch((error) => say("Could not load the course spec: " + error.message, "bad"));
})();
