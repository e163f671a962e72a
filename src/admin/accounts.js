// Channel accounts: list with health (as /readyz reports it) and the webhook URL to give the
// platform, create and edit with the fields each channel's module needs (credentials are
// write-only), enable / disable, dead letters (replay), WhatsApp templates.
import { t, dateTime } from "./i18n.js";
import { get, post, patch, put, del, query, accountProblems } from "./api.js";
import { h, field, table, attempt, status, badge, pageHead, confirm, copyText, dialog } from "./ui.js";
import { CHANNELS, fieldsOf, shown, webhookUrl, channelLabel } from "./channels.js";

export async function render(root, ctx) {
  const [list, queues, health] = await Promise.all([
    get("/api/v1/accounts"),
    get("/api/v1/queues").catch(() => ({ items: [] })),
    accountProblems().catch(() => ({ problems: {}, known: false })),
  ]);
  const formArea = h("div");
  pageHead(root, t("Channel accounts"),
    h("button", { type: "button", onclick: () => openForm(formArea, null, queues.items, ctx) }, t("Add an account")),
    h("button", { type: "button", class: "secondary", onclick: ctx.rerender }, t("Refresh")));
  root.appendChild(h("p", { class: "muted" }, t("accounts.help")));
  const health_ = (a) => {
    if (!a.enabled) return badge(t("disabled"), "off");
    if (a.channel === "video") return badge(t("served by the video channel"), "ok");
    if (!health.known) return badge(t("unknown"), "");
    const problem = health.problems[a.id];
    if (problem) return h("span", null, badge(t("cannot be served"), "bad"), " ", h("span", { class: "muted" }, problem));
    return badge(t("ok"), "ok");
  };
  root.appendChild(h("section", { class: "card", "aria-label": t("Channel accounts") }, table({
    caption: t("Channel accounts"),
    rows: list.items,
    rowAttrs: (a) => ({ "data-account": a.id, "data-name": a.name }),
    empty: t("No account yet: add one."),
    columns: [
      { label: t("Name"), render: (a) => h("strong", null, a.name) },
      { label: t("Channel"), render: (a) => channelLabel(a.channel) },
      { label: t("Health"), render: health_ },
      { label: t("Queue"), render: (a) => a.default_queue },
      { label: t("Where messages come from"), render: (a) => endpoint(a, ctx.settings) },
      { label: t("Actions"), render: (a) => h("div", { class: "actions" },
        h("button", { type: "button", class: "small secondary", onclick: () => openForm(formArea, a, queues.items, ctx) }, t("Edit")),
        h("button", { type: "button", class: "small " + (a.enabled ? "secondary" : ""), "aria-pressed": String(a.enabled),
          onclick: () => attempt(async () => { await patch("/api/v1/accounts/" + a.id, { enabled: !a.enabled }); ctx.rerender(); },
            a.enabled ? t("Disabled.") : t("Enabled.")) },
          a.enabled ? t("Disable") : t("Enable")),
        a.channel !== "webchat" && a.channel !== "video"
          ? h("button", { type: "button", class: "small secondary", onclick: () => deadLetters(formArea, a) }, t("Dead letters")) : null,
        a.channel === "whatsapp"
          ? h("button", { type: "button", class: "small secondary", onclick: () => templates(formArea, a) }, t("Templates")) : null) },
    ],
  })));
  root.appendChild(formArea);
}

/** The webhook URL to give the platform, the widget snippet, or how the account receives. */
function endpoint(a, settings) {
  if (a.channel === "webchat") {
    const snippet = `<script src="${location.origin}/webchat/widget.js" data-key="${a.id}" async></script>`;
    return h("div", null, h("span", { class: "muted" }, t("Widget for your site:")), " ", h("code", null, snippet), " ",
      h("button", { type: "button", class: "small secondary", onclick: () => copyText(snippet) }, t("Copy")));
  }
  const url = webhookUrl(a, settings.webhook_base);
  const c = CHANNELS[a.channel];
  if (c && c.webhook(a.settings || {})) {
    if (!url) return h("span", { class: "warn" }, t("Set connectors.public_url (or the account's webhook URL): the platform needs a URL to post to."));
    return h("div", null, h("span", { class: "muted" }, t("Webhook URL for the platform:")), " ", h("code", { "data-webhook": "" }, url), " ",
      h("button", { type: "button", class: "small secondary", onclick: () => copyText(url) }, t("Copy")));
  }
  return h("span", { class: "muted" }, t("The hub polls the platform: no URL to configure."));
}

function openForm(area, account, queues, ctx) {
  area.textContent = "";
  const editing = !!account;
  const settings = Object.assign({}, editing ? account.settings : {});
  const state = { channel: editing ? account.channel : "telegram", settings };
  const section = h("section", { class: "card", "aria-labelledby": "account-form-title" });
  const title = h("h2", { id: "account-form-title", tabindex: "-1" },
    editing ? t("Edit {name}", { name: account.name }) : t("Add an account"));
  const form = h("form", { class: "grid", novalidate: false });
  section.append(title, form);
  area.appendChild(section);

  const draw = () => {
    form.textContent = "";
    const channels = Object.keys(CHANNELS).map((c) => [c, t(CHANNELS[c].label)]);
    const channel = field({ label: t("Channel"), name: "channel", type: "select", options: channels, value: state.channel, required: true });
    channel.input.disabled = editing;
    channel.input.addEventListener("change", () => { state.channel = channel.input.value; state.settings = {}; draw(); });
    const name = field({ label: t("Name"), name: "name", value: editing ? account.name : "", required: true, help: t("help.account_name") });
    const queueNames = queues.map((q) => q.name);
    const queue = field({ label: t("Default queue"), name: "default_queue", type: "select", required: true,
      options: queueNames.length ? queueNames : [ctx.settings.default_queue],
      value: editing ? account.default_queue : (queueNames.indexOf(ctx.settings.default_queue) >= 0 ? ctx.settings.default_queue : queueNames[0]) });
    form.append(...channel.cells, ...name.cells, ...queue.cells);

    const specs = fieldsOf(state.channel, state.settings);
    const inputs = {};
    // settings
    const settingsSet = h("fieldset", { class: "full" }, h("legend", null, t("Settings")));
    const settingsGrid = h("div", { class: "grid-inner" });
    specs.settings.forEach((spec) => {
      if (!shown(spec, state.settings, specs.settings)) return;
      const current = state.settings[spec.name];
      let f;
      if (spec.type === "select") {
        f = field({ label: t(spec.label), name: spec.name, type: "select", value: current === undefined ? spec.default : current,
          options: spec.options.map(([v, l]) => [v, t(l)]), help: spec.help ? t(spec.help) : undefined });
        f.input.addEventListener("change", () => { collect(); draw(); });
      } else if (spec.type === "bool") {
        f = field({ label: t(spec.label), name: spec.name, type: "checkbox", value: current === undefined ? spec.default : current });
      } else if (spec.type === "list") {
        f = field({ label: t(spec.label), name: spec.name, type: "textarea", rows: 2, value: (current || []).join("\n"),
          help: (spec.help ? t(spec.help) + " " : "") + t("One per line.") });
      } else {
        f = field({ label: t(spec.label), name: spec.name, type: spec.type === "number" ? "number" : "text", value: current,
          required: spec.required, placeholder: spec.placeholder, min: spec.min, max: spec.max,
          help: spec.help ? t(spec.help) : undefined });
      }
      inputs[spec.name] = { spec, input: f.input };
      settingsGrid.append(...f.cells);
    });
    const limits = field({ label: t("Quotas (limits)"), name: "limits", type: "textarea", rows: 2,
      value: state.settings.limits ? JSON.stringify(state.settings.limits) : "",
      placeholder: '{"rate": {"count": 20, "per_ms": 1000}}', help: t("help.limits") });
    settingsGrid.append(...limits.cells);
    settingsSet.appendChild(settingsGrid);
    settingsGrid.className = "grid";
    form.appendChild(settingsSet);

    // credentials: write-only
    const credInputs = {};
    let replace = null;
    if (specs.credentials.length) {
      const credSet = h("fieldset", { class: "full" }, h("legend", null, t("Credentials")));
      const credGrid = h("div", { class: "grid" });
      credSet.appendChild(h("p", { class: "muted" }, editing ? t("help.credentials_edit") : t("help.credentials_new")));
      if (editing) {
        const masked = Object.keys(account.credentials || {}).map((k) => k + " = " + account.credentials[k]).join(", ");
        credSet.appendChild(h("p", null, t("Stored:"), " ", h("code", null, masked || "—")));
        replace = field({ label: t("Replace the credentials"), name: "replace", type: "checkbox", value: false });
        replace.input.addEventListener("change", () => { credGrid.hidden = !replace.input.checked; });
        credSet.append(h("div", { class: "grid" }, ...replace.cells));
        credGrid.hidden = true;
      }
      specs.credentials.forEach((spec) => {
        if (!shown(spec, state.settings, specs.settings)) return;
        const f = field({ label: t(spec.label), name: "cred_" + spec.name, type: "password", required: spec.required && !editing,
          help: spec.help ? t(spec.help) : undefined });
        credInputs[spec.name] = { spec, input: f.input };
        credGrid.append(...f.cells);
      });
      credSet.appendChild(credGrid);
      form.appendChild(credSet);
    }
    const error = h("p", { class: "error full", role: "alert" });
    form.append(error, h("div", { class: "full actions" },
      h("button", { type: "submit" }, editing ? t("Save") : t("Create the account")),
      h("button", { type: "button", class: "secondary", onclick: () => { area.textContent = ""; } }, t("Cancel"))));

    function collect() {
      Object.keys(inputs).forEach((k) => {
        const { spec, input } = inputs[k];
        if (spec.type === "bool") state.settings[k] = input.checked;
        else if (spec.type === "list") {
          const items = input.value.split(/\n|,/).map((x) => x.trim()).filter(Boolean);
          if (items.length) state.settings[k] = items; else delete state.settings[k];
        } else if (spec.type === "number") {
          if (input.value === "") delete state.settings[k]; else state.settings[k] = Number(input.value);
        } else if (input.value.trim() === "") delete state.settings[k];
        else state.settings[k] = input.value.trim();
      });
    }

    form.onsubmit = async (e) => {
      e.preventDefault();
      error.textContent = "";
      collect();
      // settings that belong to fields now hidden (another mode) are dropped
      specs.settings.forEach((spec) => { if (!shown(spec, state.settings, specs.settings)) delete state.settings[spec.name]; });
      const out = Object.assign({}, state.settings);
      if (limits.input.value.trim()) {
        try { out.limits = JSON.parse(limits.input.value); } catch (err) { error.textContent = t("Quotas must be JSON."); limits.input.focus(); return; }
      } else delete out.limits;
      const credentials = {};
      Object.keys(credInputs).forEach((k) => { if (credInputs[k].input.value) credentials[k] = credInputs[k].input.value; });
      const missing = specs.credentials.filter((s) => s.required && shown(s, state.settings, specs.settings) && !credentials[s.name]);
      const replacing = !editing || (replace && replace.input.checked);
      if (replacing && missing.length) {
        error.textContent = t("Fill in: {fields}", { fields: missing.map((s) => t(s.label)).join(", ") });
        credInputs[missing[0].name].input.focus();
        return;
      }
      try {
        if (editing) {
          const body = { name: name.input.value.trim(), default_queue: queue.input.value, settings: out };
          if (replacing) body.credentials = credentials;
          await patch("/api/v1/accounts/" + account.id, body);
          status(t("Saved."));
        } else {
          const created = await post("/api/v1/accounts", { channel: state.channel, name: name.input.value.trim(),
            default_queue: queue.input.value, credentials, settings: out });
          status(t("Account {name} created; its connector starts within 30 seconds.", { name: created.name }));
        }
        area.textContent = "";
        ctx.rerender();
      } catch (err) {
        error.textContent = err.message;
      }
    };
  };
  draw();
  title.focus();
}

async function deadLetters(area, account) {
  area.textContent = "";
  const section = h("section", { class: "card", "aria-labelledby": "dl-title" });
  const heading = h("h2", { id: "dl-title", tabindex: "-1" }, t("Dead letters of {name}", { name: account.name }));
  section.append(heading, h("p", { class: "muted" }, t("help.dead_letters")));
  area.appendChild(section);
  const page = await get("/api/v1/accounts/" + account.id + "/dead-letters" + query({ limit: 50 }));
  section.appendChild(table({
    caption: t("Dead letters"),
    rows: page.items,
    empty: t("No dead letters: every update was stored."),
    columns: [
      { label: t("When"), render: (d) => dateTime(d.created_at) },
      { label: t("Update"), render: (d) => h("code", null, d.update_key) },
      { label: t("Error"), render: (d) => d.error },
      { label: t("Tries"), num: true, render: (d) => String(d.attempts) },
      { label: t("State"), render: (d) => badge(t(d.state), d.state === "replayed" ? "ok" : d.state === "parked" ? "bad" : "wait") },
      { label: t("Payload"), render: (d) => h("details", null, h("summary", null, t("{n} bytes", { n: d.payload_bytes })), h("pre", { class: "payload" }, d.payload)) },
      { label: t("Actions"), render: (d) => h("button", { type: "button", class: "small", disabled: d.state === "replay",
        onclick: () => attempt(async () => { await post("/api/v1/dead-letters/" + d.id + "/replay"); deadLetters(area, account); }, t("Replay asked: the leader replays it within 5 seconds.")) }, t("Replay")) },
    ],
  }));
  heading.focus();
}

async function templates(area, account) {
  area.textContent = "";
  const section = h("section", { class: "card", "aria-labelledby": "tpl-title" });
  const heading = h("h2", { id: "tpl-title", tabindex: "-1" }, t("WhatsApp templates of {name}", { name: account.name }));
  section.append(heading, h("p", { class: "muted" }, t("help.templates")));
  area.appendChild(section);
  const list = await get("/api/v1/accounts/" + account.id + "/templates");
  const reload = () => templates(area, account);
  section.appendChild(table({
    caption: t("Templates"),
    rows: list.items,
    empty: t("No templates yet."),
    columns: [
      { label: t("Name"), render: (x) => h("code", null, x.name) },
      { label: t("Language"), render: (x) => x.language },
      { label: t("Category"), render: (x) => x.category || "—" },
      { label: t("Text"), render: (x) => x.body },
      { label: t("Actions"), render: (x) => h("button", { type: "button", class: "small danger", onclick: async () => {
        if (await confirm(t("Remove the template {name} ({lang})?", { name: x.name, lang: x.language }), t("Remove"))) {
          attempt(async () => { await del(`/api/v1/accounts/${account.id}/templates/${encodeURIComponent(x.name)}/${encodeURIComponent(x.language)}`); reload(); }, t("Removed."));
        }
      } }, t("Remove")) },
    ],
  }));
  const name = field({ label: t("Name"), name: "tname", required: true, placeholder: "order_update" });
  const language = field({ label: t("Language"), name: "tlang", required: true, placeholder: "ru" });
  const category = field({ label: t("Category"), name: "tcat", type: "select", options: [["", "—"], ["utility", "utility"], ["marketing", "marketing"], ["authentication", "authentication"]] });
  const body = field({ label: t("Text"), name: "tbody", type: "textarea", required: true, help: t("help.template_body") });
  const form = h("form", { class: "grid" }, h("h3", { class: "full" }, t("Add or replace a template")),
    ...name.cells, ...language.cells, ...category.cells, ...body.cells,
    h("div", { class: "full" }, h("button", { type: "submit" }, t("Save the template"))));
  form.onsubmit = (e) => {
    e.preventDefault();
    const b = { body: body.input.value };
    if (category.input.value) b.category = category.input.value;
    attempt(async () => {
      await put(`/api/v1/accounts/${account.id}/templates/${encodeURIComponent(name.input.value.trim())}/${encodeURIComponent(language.input.value.trim())}`, b);
      reload();
    }, t("Saved."));
  };
  section.appendChild(form);
  heading.focus();
}


