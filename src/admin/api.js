// The hub's REST API (docs/openapi.json) with the signed-in credential.

let credential = null;
const listeners = [];

export function setCredential(value) { credential = value; }
export function getCredential() { return credential; }
/** Called with no argument when the hub refuses the credential (401). */
export function onUnauthorized(fn) { listeners.push(fn); }

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + credential };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401) listeners.forEach((fn) => fn());
    const err = json && json.error;
    throw new ApiError(r.status, err ? err.code : "http_" + r.status, err ? err.message : text || r.statusText);
  }
  return json;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const put = (path, body) => api("PUT", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  Object.keys(params).forEach((k) => {
    const v = params[k];
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  });
  const s = q.toString();
  return s ? "?" + s : "";
}

/** Fetches a file with the credential and hands it to the browser as a download. */
export async function download(path, fallbackName) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + credential } });
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error.message; } catch (e) { /* not JSON */ }
    throw new ApiError(r.status, "download_failed", message);
  }
  const disposition = r.headers.get("content-disposition") || "";
  const m = /filename="([^"]+)"/.exec(disposition);
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = m ? m[1] : fallbackName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** /readyz: the per-account problems of the connectors' advisory check, by account id. */
export async function accountProblems() {
  const r = await fetch("/readyz");
  const body = await r.json().catch(() => ({ checks: {} }));
  const check = (body.checks || {}).connectors;
  const problems = {};
  if (check === undefined) return { problems, known: false };
  if (check !== "ok") {
    const re = /account ([0-9a-f-]{36}): /g;
    const marks = [];
    let m;
    while ((m = re.exec(check))) marks.push({ id: m[1], start: m.index, text: m.index + m[0].length });
    marks.forEach((mark, i) => {
      const end = i + 1 < marks.length ? marks[i + 1].start : check.length;
      problems[mark.id] = check.slice(mark.text, end).replace(/;\s*$/, "");
    });
  }
  return { problems, known: true };
}
