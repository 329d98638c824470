// Form fields generated from a JSON schema (pydantic's model_json_schema of the spec's
// models), and reading their values back as data: the composer's settings form.
// Every field has a label, the setting's own help text, its default as a placeholder, and
// an error slot (`<id>-error`) the composer fills with the spec loader's messages.
"use strict";
window.coursestackSchemaForm = (() => {
  function resolve(schema, root) {
    let current = schema || {};
    if (current.$ref) { current = root.$defs[current.$ref.split("/").pop()]; }
    if (current.anyOf) {
      const real = current.anyOf.find((option) => option.type !== "null") || {};
      current = { ...current, ...resolve(real, root), anyOf: undefined };
    }
    if (current.allOf && current.allOf.length === 1) {
      current = { ...current, ...resolve(current.allOf[0], root), allOf: undefined };
    }
    return current;
  }

  function fieldId(path) { return "field-" + path.join("-"); }

  function makeField(path, schema, root, value, required) {
    const spec = resolve(schema, root);
    const key = path[path.length - 1];
    const id = fieldId(path);
    const wrap = document.createElement("div");
    wrap.className = "field";
    wrap.dataset.key = path.join(".");
    if (spec.type === "object" && spec.properties) {
      const set = document.createElement("fieldset");
      const legend = document.createElement("legend");
      legend.textContent = key;
      set.append(legend);
      for (const [inner, innerSchema] of Object.entries(spec.properties)) {
        set.append(makeField([...path, inner], innerSchema, root, value ? value[inner] : undefined,
                             (spec.required || []).includes(inner)));
      }
      wrap.append(set);
      return wrap;
    }
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = key + (required ? " (required)" : "");
    let input;
    if (spec.enum || spec.type === "boolean") {
      input = document.createElement("select");
      const options = spec.enum || [true, false];
      const blank = document.createElement("option");
      blank.value = "";
      blank.textContent = "default" + (spec.default !== undefined ? " (" + spec.default + ")" : "");
      input.append(blank);
      for (const option of options) {
        const choice = document.createElement("option");
        choice.value = JSON.stringify(option);
        choice.textContent = String(option);
        input.append(choice);
      }
      input.value = value === undefined ? "" : JSON.stringify(value);
      input.dataset.type = "json";
    } else if (spec.type === "array" || spec.type === "object") {
      input = document.createElement("textarea");
      input.rows = 3;
      input.dataset.type = spec.type === "array" ? "lines" : "pairs";
      if (spec.type === "array") {
        input.value = Array.isArray(value) ? value.join("\n") : (value === undefined ? "" : String(value));
      } else {
        input.value = value && typeof value === "object"
          ? Object.entries(value).map(([k, v]) => k + "=" + v).join("\n") : "";
      }
    } else {
      input = document.createElement("input");
      input.type = spec.type === "integer" || spec.type === "number" ? "number" : "text";
      if (spec.type === "number") { input.step = "any"; }
      input.dataset.type = spec.type || "string";
      input.value = value === undefined || value === null ? "" : String(value);
      if (spec.default !== undefined && spec.default !== null && typeof spec.default !== "object") {
        input.placeholder = String(spec.default);
      }
    }
    input.id = id;
    input.name = path.join(".");
    input.dataset.path = JSON.stringify(path);
    const help = document.createElement("p");
    help.className = "field-help";
    help.id = id + "-help";
    help.textContent = (spec.description || "")
      + (input.dataset.type === "lines" ? " One per line." : "")
      + (input.dataset.type === "pairs" ? " One NAME=value per line." : "");
    const error = document.createElement("p");
    error.className = "field-error";
    error.id = id + "-error";
    input.setAttribute("aria-describedby", error.id + " " + help.id);
    wrap.append(label, input, error, help);
    return wrap;
  }

  function readInput(input) {
    const raw = input.value;
    switch (input.dataset.type) {
      case "json": return raw === "" ? undefined : JSON.parse(raw);
      case "lines": {
        const lines = raw.split("\n").map((line) => line.trim()).filter(Boolean);
        return lines.length ? lines : undefined;
      }
      case "pairs": {
        const pairs = raw.split("\n").map((line) => line.trim()).filter(Boolean);
        if (!pairs.length) { return undefined; }
        return Object.fromEntries(pairs.map((line) => {
          const at = line.indexOf("=");
          return at < 0 ? [line, ""] : [line.slice(0, at).trim(), line.slice(at + 1).trim()];
        }));
      }
      case "integer": case "number":
        if (raw.trim() === "") { return undefined; }
        return Number.isFinite(Number(raw)) ? Number(raw) : raw;
      default: return raw === "" ? undefined : raw;
    }
  }

  function setPath(target, path, value) {
    let here = target;
    for (const part of path.slice(0, -1)) {
      if (!here[part] || typeof here[part] !== "object") { here[part] = {}; }
      here = here[part];
    }
    const last = path[path.length - 1];
    if (value === undefined) { delete here[last]; } else { here[last] = value; }
    // A table left empty by the edit goes away too ("probe = {}" says nothing).
    if (path.length > 1) {
      const parent = path.slice(0, -1).reduce((node, part) => node && node[part], target);
      if (parent && typeof parent === "object" && !Object.keys(parent).length) {
        setPath(target, path.slice(0, -1), undefined);
      }
    }
  }

  return { makeField, readInput, setPath };
})();
