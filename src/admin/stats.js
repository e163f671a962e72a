// Statistics: a period picker and charts of the loader's reports (GET /api/v1/stats/{report}):
// contacts per channel and queue, answered and abandoned, waiting / handling / first response
// times (median and 90th percentile), agent occupancy, video calls and their durations. Every
// chart exports its report as CSV or Excel: the same rows the chart was drawn from.
import { t, lang, duration, number, percent } from "./i18n.js";
import { get, query, download } from "./api.js";
import { h, field, attempt, pageHead } from "./ui.js";
import { chart } from "./chart.js";
import { CHANNELS, channelLabel } from "./channels.js";

const tz = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

function midnight(d) { const x = new Date(d); x.setHours(0, 0, 0, 0); return x; }
function addDays(d, n) { const x = new Date(d); x.setDate(x.getDate() + n); return x; }
function ymd(d) { return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0"); }

/** [from, to) of a preset, in the browser's time zone. */
export function periodOf(preset, fromDate, toDate) {
  const today = midnight(new Date());
  switch (preset) {
    case "yesterday": return [addDays(today, -1), today];
    case "7d": return [addDays(today, -6), addDays(today, 1)];
    case "30d": return [addDays(today, -29), addDays(today, 1)];
    case "custom": return [midnight(new Date(fromDate + "T00:00")), addDays(midnight(new Date(toDate + "T00:00")), 1)];
    default: return [today, addDays(today, 1)];
  }
}

export async function render(root, ctx) {
  pageHead(root, t("Statistics"));
  const queues = await get("/api/v1/queues").catch(() => ({ items: [] }));
  const preset = field({ label: t("Period"), name: "preset", type: "select", value: "today",
    options: [["today", t("Today")], ["yesterday", t("Yesterday")], ["7d", t("Last 7 days")], ["30d", t("Last 30 days")], ["custom", t("Dates…")]] });
  const today = ymd(new Date());
  const from = field({ label: t("From"), name: "from", type: "date", value: today });
  const to = field({ label: t("To"), name: "to", type: "date", value: today });
  const bucket = field({ label: t("Step"), name: "bucket", type: "select", value: "",
    options: [["", t("automatic")], ["hour", t("hour")], ["day", t("day")]] });
  const channel = field({ label: t("Channel"), name: "channel", type: "select", value: "",
    options: [["", t("all channels")]].concat(Object.keys(CHANNELS).map((c) => [c, t(CHANNELS[c].label)]).concat([["video", t("Video")]])) });
  const queue = field({ label: t("Queue"), name: "queue", type: "select", value: "",
    options: [["", t("all queues")]].concat(queues.items.map((q) => [q.name, q.name])) });
  const wraps = [preset, from, to, bucket, channel, queue].map((f) => h("div", { class: "pf" }, f.cells));
  const custom = () => { const on = preset.input.value === "custom"; wraps[1].hidden = !on; wraps[2].hidden = !on; };
  preset.input.addEventListener("change", custom);
  const picker = h("form", { class: "card period", "aria-label": t("Period and filters") }, ...wraps,
    h("button", { type: "submit" }, t("Show")));
  custom();
  const body = h("div", { "aria-live": "polite", "aria-busy": "false" });
  root.append(picker, body);

  const load = async () => {
    const [start, end] = periodOf(preset.input.value, from.input.value, to.input.value);
    if (!(start < end)) { body.textContent = t("The period is empty."); return; }
    const params = { from: start.toISOString(), to: end.toISOString(), tz: tz(), bucket: bucket.input.value,
      channel: channel.input.value, queue: queue.input.value };
    body.setAttribute("aria-busy", "true");
    const reports = await attempt(() => Promise.all(["volume", "times", "agents", "calls"].map((r) => get(`/api/v1/stats/${r}` + query(params)))));
    body.setAttribute("aria-busy", "false");
    if (!reports) return;
    draw(body, params, reports);
  };
  picker.onsubmit = (e) => { e.preventDefault(); load(); };
  await load();
}

function labeller(table) {
  const hourly = table.bucket === "hour";
  const long = new Date(table.to) - new Date(table.from) > 86400000;
  const f = new Intl.DateTimeFormat(lang(), hourly
    ? (long ? { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: table.tz }
      : { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: table.tz })
    : { day: "numeric", month: "short", timeZone: table.tz });
  return (iso) => f.format(new Date(iso));
}

function col(table, name) { return table.columns.findIndex((c) => c.name === name); }

/** Per bucket: the sum of `value` for each distinct `by` (rows without a bucket column: none). */
function pivot(table, by, value, label) {
  const bi = col(table, "bucket"), ki = col(table, by), vi = col(table, value);
  const keys = [...new Set(table.rows.map((r) => r[ki]))].sort();
  const index = {};
  table.buckets.forEach((b, i) => { index[new Date(b).toISOString()] = i; });
  return keys.map((k) => {
    const values = table.buckets.map(() => 0);
    table.rows.forEach((r) => { if (r[ki] === k) values[index[new Date(r[bi]).toISOString()]] += r[vi] || 0; });
    return { name: label ? label(k) : k, key: k, values };
  });
}

/** One value per bucket from a table with a row per bucket (null where no row). */
function perBucket(table, name) {
  const bi = col(table, "bucket"), vi = col(table, name);
  const byBucket = {};
  table.rows.forEach((r) => { byBucket[new Date(r[bi]).toISOString()] = r[vi]; });
  return table.buckets.map((b) => { const v = byBucket[new Date(b).toISOString()]; return v === undefined ? null : v; });
}

function exportTools(report, params) {
  const go = (format) => attempt(() => download(`/api/v1/stats/${report}` + query(Object.assign({}, params, { format })), `stats-${report}.${format}`));
  return [
    h("button", { type: "button", class: "small secondary", "data-export": report + ".csv", onclick: () => go("csv"),
      "aria-label": t("Export {what} as CSV", { what: t("report." + report) }) }, "CSV"),
    h("button", { type: "button", class: "small secondary", "data-export": report + ".xlsx", onclick: () => go("xlsx"),
      "aria-label": t("Export {what} as Excel", { what: t("report." + report) }) }, "Excel"),
  ];
}

function draw(body, params, [volume, times, agents, calls]) {
  body.textContent = "";
  const label = labeller(volume);
  const categories = volume.buckets.map(label);
  const keys = volume.buckets.map((b) => new Date(b).toISOString());
  const sum = (table, name) => table.rows.reduce((a, r) => a + (r[col(table, name)] || 0), 0);
  const contacts = sum(volume, "contacts"), answered = sum(volume, "answered"), abandoned = sum(volume, "abandoned");
  const callsTotal = sum(calls, "calls");
  body.appendChild(h("div", { class: "tiles" },
    tile(t("Contacts"), number(contacts), "contacts"), tile(t("Answered"), number(answered), "answered"),
    tile(t("Abandoned"), number(abandoned), "abandoned"),
    tile(t("Answered share"), contacts ? percent(answered / contacts) : "—", "answered-share"),
    tile(t("Video calls"), number(callsTotal), "calls")));

  const grid = h("div", { class: "charts" });
  body.appendChild(grid);
  const secs = (v) => duration(v);
  grid.appendChild(chart({ id: "volume-channel", kind: "stacked", title: t("Contacts by channel"), desc: t("desc.volume_channel"),
    categories, keys, categoryLabel: t("Time"), series: pivot(volume, "channel", "contacts", channelLabel), format: number, tools: exportTools("volume", params) }));
  grid.appendChild(chart({ id: "volume-queue", kind: "stacked", title: t("Contacts by queue"), desc: t("desc.volume_queue"),
    categories, keys, categoryLabel: t("Time"), series: pivot(volume, "queue", "contacts"), format: number, tools: exportTools("volume", params) }));
  const ans = pivot(volume, "channel", "answered").reduce((acc, x) => acc.map((v, i) => v + x.values[i]), volume.buckets.map(() => 0));
  const abd = pivot(volume, "channel", "abandoned").reduce((acc, x) => acc.map((v, i) => v + x.values[i]), volume.buckets.map(() => 0));
  grid.appendChild(chart({ id: "outcomes", kind: "bars", title: t("Answered and abandoned"), desc: t("desc.outcomes"),
    categories, keys, categoryLabel: t("Time"), format: number, tools: exportTools("volume", params),
    series: [{ name: t("Answered"), key: "answered", values: ans, color: "#2b8a3e" }, { name: t("Abandoned"), key: "abandoned", values: abd, color: "#c92a2a" }] }));
  [["wait", t("Waiting time"), "desc.wait"], ["handle", t("Handling time"), "desc.handle"], ["first_response", t("First response time"), "desc.first_response"]]
    .forEach(([k, title, desc]) => grid.appendChild(chart({ id: k.replace("_", "-"), kind: "lines", title, desc: t(desc), categories, keys,
      categoryLabel: t("Time"), format: secs, tools: exportTools("times", params),
      series: [{ name: t("median"), key: "p50", values: perBucket(times, k + "_p50_s") }, { name: t("90th percentile"), key: "p90", values: perBucket(times, k + "_p90_s"), color: "#d9480f" }] })));
  const ai = (n) => col(agents, n);
  const occ = agents.rows.map((r) => r[ai("occupancy")]);
  grid.appendChild(chart({ id: "occupancy", kind: "hbars", max: 1, title: t("Agent occupancy"), desc: t("desc.occupancy"),
    categories: agents.rows.map((r) => r[ai("name")]), categoryLabel: t("Agent"), format: (v) => percent(v),
    series: [{ name: t("Occupancy"), key: "occupancy", values: occ }], tools: exportTools("agents", params),
    emptyText: t("No agent was ready in this period.") }));
  const byQuality = pivot(calls, "quality", "calls");
  grid.appendChild(chart({ id: "calls", kind: "stacked", title: t("Video calls by quality"), desc: t("desc.calls"),
    categories, keys, categoryLabel: t("Time"), format: number, series: byQuality, tools: exportTools("calls", params),
    emptyText: t("No video call in this period.") }));
  const durations = [];
  pivot(calls, "quality", "duration_p50_s").forEach((x) => durations.push({ name: t("median, {q}", { q: x.key }), key: "p50-" + x.key, values: x.values.map((v) => v || null) }));
  grid.appendChild(chart({ id: "call-durations", kind: "lines", title: t("Call durations"), desc: t("desc.call_durations"),
    categories, keys, categoryLabel: t("Time"), format: secs, series: durations.length ? durations : [{ name: t("median"), values: [] }],
    tools: exportTools("calls", params), emptyText: t("No video call in this period.") }));
  grid.appendChild(h("section", { class: "card" }, h("h2", null, t("Survey scores")), h("p", { class: "muted" }, t("help.surveys"))));
  body.appendChild(h("section", { class: "card", "aria-label": t("Agents") }, h("h2", null, t("Agents in the period")),
    h("div", { class: "table-wrap" }, h("table", null, h("caption", null, t("Agents in the period")),
      h("thead", null, h("tr", null, [t("Agent"), t("Assignments"), t("Handling time"), t("Ready time"), t("Occupancy")].map((x, i) => h("th", { scope: "col", class: i ? "num" : null }, x)))),
      h("tbody", null, agents.rows.map((r) => h("tr", null, h("th", { scope: "row" }, r[ai("name")] + " (" + r[ai("agent")] + ")"),
        h("td", { class: "num" }, number(r[ai("handled")])), h("td", { class: "num" }, secs(r[ai("handle_s")])),
        h("td", { class: "num" }, secs(r[ai("ready_s")])), h("td", { class: "num" }, r[ai("occupancy")] === null ? "—" : percent(r[ai("occupancy")])))))))));
}

function tile(label, value, key) {
  return h("div", { class: "tile", "data-tile": key }, h("div", { class: "v" }, value), h("div", { class: "l" }, label));
}
