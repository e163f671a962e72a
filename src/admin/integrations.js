// API keys (shown once), webhooks (deliveries, attempts, redeliver), the audit log with its
// filters, and the retention and quotas in force.
import { t, dateTime, duration, bytes } from "./i18n.js";
import { get, post, patch, put, del, query } from "./api.js";
import { h, field, checks, table, attempt, status, badge, pageHead, confirm, showSecret, dialog } from "./ui.js";
import { channelLabel } from "./channels.js";

const SCOPES = ["interactions:read", "admin:read", "admin:write", "webhooks:read", "webhooks:write"];
const EVENTS = ["interaction.created", "interaction.reopened", "interaction.offered", "interaction.declined",
  "interaction.offer_expired", "interaction.assigned", "interaction.transferred", "interaction.joined",
  "interaction.closed", "message.new", "message.edited", "message.deleted"];

// ------------------------------------------------------------------------------- API keys --

export async function keys(root, ctx) {
  const list = await get("/api/v1/api-keys");
  pageHead(root, t("API keys"));
  root.appendChild(h("p", { class: "muted" }, t("keys.help")));
  root.appendChild(h("section", { class: "card", "aria-label": t("API keys") }, table({
    caption: t("API keys"),
    rows: list.items,
    rowAttrs: (k) => ({ "data-key": k.id }),
    empty: t("No API keys yet."),
    columns: [
      { label: t("Name"), render: (k) => h("strong", null, k.name) },
      { label: t("Key"), render: (k) => h("code", null, k.prefix + "…") },
      { label: t("Scopes"), render: (k) => k.scopes.join(", ") },
      { label: t("Created"), render: (k) => dateTime(k.created_at) + " · " + k.created_by },
      { label: t("Last used"), render: (k) => k.last_used_at ? dateTime(k.last_used_at) : "—" },
      { label: t("State"), render: (k) => k.revoked_at ? badge(t("revoked"), "off") : badge(t("active"), "ok") },
      { label: t("Actions"), render: (k) => k.revoked_at ? "" : h("button", { type: "button", class: "small danger", onclick: async () => {
        if (await confirm(t("Revoke the key {name}? It stops working at once.", { name: k.name }), t("Revoke"))) {
          attempt(async () => { await del("/api/v1/api-keys/" + k.id); ctx.rerender(); }, t("Revoked."));
        }
      } }, t("Revoke")) },
    ],
  })));
  const name = field({ label: t("Name"), name: "kname", required: true, help: t("help.key_name") });
  const scopes = checks({ legend: t("Scopes"), name: "scopes", options: SCOPES.map((s) => [s, s + " — " + t("scope." + s)]), values: ["interactions:read"] });
  const error = h("p", { class: "error full", role: "alert" });
  const form = h("form", { class: "grid" }, ...name.cells, scopes.set, error, h("div", { class: "full" }, h("button", { type: "submit" }, t("Create the key"))));
  form.onsubmit = async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const created = await post("/api/v1/api-keys", { name: name.input.value.trim(), scopes: scopes.values() });
      await showSecret(t("The new API key"), created.key, t("Copy the key now: the hub keeps only its hash and shows it this once."));
      ctx.rerender();
    } catch (err) { error.textContent = err.message; }
  };
  root.appendChild(h("section", { class: "card", "aria-labelledby": "new-key" }, h("h2", { id: "new-key" }, t("New API key")), form));
}

// ------------------------------------------------------------------------------- webhooks --

export async function webhooks(root, ctx) {
  const list = await get("/api/v1/webhooks");
  const detail = h("div");
  pageHead(root, t("Webhooks"));
  root.appendChild(h("p", { class: "muted" }, t("webhooks.help")));
  root.appendChild(h("section", { class: "card", "aria-label": t("Webhooks") }, table({
    caption: t("Subscriptions"),
    rows: list.items,
    empty: t("No subscriptions yet."),
    columns: [
      { label: t("URL"), render: (w) => h("code", null, w.url) },
      { label: t("Events"), render: (w) => w.events.join(", ") },
      { label: t("Description"), render: (w) => w.description || "—" },
      { label: t("State"), render: (w) => w.enabled ? badge(t("on"), "ok") : badge(t("paused"), "off") },
      { label: t("Actions"), render: (w) => h("div", { class: "actions" },
        h("button", { type: "button", class: "small secondary", onclick: () => deliveries(detail, w) }, t("Deliveries")),
        h("button", { type: "button", class: "small secondary", "aria-pressed": String(w.enabled),
          onclick: () => attempt(async () => { await patch("/api/v1/webhooks/" + w.id, { enabled: !w.enabled }); ctx.rerender(); }) },
          w.enabled ? t("Pause") : t("Resume")),
        h("button", { type: "button", class: "small secondary", onclick: async () => {
          if (await confirm(t("Replace the signing secret? Deliveries sent from now on are signed with the new one."), t("Replace"))) {
            const r = await attempt(() => put("/api/v1/webhooks/" + w.id + "/secret"));
            if (r) await showSecret(t("The new signing secret"), r.secret);
          }
        } }, t("New secret")),
        h("button", { type: "button", class: "small danger", onclick: async () => {
          if (await confirm(t("Delete the subscription to {url} with its deliveries?", { url: w.url }), t("Delete"))) {
            attempt(async () => { await del("/api/v1/webhooks/" + w.id); ctx.rerender(); }, t("Deleted."));
          }
        } }, t("Delete"))) },
    ],
  })));
  root.appendChild(detail);
  const url = field({ label: t("URL"), name: "hook_url", type: "url", required: true, placeholder: "https://crm.example.com/hooks/switchboard" });
  const events = checks({ legend: t("Events"), name: "events", options: [["*", t("every event")]].concat(EVENTS.map((e) => [e, e])), values: ["*"] });
  const description = field({ label: t("Description"), name: "hook_description" });
  const error = h("p", { class: "error full", role: "alert" });
  const form = h("form", { class: "grid" }, ...url.cells, events.set, ...description.cells, error,
    h("div", { class: "full" }, h("button", { type: "submit" }, t("Subscribe"))));
  form.onsubmit = async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const created = await post("/api/v1/webhooks", { url: url.input.value.trim(), events: events.values(), description: description.input.value });
      await showSecret(t("The signing secret"), created.secret, t("Copy the secret now: the receiver checks signatures with it, and it is shown this once."));
      ctx.rerender();
    } catch (err) { error.textContent = err.message; }
  };
  root.appendChild(h("section", { class: "card", "aria-labelledby": "new-hook" }, h("h2", { id: "new-hook" }, t("New subscription")), form));
}

async function deliveries(area, hook, state) {
  area.textContent = "";
  const heading = h("h2", { id: "deliveries-title", tabindex: "-1" }, t("Deliveries to {url}", { url: hook.url }));
  const filter = field({ label: t("State"), name: "dstate", type: "select", value: state || "",
    options: [["", t("all")], ["pending", t("pending")], ["delivered", t("delivered")], ["failed", t("failed")]] });
  filter.input.addEventListener("change", () => deliveries(area, hook, filter.input.value));
  const section = h("section", { class: "card", "aria-labelledby": "deliveries-title" }, heading, h("div", { class: "grid" }, ...filter.cells));
  area.appendChild(section);
  const page = await get(`/api/v1/webhooks/${hook.id}/deliveries` + query({ state, limit: 50 }));
  section.appendChild(table({
    caption: t("Deliveries"),
    rows: page.items,
    empty: t("No deliveries."),
    columns: [
      { label: t("Event"), render: (d) => h("span", null, d.event_type, h("br"), h("code", null, d.event_id)) },
      { label: t("State"), render: (d) => badge(t(d.state), d.state === "delivered" ? "ok" : d.state === "failed" ? "bad" : "wait") },
      { label: t("Tries"), num: true, render: (d) => String(d.attempts) },
      { label: t("Last answer"), render: (d) => (d.last_status ? "HTTP " + d.last_status : "") + (d.last_error ? " " + d.last_error : "") || "—" },
      { label: t("Next try"), render: (d) => d.next_attempt_at && d.state === "pending" ? dateTime(d.next_attempt_at) : "—" },
      { label: t("Created"), render: (d) => dateTime(d.created_at) },
      { label: t("Actions"), render: (d) => h("div", { class: "actions" },
        h("button", { type: "button", class: "small secondary", onclick: () => attemptsOf(hook, d) }, t("Attempts")),
        h("button", { type: "button", class: "small", onclick: () => attempt(async () => {
          await post(`/api/v1/webhooks/${hook.id}/deliveries/${d.id}/redeliver`);
          deliveries(area, hook, state);
        }, t("Sent again.")) }, t("Redeliver"))) },
    ],
  }));
  heading.focus();
}

async function attemptsOf(hook, d) {
  const detail = await attempt(() => get(`/api/v1/webhooks/${hook.id}/deliveries/${d.id}`));
  if (!detail) return;
  await dialog(t("Attempts of {event}", { event: d.event_id }), table({
    caption: t("Attempts"),
    rows: detail.attempts,
    empty: t("Not tried yet."),
    columns: [
      { label: "#", num: true, render: (a) => String(a.attempt) },
      { label: t("When"), render: (a) => dateTime(a.attempted_at) },
      { label: t("Answer"), render: (a) => a.status_code ? "HTTP " + a.status_code : "—" },
      { label: t("Error"), render: (a) => a.error || "—" },
      { label: t("Took"), num: true, render: (a) => a.duration_ms + " ms" },
    ],
  }));
}

// ------------------------------------------------------------------------------ audit log --

export async function audit(root) {
  pageHead(root, t("Audit log"));
  root.appendChild(h("p", { class: "muted" }, t("audit.help")));
  const actor = field({ label: t("Who"), name: "actor", placeholder: "jwt:root, key:…, bootstrap" });
  const action = field({ label: t("Action"), name: "action", placeholder: "account.update" });
  const kind = field({ label: t("Object kind"), name: "target_kind", type: "select", value: "",
    options: [["", t("any")], ["account", t("account")], ["agent", t("agent")], ["queue", t("queue")], ["api_key", t("API key")],
      ["webhook", t("webhook")], ["dead_letter", t("dead letter")], ["template", t("template")]] });
  const target = field({ label: t("Object id"), name: "target_id" });
  const from = field({ label: t("From"), name: "from", type: "datetime-local" });
  const to = field({ label: t("To"), name: "to", type: "datetime-local" });
  const results = h("div");
  const form = h("form", { class: "grid card", role: "search", "aria-label": t("Filter the audit log") },
    ...actor.cells, ...action.cells, ...kind.cells, ...target.cells, ...from.cells, ...to.cells,
    h("div", { class: "full" }, h("button", { type: "submit" }, t("Show"))));
  const iso = (v) => v ? new Date(v).toISOString() : "";
  const load = async (cursor, append) => {
    const q = { actor: actor.input.value.trim(), action: action.input.value.trim(), target_kind: kind.input.value,
      target_id: target.input.value.trim(), from: iso(from.input.value), to: iso(to.input.value), limit: 50, cursor };
    const page = await attempt(() => get("/api/v1/audit" + query(q)));
    if (!page) return;
    if (!append) results.textContent = "";
    results.appendChild(table({
      caption: append ? null : t("Changes, newest first"),
      rows: page.items,
      empty: t("No change matches."),
      columns: [
        { label: t("When"), render: (r) => h("span", { class: "nowrap" }, dateTime(r.at)) },
        { label: t("Who"), render: (r) => h("code", null, r.actor) },
        { label: t("Action"), render: (r) => r.action },
        { label: t("Object"), render: (r) => h("span", null, t(r.target_kind), " ", h("code", null, r.target_id)) },
        { label: t("What changed"), render: (r) => h("code", null, JSON.stringify(r.details)) },
      ],
    }));
    if (page.next_cursor) {
      const more = h("button", { type: "button", class: "secondary", onclick: () => { more.remove(); load(page.next_cursor, true); } }, t("More"));
      results.appendChild(more);
    }
  };
  form.onsubmit = (e) => { e.preventDefault(); load(undefined, false); };
  root.append(form, h("section", { class: "card", "aria-live": "polite" }, results));
  load(undefined, false);
}

// ---------------------------------------------------------------------- retention, quotas --

export async function retention(root, ctx) {
  const s = ctx.settings;
  pageHead(root, t("Retention and quotas"));
  root.appendChild(h("p", { class: "muted" }, t("retention.help")));
  const rows = [
    [t("Files are deleted after"), s.files.retention_days ? t("{n} days", { n: s.files.retention_days }) : t("never (kept forever)"), "fileserver.retention_days"],
    [t("Retention runs every"), duration(s.files.retention_interval_s), "fileserver.retention_interval_s"],
    [t("Largest upload"), bytes(s.files.max_upload_bytes), "fileserver.max_upload_bytes"],
    [t("File links are valid for"), duration(s.files.link_ttl_s), "fileserver.link_ttl_s"],
    [t("A customer writing again within this reopens the chat"), duration(s.reopen_window_s), "connectors.reopen_window_s"],
    [t("Webhook deliveries are retried for"), duration(s.webhooks.retry_for_s), "loader.webhooks.retry_for_s"],
    [t("Video call links are valid for"), duration(s.video.link_ttl_s), "video.link_ttl_s"],
    [t("Video rooms at once"), String(s.video.max_rooms), "video.max_rooms"],
    [t("Largest API page"), String(s.max_page_size), "loader.max_page_size"],
  ];
  root.appendChild(h("section", { class: "card", "aria-label": t("Retention") }, table({
    caption: t("Retention"),
    rows,
    columns: [
      { label: t("Setting"), render: (r) => r[0] },
      { label: t("Value"), render: (r) => h("strong", null, r[1]) },
      { label: t("Configuration key"), render: (r) => h("code", null, r[2]) },
    ],
  })));
  // disk per kind of file: what it holds, its quota, its retention, the uploads refused
  const storage = h("section", { class: "card", "aria-label": t("Storage per kind of file") },
    h("h2", null, t("Storage per kind of file")), h("p", { class: "muted" }, t("storage.help")));
  root.appendChild(storage);
  const usage = await attempt(() => get("/api/v1/storage"));
  if (usage) {
    storage.appendChild(table({
      caption: t("Files by kind"),
      rows: usage.kinds,
      columns: [
        { label: t("Kind"), render: (k) => t("kind." + k.kind) },
        { label: t("Files"), num: true, render: (k) => String(k.files) },
        { label: t("Size"), num: true, render: (k) => bytes(k.bytes) },
        { label: t("Quota"), num: true, render: (k) => (k.quota_bytes ? bytes(k.quota_bytes) + " (" + k.used_pct + "%)" : t("none")) },
        { label: t("Deleted after"), num: true, render: (k) => (k.retention_days == null ? "-" : k.retention_days ? t("{n} days", { n: k.retention_days }) : t("never (kept forever)")) },
        { label: t("Refused over the quota"), num: true, render: (k) => String(k.refused) + (k.last_refused_at ? ", " + dateTime(k.last_refused_at) : "") },
      ],
    }));
  }
  const channels = Object.keys(s.limits);
  root.appendChild(h("section", { class: "card", "aria-label": t("Quotas per channel") }, h("h2", null, t("Quotas per channel")),
    h("p", { class: "muted" }, t("quotas.help")),
    table({
      caption: t("Default limits of each channel"),
      rows: channels,
      columns: [
        { label: t("Channel"), render: (c) => channelLabel(c) },
        { label: t("Messages per second"), num: true, render: (c) => rate(s.limits[c].rate) },
        { label: t("Per chat"), num: true, render: (c) => rate(s.limits[c].rate_per_chat) },
        { label: t("Text, characters"), num: true, render: (c) => String(s.limits[c].max_text_chars) },
        { label: t("Image"), num: true, render: (c) => bytes(s.limits[c].max_file_bytes.image) },
        { label: t("Video"), num: true, render: (c) => bytes(s.limits[c].max_file_bytes.video) },
        { label: t("Document"), num: true, render: (c) => bytes(s.limits[c].max_file_bytes.document) },
      ],
    })));
}

function rate(r) {
  const per = r.count * 1000 / r.per_ms;
  return per >= 1 ? String(Math.round(per * 100) / 100) : "1 / " + Math.round(r.per_ms / r.count / 1000) + " s";
}
