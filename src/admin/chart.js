// Charts drawn as plain SVG (no library, nothing fetched): bars (stacked or grouped), lines and
// horizontal bars. Each chart is a <figure> with an accessible name and description, a legend,
// and its numbers as a table under "Show the numbers", so the chart reads without the picture.
// Every bar and point carries data-series, data-category and data-value (what the tests read).
import { h, id } from "./ui.js";
import { t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2f5bea", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d", "#a61e4d", "#364fc7", "#e67700"];

function s(tag, attrs, ...children) {
  const e = document.createElementNS(NS, tag);
  Object.keys(attrs || {}).forEach((k) => { if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]); });
  children.flat().forEach((c) => { if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return e;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  const n = v / p;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * p;
}

/**
 * spec: {title, desc, kind: "bars" | "stacked" | "lines" | "hbars", categories: [label],
 * series: [{name, values: [number|null], color?}], format(v) -> text, tools: [nodes], id}
 */
export function chart(spec) {
  const titleId = id("chart-title");
  const descId = id("chart-desc");
  const fmt = spec.format || ((v) => String(v));
  const series = spec.series.map((x, i) => Object.assign({ color: PALETTE[i % PALETTE.length] }, x));
  const hasData = series.some((x) => x.values.some((v) => v !== null && v !== undefined && v !== 0));
  const figure = h("figure", { class: "chart", "data-chart": spec.id || null },
    h("figcaption", null, h("h2", { id: titleId }, spec.title), spec.tools || null));
  if (!spec.categories.length || !hasData) {
    figure.appendChild(h("p", { class: "empty" }, spec.emptyText || t("No data in this period.")));
  }
  const svg = spec.kind === "hbars" ? hbars(spec, series, fmt) : vertical(spec, series, fmt);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-labelledby", titleId);
  svg.setAttribute("aria-describedby", descId);
  svg.insertBefore(s("desc", { id: descId }, spec.desc || spec.title), svg.firstChild);
  if (spec.categories.length && hasData) figure.appendChild(svg);
  figure.appendChild(h("ul", { class: "legend" }, series.map((x) =>
    h("li", null, h("span", { class: "sw", "aria-hidden": "true", style: null, "data-color": x.color }), x.name))));
  // the legend swatches get their colour without inline styles (the panel's CSP forbids them)
  figure.querySelectorAll(".legend .sw").forEach((sw) => { sw.style.background = sw.getAttribute("data-color"); });
  figure.appendChild(h("details", null, h("summary", null, t("Show the numbers")), numbers(spec, series, fmt)));
  return figure;
}

function numbers(spec, series, fmt) {
  return h("div", { class: "table-wrap" }, h("table", null,
    h("caption", null, spec.title),
    h("thead", null, h("tr", null, h("th", { scope: "col" }, spec.categoryLabel || ""), series.map((x) => h("th", { scope: "col", class: "num" }, x.name)))),
    h("tbody", null, spec.categories.map((c, i) => h("tr", null, h("th", { scope: "row" }, c),
      series.map((x) => h("td", { class: "num" }, x.values[i] === null || x.values[i] === undefined ? "—" : fmt(x.values[i]))))))));
}

function vertical(spec, series, fmt) {
  const W = 640, H = 260, L = 56, R = 12, T = 12, B = 46;
  const n = spec.categories.length;
  const plotW = W - L - R, plotH = H - T - B;
  let max = 0;
  if (spec.kind === "stacked") {
    for (let i = 0; i < n; i++) max = Math.max(max, series.reduce((a, x) => a + (x.values[i] || 0), 0));
  } else {
    series.forEach((x) => x.values.forEach((v) => { if (v > max) max = v; }));
  }
  max = niceMax(max);
  const y = (v) => T + plotH - (v / max) * plotH;
  const band = plotW / Math.max(n, 1);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMidYMid meet" });
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.appendChild(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.appendChild(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.appendChild(s("line", { class: "axis", x1: L, x2: W - R, y1: T + plotH, y2: T + plotH }));
  const every = Math.max(1, Math.ceil(n / 8));
  spec.categories.forEach((c, i) => {
    if (i % every === 0) svg.appendChild(s("text", { x: L + band * (i + 0.5), y: H - B + 16, "text-anchor": "middle" }, c));
  });
  if (spec.kind === "lines") {
    series.forEach((x) => {
      const pts = [];
      x.values.forEach((v, i) => { if (v !== null && v !== undefined) pts.push([L + band * (i + 0.5), y(v), v, i]); });
      if (pts.length > 1) svg.appendChild(s("polyline", { fill: "none", stroke: x.color, "stroke-width": 2, points: pts.map((p) => p[0] + "," + p[1]).join(" ") }));
      pts.forEach((p) => svg.appendChild(s("circle", { cx: p[0], cy: p[1], r: 3.5, fill: x.color,
        "data-series": x.name, "data-series-key": x.key, "data-category": spec.categories[p[3]],
        "data-bucket": spec.keys ? spec.keys[p[3]] : null, "data-value": p[2] },
        s("title", null, `${x.name}, ${spec.categories[p[3]]}: ${fmt(p[2])}`))));
    });
    return svg;
  }
  const gap = Math.min(8, band * 0.2);
  spec.categories.forEach((c, i) => {
    let base = 0;
    series.forEach((x, j) => {
      const v = x.values[i] || 0;
      if (!v) return;
      let bx, bw, top, bottom;
      if (spec.kind === "stacked") {
        bx = L + band * i + gap / 2; bw = band - gap; bottom = y(base); top = y(base + v); base += v;
      } else {
        bw = (band - gap) / series.length; bx = L + band * i + gap / 2 + bw * j; bottom = y(0); top = y(v);
      }
      svg.appendChild(s("rect", { x: bx, y: top, width: Math.max(bw, 1), height: Math.max(bottom - top, 0.5), fill: x.color,
        "data-series": x.name, "data-series-key": x.key, "data-category": c, "data-bucket": spec.keys ? spec.keys[i] : null,
        "data-value": v },
        s("title", null, `${x.name}, ${c}: ${fmt(v)}`)));
    });
  });
  return svg;
}

function hbars(spec, series, fmt) {
  const rowH = 26, L = 150, R = 70, T = 8;
  const n = spec.categories.length;
  const W = 640, H = T * 2 + rowH * Math.max(n, 1);
  const max = spec.max || niceMax(Math.max(0, ...series[0].values.map((v) => v || 0)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMidYMid meet" });
  const x = series[0];
  spec.categories.forEach((c, i) => {
    const v = x.values[i];
    const top = T + rowH * i;
    svg.appendChild(s("text", { x: L - 8, y: top + rowH / 2 + 4, "text-anchor": "end" }, c));
    svg.appendChild(s("rect", { x: L, y: top + 4, width: W - L - R, height: rowH - 8, fill: "#eef1f5" }));
    if (v !== null && v !== undefined) {
      svg.appendChild(s("rect", { x: L, y: top + 4, width: Math.max(((W - L - R) * v) / max, 0.5), height: rowH - 8, fill: x.color,
        "data-series": x.name, "data-category": c, "data-bucket": spec.keys ? spec.keys[i] : null, "data-value": v },
        s("title", null, `${c}: ${fmt(v)}`)));
    }
    svg.appendChild(s("text", { x: W - R + 6, y: top + rowH / 2 + 4 }, v === null || v === undefined ? "—" : fmt(v)));
  });
  return svg;
}
