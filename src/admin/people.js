// Agents (roles, queues, capacity overall and per channel, display name and avatar) and queues
// (routing mode, offer timeout).
import { t, duration } from "./i18n.js";
import { get, put } from "./api.js";
import { h, field, checks, table, attempt, status, badge, pageHead } from "./ui.js";
import { CHANNELS, channelLabel } from "./channels.js";

const ROLES = ["agent", "supervisor", "admin", "bot"];
const CAPACITY_CHANNELS = ["telegram", "whatsapp", "viber", "vk", "ok", "webchat", "video"];

export async function agents(root, ctx) {
  const [list, queues] = await Promise.all([get("/api/v1/agents"), get("/api/v1/queues")]);
  const formArea = h("div");
  pageHead(root, t("Agents"),
    h("button", { type: "button", onclick: () => agentForm(formArea, null, queues.items, ctx) }, t("Add an agent")),
    h("button", { type: "button", class: "secondary", onclick: ctx.rerender }, t("Refresh")));
  root.appendChild(h("p", { class: "muted" }, t("agents.help")));
  root.appendChild(h("section", { class: "card", "aria-label": t("Agents") }, table({
    caption: t("Agents"),
    rows: list.items,
    rowAttrs: (a) => ({ "data-agent": a.login }),
    columns: [
      { label: t("Agent"), render: (a) => h("span", { class: "nowrap" },
        a.avatar_url ? h("img", { class: "avatar", src: a.avatar_url, alt: "" }) : null, h("strong", null, a.name), " ", h("span", { class: "muted" }, a.login)) },
      { label: t("Roles"), render: (a) => a.roles.map((r) => t("role." + r)).join(", ") },
      { label: t("Queues"), render: (a) => a.queues.join(", ") || "—" },
      { label: t("Capacity"), render: (a) => capacityText(a) },
      { label: t("Status"), render: (a) => badge(t(a.status), a.status === "ready" ? "ok" : a.status === "away" ? "wait" : "off") },
      { label: t("Actions"), render: (a) => h("button", { type: "button", class: "small secondary",
        onclick: () => agentForm(formArea, a, queues.items, ctx) }, t("Edit")) },
    ],
  })));
  root.appendChild(formArea);
}

function capacityText(a) {
  const per = Object.keys(a.channel_capacity || {}).map((c) => channelLabel(c) + " " + a.channel_capacity[c]);
  return h("span", { "data-capacity": "" }, String(a.max_interactions), per.length ? h("span", { class: "muted" }, " (" + per.join(", ") + ")") : null);
}

function agentForm(area, agent, queues, ctx) {
  area.textContent = "";
  const editing = !!agent;
  const heading = h("h2", { id: "agent-form-title", tabindex: "-1" }, editing ? t("Edit {name}", { name: agent.name }) : t("Add an agent"));
  const login = field({ label: t("Login"), name: "login", value: editing ? agent.login : "", required: true, help: t("help.login") });
  login.input.disabled = editing;
  const name = field({ label: t("Display name"), name: "name", value: editing ? agent.name : "", required: true, help: t("help.display_name") });
  const avatar = field({ label: t("Avatar URL"), name: "avatar_url", type: "url", value: editing ? agent.avatar_url || "" : "", help: t("help.avatar") });
  const preview = h("img", { class: "avatar", alt: "", hidden: !(editing && agent.avatar_url), src: editing && agent.avatar_url ? agent.avatar_url : null });
  avatar.input.addEventListener("change", () => { preview.hidden = !avatar.input.value; if (avatar.input.value) preview.src = avatar.input.value; });
  avatar.cells[1].appendChild(preview);
  const roles = checks({ legend: t("Roles"), name: "roles", options: ROLES.map((r) => [r, t("role." + r)]), values: editing ? agent.roles : ["agent"], help: t("help.roles") });
  const qs = checks({ legend: t("Queues"), name: "queues", options: queues.map((q) => [q.name, q.name]), values: editing ? agent.queues : [ctx.settings.default_queue] });
  const max = field({ label: t("Interactions at once"), name: "max_interactions", type: "number", min: 0, max: 100,
    value: editing ? agent.max_interactions : 3, required: true, help: t("help.max_interactions") });
  const per = {};
  const perSet = h("fieldset", { class: "full" }, h("legend", null, t("At most per channel")),
    h("p", { class: "muted" }, t("help.channel_capacity")));
  const perGrid = h("div", { class: "grid" });
  CAPACITY_CHANNELS.forEach((c) => {
    const f = field({ label: CHANNELS[c] ? t(CHANNELS[c].label) : t("Video"), name: "cap_" + c, type: "number", min: 0, max: 100,
      value: editing && agent.channel_capacity && agent.channel_capacity[c] !== undefined ? agent.channel_capacity[c] : "" });
    per[c] = f.input;
    perGrid.append(...f.cells);
  });
  perSet.appendChild(perGrid);
  const error = h("p", { class: "error full", role: "alert" });
  const form = h("form", { class: "grid" }, ...login.cells, ...name.cells, ...avatar.cells, roles.set, qs.set, ...max.cells, perSet, error,
    h("div", { class: "full actions" }, h("button", { type: "submit" }, t("Save")),
      h("button", { type: "button", class: "secondary", onclick: () => { area.textContent = ""; } }, t("Cancel"))));
  form.onsubmit = async (e) => {
    e.preventDefault();
    error.textContent = "";
    const capacity = {};
    Object.keys(per).forEach((c) => { if (per[c].value !== "") capacity[c] = Number(per[c].value); });
    const body = { name: name.input.value.trim(), avatar_url: avatar.input.value.trim() || null, roles: roles.values(),
      queues: qs.values(), max_interactions: Number(max.input.value), channel_capacity: capacity };
    try {
      await put("/api/v1/agents/" + encodeURIComponent(login.input.value.trim()), body);
      status(t("Saved."));
      area.textContent = "";
      ctx.rerender();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  area.appendChild(h("section", { class: "card", "aria-labelledby": "agent-form-title" }, heading, form));
  heading.focus();
}

export async function queues(root, ctx) {
  const list = await get("/api/v1/queues");
  const formArea = h("div");
  pageHead(root, t("Queues"),
    h("button", { type: "button", onclick: () => queueForm(formArea, null, ctx) }, t("Add a queue")));
  root.appendChild(h("p", { class: "muted" }, t("queues.help")));
  root.appendChild(h("section", { class: "card", "aria-label": t("Queues") }, table({
    caption: t("Queues"),
    rows: list.items,
    rowAttrs: (q) => ({ "data-queue": q.name }),
    columns: [
      { label: t("Name"), render: (q) => h("strong", null, q.name) },
      { label: t("Routing"), render: (q) => q.routing_mode === "auto" ? t("offered to agents (auto)") : t("agents take them (manual)") },
      { label: t("Time to accept an offer"), render: (q) => duration(q.offer_timeout_ms / 1000) },
      { label: t("Actions"), render: (q) => h("button", { type: "button", class: "small secondary", onclick: () => queueForm(formArea, q, ctx) }, t("Edit")) },
    ],
  })));
  root.appendChild(formArea);
}

function queueForm(area, queue, ctx) {
  area.textContent = "";
  const editing = !!queue;
  const heading = h("h2", { id: "queue-form-title", tabindex: "-1" }, editing ? t("Edit {name}", { name: queue.name }) : t("Add a queue"));
  const name = field({ label: t("Name"), name: "qname", value: editing ? queue.name : "", required: true, help: t("help.queue_name") });
  name.input.disabled = editing;
  const mode = field({ label: t("Routing"), name: "routing_mode", type: "select", value: editing ? queue.routing_mode : "auto",
    options: [["auto", t("offered to agents (auto)")], ["manual", t("agents take them (manual)")]] });
  const timeout = field({ label: t("Time to accept an offer, s"), name: "offer_timeout", type: "number", min: 1, max: 3600,
    value: editing ? queue.offer_timeout_ms / 1000 : 30, required: true });
  const error = h("p", { class: "error full", role: "alert" });
  const form = h("form", { class: "grid" }, ...name.cells, ...mode.cells, ...timeout.cells,
    h("p", { class: "muted full" }, t("help.greeting")), error,
    h("div", { class: "full actions" }, h("button", { type: "submit" }, t("Save")),
      h("button", { type: "button", class: "secondary", onclick: () => { area.textContent = ""; } }, t("Cancel"))));
  form.onsubmit = async (e) => {
    e.preventDefault();
    try {
      await put("/api/v1/queues/" + encodeURIComponent(name.input.value.trim()),
        { routing_mode: mode.input.value, offer_timeout_ms: Math.round(Number(timeout.input.value) * 1000) });
      status(t("Saved."));
      area.textContent = "";
      ctx.rerender();
    } catch (err) { error.textContent = err.message; }
  };
  area.appendChild(h("section", { class: "card", "aria-labelledby": "queue-form-title" }, heading, form));
  heading.focus();
}


