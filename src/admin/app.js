// The admin panel: sign-in, the sections, the language. Plain ES modules, no build step; every
// call goes to the hub's public REST API (docs/openapi.json) with the administrator's credential.
import { t, lang, setLang, applyStatic } from "./i18n.js";
import { get, setCredential, getCredential, onUnauthorized } from "./api.js";
import { h } from "./ui.js";
import * as accounts from "./accounts.js";
import * as people from "./people.js";
import * as integrations from "./integrations.js";
import * as stats from "./stats.js";

const KEY = "switchboard-admin-credential";
const $ = (id) => document.getElementById(id);

const SECTIONS = [
  ["accounts", "Channel accounts", accounts.render],
  ["agents", "Agents", people.agents],
  ["queues", "Queues", people.queues],
  ["stats", "Statistics", stats.render],
  ["keys", "API keys", integrations.keys],
  ["webhooks", "Webhooks", integrations.webhooks],
  ["audit", "Audit log", integrations.audit],
  ["retention", "Retention and quotas", integrations.retention],
];

let settings = null;
export async function hubSettings() {
  if (!settings) settings = await fetch("/admin/settings.json").then((r) => r.json());
  return settings;
}

/** The JWT's claims when the credential is a sign-on token (an API key has none). */
export function claims() {
  const c = getCredential() || "";
  if (c.startsWith("sk_")) return null;
  try {
    const part = c.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch (e) { return null; }
}

function nav() {
  const n = $("nav");
  n.textContent = "";
  SECTIONS.forEach(([key, label]) => n.appendChild(h("a", { href: "#" + key, "data-section": key }, t(label))));
  const c = claims();
  // the live view is the console's supervisor pane, on the agent socket (a sign-on token)
  const live = h("a", { href: c ? "/console#token=" + encodeURIComponent(getCredential()) + "&view=supervisor" : "/console",
    target: "_blank", rel: "noopener" }, t("Live view"));
  n.appendChild(live);
  n.hidden = false;
  mark();
}

function mark() {
  const current = section();
  document.querySelectorAll("#nav a[data-section]").forEach((a) => {
    if (a.getAttribute("data-section") === current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
}

function section() {
  const key = (location.hash || "").replace(/^#/, "").split("/")[0];
  return SECTIONS.some((s) => s[0] === key) ? key : "accounts";
}

let shown = null;
async function show(focus) {
  if (!getCredential()) return;
  const key = section();
  const entry = SECTIONS.find((s) => s[0] === key);
  const page = $("page");
  page.textContent = "";
  document.title = t(entry[1]) + " · Switchboard";
  mark();
  shown = key;
  try {
    await entry[2](page, { settings: await hubSettings(), rerender: () => show(false) });
  } catch (e) {
    page.appendChild(h("p", { class: "error", role: "alert" }, e.message || String(e)));
  }
  if (focus) {
    const heading = page.querySelector("h1");
    if (heading) heading.focus();
  }
}

async function signIn(credential) {
  setCredential(credential.trim());
  try {
    // any listing the credential may read proves it is valid; a credential without the admin
    // scopes still gets in (statistics need only interactions:read)
    await get("/api/v1/queues").catch((e) => { if (e.status !== 403) throw e; });
  } catch (e) {
    setCredential(null);
    $("signin-error").textContent = e.status === 401 ? t("The hub refused this credential.") : e.message;
    return;
  }
  try { sessionStorage.setItem(KEY, getCredential()); } catch (e) { /* storage blocked */ }
  $("signin").hidden = true;
  $("signout").hidden = false;
  const c = claims();
  $("who").textContent = c ? (c.name || c.sub) : t("API key") + " " + getCredential().slice(0, 9) + "…";
  nav();
  await show(true);
}

function signOut(message) {
  setCredential(null);
  try { sessionStorage.removeItem(KEY); } catch (e) { /* storage blocked */ }
  $("page").textContent = "";
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("credential").focus();
}

onUnauthorized(() => signOut(t("The credential expired or was revoked: sign in again.")));

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("credential").value);
});
$("signout").addEventListener("click", () => signOut(""));
$("lang").addEventListener("change", () => {
  setLang($("lang").value, true);
  applyStatic();
  if (getCredential()) { nav(); show(false); }
});
window.addEventListener("hashchange", () => show(true));

setLang(lang());
$("lang").value = lang();
applyStatic();
const fromHash = /[#&]token=([^&]+)/.exec(location.hash);
let kept = null;
try { kept = sessionStorage.getItem(KEY); } catch (e) { /* storage blocked */ }
if (fromHash) {
  // the token travels in the fragment (never sent to a server) and is dropped from the address
  const part = location.hash.replace(/^#/, "").split("&").find((p) => p && p.indexOf("=") < 0);
  history.replaceState(null, "", location.pathname + "#" + (part || "accounts"));
  signIn(decodeURIComponent(fromHash[1]));
} else if (kept) {
  signIn(kept);
} else {
  signOut("");
}
