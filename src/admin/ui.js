// Small DOM helpers: elements, form fields with labels, tables, dialogs, the status line.
import { t } from "./i18n.js";

/** h("button", {class: "small", onclick: fn, "aria-label": "..."}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    Object.keys(attrs).forEach((k) => {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k === "value") e.value = v;
      else if (k === "checked" || k === "selected" || k === "disabled" || k === "hidden" || k === "required" || k === "multiple") e[k] = !!v;
      else e.setAttribute(k, v === true ? "" : v);
    });
  }
  append(e, children);
  return e;
}

function append(e, children) {
  children.forEach((c) => {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) append(e, c);
    else e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  });
}

let uid = 0;
export function id(prefix) { uid += 1; return (prefix || "f") + "-" + uid; }

/**
 * A labelled form control for a grid form: {label, name, type, value, required, help, options,
 * placeholder, min, max, autocomplete, rows}. Returns the two grid cells and the control.
 */
export function field(spec) {
  const fid = id(spec.name);
  const helpId = spec.help ? fid + "-help" : undefined;
  let input;
  if (spec.type === "select") {
    input = h("select", { id: fid, name: spec.name, required: spec.required, "aria-describedby": helpId },
      (spec.options || []).map((o) => {
        const [value, label] = Array.isArray(o) ? o : [o, o];
        return h("option", { value, selected: String(spec.value) === String(value) }, label);
      }));
  } else if (spec.type === "textarea") {
    input = h("textarea", { id: fid, name: spec.name, rows: spec.rows || 3, required: spec.required,
      placeholder: spec.placeholder, "aria-describedby": helpId, spellcheck: "false" });
    input.value = spec.value === undefined || spec.value === null ? "" : spec.value;
  } else if (spec.type === "checkbox") {
    input = h("input", { id: fid, name: spec.name, type: "checkbox", checked: !!spec.value, "aria-describedby": helpId });
  } else {
    input = h("input", { id: fid, name: spec.name, type: spec.type || "text", required: spec.required,
      placeholder: spec.placeholder, min: spec.min, max: spec.max, step: spec.step,
      autocomplete: spec.autocomplete || (spec.type === "password" ? "new-password" : "off"),
      "aria-describedby": helpId, spellcheck: "false" });
    if (spec.value !== undefined && spec.value !== null) input.value = spec.value;
  }
  const label = h("label", { class: "lbl", for: fid }, spec.label, spec.required ? h("span", { "aria-hidden": "true" }, " *") : null);
  const control = h("div", { class: "control" }, input, spec.help ? h("span", { class: "help", id: helpId }, spec.help) : null);
  return { cells: [label, control], input };
}

/** A group of checkboxes in a fieldset: {legend, name, options: [[value, label]], values: []}. */
export function checks(spec) {
  const boxes = spec.options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    const box = h("input", { type: "checkbox", name: spec.name, value, checked: (spec.values || []).indexOf(value) >= 0 });
    return { value, box, label: h("label", null, box, label) };
  });
  const set = h("fieldset", { class: "full" }, h("legend", null, spec.legend), h("div", { class: "checks" }, boxes.map((b) => b.label)),
    spec.help ? h("p", { class: "muted" }, spec.help) : null);
  return { set, values: () => boxes.filter((b) => b.box.checked).map((b) => b.value) };
}

/**
 * A table: {caption, columns: [{label, render(row) -> node|string, num}], rows, empty}. The
 * caption names it for screen readers; columns get scope="col".
 */
export function table(spec) {
  const head = h("tr", null, spec.columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = spec.rows.length
    ? spec.rows.map((r) => h("tr", spec.rowAttrs ? spec.rowAttrs(r) : null,
      spec.columns.map((c) => h("td", { class: c.num ? "num" : null }, c.render(r)))))
    : [h("tr", null, h("td", { colspan: spec.columns.length, class: "muted" }, spec.empty || t("Nothing here yet.")))];
  return h("div", { class: "table-wrap" },
    h("table", null, spec.caption ? h("caption", null, spec.caption) : null, h("thead", null, head), h("tbody", null, body)));
}

let statusTimer = null;
/** A short message in the polite live region at the bottom. */
export function status(text, isError) {
  const s = document.getElementById("status");
  s.className = "status" + (isError ? " error" : "");
  s.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { s.textContent = ""; }, isError ? 8000 : 4000);
}

/** Runs an async action, reporting its failure in the status line. */
export async function attempt(fn, done) {
  try {
    const out = await fn();
    if (done) status(done);
    return out;
  } catch (e) {
    status(e.message || String(e), true);
    return undefined;
  }
}

/** A modal dialog; resolves with the value of the button pressed (Escape: null). */
export function dialog(title, content, buttons) {
  return new Promise((resolve) => {
    const titleId = id("dlg");
    const d = h("dialog", { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title), content,
      h("div", { class: "buttons" }, (buttons || [[t("Close"), true]]).map(([label, value, cls]) =>
        h("button", { type: "button", class: cls || (value ? null : "secondary"), onclick: () => { d.close(); resolve(value); } }, label))));
    d.addEventListener("cancel", () => resolve(null));
    d.addEventListener("close", () => setTimeout(() => d.remove(), 0));
    document.body.appendChild(d);
    d.showModal();
  });
}

export function confirm(text, yes) {
  return dialog(t("Are you sure?"), h("p", null, text), [[t("Cancel"), false], [yes || t("Yes"), true, "danger"]]);
}

/** Shows a secret the hub returns once, with a copy button. */
export function showSecret(title, secret, note) {
  const code = h("code", { class: "secret", tabindex: "0" }, secret);
  const copy = h("button", { type: "button", class: "secondary", onclick: () => copyText(secret) }, t("Copy"));
  return dialog(title, h("div", null, h("p", { class: "warn" }, note || t("Copy it now: it is shown this once.")), h("div", { class: "secret-box" }, code, copy)));
}

export function copyText(text) {
  const done = () => status(t("Copied."));
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  else fallbackCopy(text, done);
}

function fallbackCopy(text, done) {
  const ta = h("textarea", { "aria-hidden": "true" });
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
  ta.remove();
}

export function badge(text, kind) { return h("span", { class: "badge " + (kind || "") }, text); }

/** The page's heading and an optional toolbar; focuses the heading (for screen readers). */
export function pageHead(root, title, ...tools) {
  const h1 = h("h1", { tabindex: "-1" }, title);
  root.appendChild(h1);
  if (tools.length) root.appendChild(h("div", { class: "toolbar" }, tools));
  return h1;
}
