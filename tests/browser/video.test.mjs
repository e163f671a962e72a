// Video calls in headless Chromium (playwright-core, /usr/bin/chromium with fake camera,
// microphone and screen): the customer page and the agent panel meet through the hub's SFU.
// Started by run.sh, which passes BASE, WIDGET_URL, ALICE_URL, BOB_URL and SCREENSHOTS.
//
// Bob (agent) accepts a web chat and starts a 480p room over REST; the customer opens the link
// the widget received; the agent panel joins with #token=; Alice (agent+supervisor) joins as the
// supervisor through an iframe embedded in another origin, her token given by postMessage.
import assert from "node:assert/strict";
import http from "node:http";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const { BASE, WIDGET_URL, ALICE_URL, BOB_URL, ADMIN_URL, SMSC_CONTROL, SCREENSHOTS } = process.env;
for (const [k, v] of Object.entries({ BASE, WIDGET_URL, ALICE_URL, BOB_URL })) {
  if (!v) throw new Error(`${k} is not set: run tests/browser/run.sh`);
}
mkdirSync(SCREENSHOTS, { recursive: true });
const T = 20_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const CAP = { label: "480p", width: 854, height: 480 };
const tokenOf = (url) => decodeURIComponent(/#token=([^&]+)/.exec(url)[1]);
const BOB_TOKEN = tokenOf(BOB_URL);
const ALICE_TOKEN = tokenOf(ALICE_URL);
// the embedding CRM: a page of another origin than the hub (localhost and another port), served
// from loopback too (Chromium's local network access checks block a public page framing a
// loopback one), both secure contexts
let crmPage = "";
// the CRM's webhook receiver (POST /hook), on the same server
const hooks = [];
const crmServer = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/hook") {
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => { hooks.push(JSON.parse(body)); res.writeHead(200); res.end(); });
    return;
  }
  res.writeHead(req.url === "/crm" ? 200 : 404, { "Content-Type": "text/html; charset=utf-8" });
  res.end(req.url === "/crm" ? crmPage : "not found");
});
await new Promise((resolve) => crmServer.listen(0, "127.0.0.1", resolve));
const CRM = `http://localhost:${crmServer.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         // fake camera (a moving test pattern), microphone (a beep) and screen, no permission prompts
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"],
});

let passed = 0;
const failures = [];
async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures.push(name);
    console.log(`not ok - ${name}\n  ${String(e.stack || e).split("\n").slice(0, 8).join("\n  ")}`);
    throw e;
  }
}

async function newPage(viewport, extra = {}) {
  const context = await browser.newContext({ viewport, locale: "en-US", ...extra });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`  page error on ${page.url()}: ${e.message}`));
  return { context, page };
}

/** Frames a received video must have decoded to count as received (about a second). */
const MIN_FRAMES = 15;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Polls `probe` until it returns {ok: true, ...}; fails with the last probe. */
async function until(what, probe, timeout = T) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await probe();
    if (last && last.ok) return last;
    await sleep(300);
  }
  throw new Error(`${what}: gave up after ${timeout} ms; last: ${JSON.stringify(last)}`);
}

// before the page has created its call (just navigated), nothing is received yet
const stats = (target) => target.evaluate(() =>
  window.switchboardCall ? window.switchboardCall.stats() : { state: "loading", inbound: [], outbound: [], candidatePair: null });
/** The received video of `role`'s `source` with frames decoded, within the room's cap. */
async function receives(target, role, source, what, publisher) {
  const got = await until(what, async () => {
    const s = await stats(target);
    const v = s.inbound.find((i) => i.kind === "video" && i.role === role && i.source === source && i.framesDecoded >= MIN_FRAMES);
    return { ok: !!v, state: s.state, video: v, inbound: v ? undefined : s.inbound.filter((i) => i.kind === "video").map((i) => `mid ${i.mid} ${i.role} ${i.source}: ${i.packetsReceived} packets, ${i.framesDecoded} frames (${i.keyFramesDecoded} key), ${i.pliCount} PLI sent`),
      publisher: v || !publisher ? undefined : (await stats(publisher)).outbound.filter((o) => o.kind === "video")
        .map((o) => `${o.source}: ${o.framesEncoded} frames (${o.keyFramesEncoded} key), ${o.pliCount} PLI received`) };
  });
  const v = got.video;
  assert.ok(v.frameHeight <= CAP.height && v.frameWidth <= CAP.width,
    `${what}: ${v.frameWidth}x${v.frameHeight} exceeds the ${CAP.label} cap`);
  console.log(`  ${what}: framesDecoded ${v.framesDecoded}, ${v.frameWidth}x${v.frameHeight}, ${v.packetsReceived} packets (${v.packetsLost} lost)`);
  return v;
}

/** The GPS position in a JPEG's EXIF ({lat, lon}), or null: the APP1 `Exif` segment, its TIFF
 * IFD0's GPS pointer (0x8825), the GPS IFD's refs (1, 3) and rationals (2, 4). */
function exifGps(jpeg) {
  const view = new DataView(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength);
  let at = 2;
  while (at + 4 <= jpeg.length && view.getUint8(at) === 0xff) {
    const marker = view.getUint8(at + 1);
    const len = view.getUint16(at + 2);
    if (marker === 0xe1 && String.fromCharCode(...jpeg.subarray(at + 4, at + 8)) === "Exif") {
      const t = at + 10;
      const le = view.getUint16(t) === 0x4949;
      const u16 = (o) => view.getUint16(t + o, le);
      const u32 = (o) => view.getUint32(t + o, le);
      const entry = (ifd, tag) => {
        for (let i = 0; i < u16(ifd); i++) if (u16(ifd + 2 + 12 * i) === tag) return ifd + 2 + 12 * i;
        return null;
      };
      const ptr = entry(u32(4), 0x8825);
      if (ptr === null) return null;
      const gps = u32(ptr + 8);
      const deg = (tag) => {
        const o = u32(entry(gps, tag) + 8);
        return u32(o) / u32(o + 4) + u32(o + 8) / u32(o + 12) / 60 + u32(o + 16) / u32(o + 20) / 3600;
      };
      const ref = (tag) => String.fromCharCode(view.getUint8(t + entry(gps, tag) + 8));
      return { lat: deg(2) * (ref(1) === "S" ? -1 : 1), lon: deg(4) * (ref(3) === "W" ? -1 : 1) };
    }
    if (marker === 0xda) break;
    at += 2 + len;
  }
  return null;
}

const customer = await newPage(DESKTOP); // the web chat widget, then the call page
const bob = await newPage(DESKTOP); // his console, then his call panel
const bobCall = await newPage(DESKTOP, { permissions: ["clipboard-read", "clipboard-write"] });
const crm = await newPage(DESKTOP); // Alice's CRM with the panel in an iframe
const cp = customer.page, bp = bob.page, ap = bobCall.page;
const widget = cp.locator("#switchboard-webchat");
let interactionId, room;

try {
  await step("an interaction: the customer writes in the web chat, bob accepts it", async () => {
    await cp.goto(WIDGET_URL);
    await widget.locator(".state", { hasText: "online" }).waitFor({ timeout: T });
    // the web chat test floods from this same address just before: retry while throttled
    const text = "Hi, my router blinks red. Can you have a look on video?";
    for (let attempt = 1; ; attempt++) {
      await widget.locator("textarea").fill(text);
      await widget.locator("textarea").press("Enter");
      const mine = widget.locator(".log .msg", { hasText: "router blinks red" }).last().locator(".meta");
      await mine.filter({ hasText: /sent/i }).waitFor({ timeout: T }); // "sent", "✓ Sent", "not sent"
      if (!/not sent/.test(await mine.textContent())) break;
      if (attempt === 5) throw new Error("the customer's message stays throttled");
      await sleep(3000);
    }
    await bp.goto(BOB_URL);
    await bp.locator("#desk").waitFor({ state: "visible", timeout: T });
    await bp.locator("#conn", { hasText: "online" }).waitFor({ timeout: T });
    await bp.locator("#status").selectOption("ready");
    const offered = bp.locator("#offered li").first();
    await offered.waitFor({ timeout: T });
    interactionId = await offered.getAttribute("data-id");
    await offered.locator("button", { hasText: "Accept" }).click();
    await bp.locator(`#mine li[data-id="${interactionId}"]`).waitFor({ timeout: T });
  });

  await step("bob starts a 480p room over REST; the customer gets the link in the chat", async () => {
    const res = await fetch(`${BASE}/api/v1/video/rooms`, {
      method: "POST",
      headers: { Authorization: `Bearer ${BOB_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ interaction_id: interactionId, mode: "two_way", quality: CAP.label }),
    });
    const text = await res.text();
    assert.ok(res.ok, `POST /api/v1/video/rooms: ${res.status} ${text}`);
    room = JSON.parse(text);
    for (const k of ["room_id", "customer_link", "agent_join", "expires_at"]) assert.ok(room[k], `${k} in ${text}`);
    assert.match(new URL(room.customer_link).pathname, /^\/call\/[A-Za-z0-9_-]{40,}$/);
    await widget.locator(".log .msg", { hasText: "/call/" }).waitFor({ timeout: T });
  });

  await step("the customer page shows the consent text before any camera access, then joins", async () => {
    const link = BASE + new URL(room.customer_link).pathname;
    await cp.setViewportSize(PHONE);
    await cp.goto(link);
    await cp.locator("#consent", { hasText: "camera" }).waitFor({ timeout: T });
    assert.equal(await cp.evaluate(() => !!window.switchboardCall), false, "nothing joined before the click");
    // the branding of [video.branding] (run.sh): the name, the consent text, the primary colour
    await cp.locator("#brand-name", { hasText: "Acme Support" }).waitFor({ timeout: T });
    await cp.locator("#consent-body", { hasText: "Acme uses your camera and microphone only for this call." }).waitFor({ timeout: T });
    assert.equal(await cp.locator("#join").evaluate((b) => getComputedStyle(b).backgroundColor), "rgb(138, 28, 28)");
    await cp.screenshot({ path: `${SCREENSHOTS}/video-consent-phone.png` });
    await cp.setViewportSize(DESKTOP);
    await cp.locator("#join").click();
    await cp.locator("#call").waitFor({ state: "visible", timeout: T });
    await cp.locator("#status", { hasText: "Waiting for the agent" }).waitFor({ timeout: T });
  });

  await step("the customer page in Russian: the browser's language, or ?lang= in the link", async () => {
    const link = BASE + new URL(room.customer_link).pathname;
    const ru = await newPage(PHONE, { locale: "ru-RU" });
    try {
      await ru.page.goto(link);
      await ru.page.locator("#join", { hasText: "Подключиться с камерой" }).waitFor({ timeout: T });
      assert.equal(await ru.page.evaluate(() => document.documentElement.lang), "ru");
      assert.equal(await ru.page.locator("#join-audio").textContent(), "Подключиться только со звуком");
      await ru.page.locator("#consent-title", { hasText: "Видеозвонок с компанией Acme Support" }).waitFor({ timeout: T });
      assert.equal(await ru.page.locator("#attach").evaluate((i) => i.closest("label").title), "Прикрепить файл (не больше 100 МБ)");
      assert.equal(await ru.page.locator('[data-action="leave"] .label').textContent(), "Выйти из звонка");
      // the account's own consent text stays as the account wrote it
      await ru.page.locator("#consent-body", { hasText: "Acme uses your camera and microphone only for this call." }).waitFor({ timeout: T });
      // ?lang=en in the address wins over the browser's language
      await ru.page.goto(`${link}?lang=en`);
      await ru.page.locator("#join", { hasText: "Join with camera" }).waitFor({ timeout: T });
      assert.equal(await ru.page.evaluate(() => document.documentElement.lang), "en");
    } finally {
      await ru.context.close();
    }
  });

  await step("bob's call panel (agent_join) joins with #token= (dropped from the address); both connect", async () => {
    const join = new URL(room.agent_join);
    assert.equal(join.pathname + join.search, `/video/agent?room=${room.room_id}`, "agent_join is the panel");
    await ap.goto(`${BASE}${join.pathname}${join.search}#token=${encodeURIComponent(BOB_TOKEN)}`);
    await ap.waitForFunction(() => window.switchboardCall && window.switchboardCall.state === "connected", null, { timeout: T });
    assert.ok(!ap.url().includes("token"), `the token left the address bar: ${ap.url()}`);
    assert.equal(await ap.evaluate(() => window.switchboardCall.me.role), "agent");
    await ap.locator("#brand-name", { hasText: "Acme Support" }).waitFor({ timeout: T });
    assert.equal(await ap.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue("--brand-primary").trim()), "#8a1c1c");
    await cp.waitForFunction(() => window.switchboardCall.state === "connected", null, { timeout: T });
    await cp.locator("#chat-log li.event", { hasText: "joined" }).waitFor({ timeout: T });
  });

  await step("each receives the other's camera (getStats: frames decoded, within 854x480)", async () => {
    await receives(ap, "customer", "camera", "agent <- customer camera", cp);
    await receives(cp, "agent", "camera", "customer <- agent camera", ap);
    const out = (await stats(cp)).outbound.find((o) => o.source === "camera");
    assert.ok(out && out.frameHeight <= CAP.height, `the customer sends within the cap: ${JSON.stringify(out)}`);
    await ap.locator('.sb-stage .sb-tile[data-role="customer"][data-source="camera"]:not(.sb-off)').waitFor({ timeout: T });
    await cp.locator('.sb-stage .sb-tile[data-role="agent"][data-source="camera"]:not(.sb-off)').waitFor({ timeout: T });
  });

  await step("a chat message crosses the data channel both ways", async () => {
    await cp.locator("#chat-input").fill("The red light is on the left.");
    await cp.locator("#chat-input").press("Enter");
    await ap.locator("#chat-log li.in", { hasText: "red light is on the left" }).waitFor({ timeout: T });
    await ap.locator("#chat-input").fill("Thanks, please share your screen so I can see the router page.");
    await ap.locator("#chat-form button[type=submit]").click();
    await cp.locator("#chat-log li.in", { hasText: "share your screen" }).waitFor({ timeout: T });
  });

  await step("the customer shares the screen; it arrives on the agent side as the large video", async () => {
    await cp.locator('[data-action="screen"]').click();
    await cp.locator('[data-action="screen"]', { hasText: "Stop sharing" }).waitFor({ timeout: T });
    await receives(ap, "customer", "screen", "agent <- customer screen", cp);
    await ap.locator('.sb-stage .sb-tile[data-role="customer"][data-source="screen"]').waitFor({ timeout: T });
    await ap.locator("#chat-log li.event", { hasText: "sharing their screen" }).waitFor({ timeout: T });
  });

  await step("the customer's own camera preview is mirrored, and only there", async () => {
    const self = cp.locator('.sb-tile[data-participant="self"][data-source="camera"]');
    assert.equal(await self.evaluate((t) => getComputedStyle(t.querySelector("video")).transform), "matrix(-1, 0, 0, 1, 0, 0)");
    const seen = ap.locator('.sb-tile[data-role="customer"][data-source="camera"] video');
    assert.equal(await seen.evaluate((v) => getComputedStyle(v).transform), "none", "the agent sees the picture unmirrored");
  });

  await step("the agent points at the customer's screen; the customer sees the pointer", async () => {
    // the marks fade within a second: record every one added to the customer's page
    await cp.evaluate(() => {
      window.marks = [];
      new MutationObserver((list) => {
        for (const m of list) for (const n of m.addedNodes) if (n.classList) window.marks.push(n.className);
      }).observe(document.body, { childList: true, subtree: true });
    });
    const tile = ap.locator(".sb-stage .sb-tile");
    const b = await tile.boundingBox();
    await ap.mouse.move(b.x + b.width * 0.3, b.y + b.height * 0.4);
    await ap.mouse.down();
    await ap.mouse.move(b.x + b.width * 0.45, b.y + b.height * 0.5, { steps: 6 });
    await ap.mouse.up();
    await cp.locator('.sb-tile[data-participant="self"][data-source="screen"] .sb-pointer:not([hidden])').waitFor({ timeout: T });
    await cp.waitForFunction(() => window.marks.includes("sb-ripple") && window.marks.filter((c) => c === "sb-trail").length >= 2, null, { timeout: T });
    await ap.screenshot({ path: `${SCREENSHOTS}/video-agent-desktop.png` });
    await cp.screenshot({ path: `${SCREENSHOTS}/video-customer-desktop.png` });
  });

  await step("mute and camera off reach the agent; the camera comes back", async () => {
    await cp.locator('[data-action="mute"]').click();
    await ap.locator('.sb-tile[data-role="customer"][data-source="camera"] [aria-label="microphone off"]').waitFor({ timeout: T });
    await cp.locator('[data-action="mute"]').click();
    await ap.locator('.sb-tile[data-role="customer"][data-source="camera"] [aria-label="microphone off"]').waitFor({ state: "detached", timeout: T });
    await cp.locator('[data-action="camera"]').click();
    await ap.locator('.sb-tile[data-role="customer"][data-source="camera"].sb-off').waitFor({ timeout: T });
    assert.equal(await cp.evaluate(() => window.switchboardCall.local.camera), null, "the camera is released");
    await cp.locator('[data-action="camera"]').click();
    await ap.locator('.sb-tile[data-role="customer"][data-source="camera"]:not(.sb-off)').waitFor({ timeout: T });
  });

  await step("an ICE restart (renegotiate) answers the new offer and the media keeps flowing", async () => {
    const before = await cp.evaluate(() => window.switchboardCall.negotiations);
    const frames = async () => (await stats(ap)).inbound.find((i) => i.role === "customer" && i.source === "camera").framesDecoded;
    const decoded = await frames();
    await cp.evaluate(() => window.switchboardCall.restartIce());
    await cp.waitForFunction((n) => window.switchboardCall.negotiations > n, before, { timeout: T });
    await until("frames after the restart", async () => ({ ok: (await frames()) > decoded + 20 }));
    assert.equal(await cp.evaluate(() => window.switchboardCall.state), "connected");
  });

  await step("invite supervisor gives the panel's link without any token", async () => {
    await ap.locator("#invite").click();
    const link = await ap.locator("#invite-link").inputValue();
    assert.equal(link, `${BASE}/video/agent?room=${encodeURIComponent(room.room_id)}`);
    const copied = await ap.evaluate(() => navigator.clipboard.readText().catch(() => null));
    if (copied !== null) assert.equal(copied, link, "copied to the clipboard");
  });

  await step("copy customer link and link by SMS (the fake SMSC): the link opens the call, the delivery is shown", async () => {
    await ap.locator("#copy-link").click();
    await ap.locator("#copy-done", { hasText: /^Cop/ }).waitFor({ timeout: T });
    const copied = await ap.locator("#copy-link-value").inputValue();
    assert.match(copied, new RegExp(`^${BASE}/call/[A-Za-z0-9_-]{43}$`));
    const info = await (await fetch(`${BASE}/api/v1/video/link`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ link: copied.split("/call/")[1] }) })).json();
    assert.equal(info.state, "open", "the copied link opens the call");
    await ap.locator("#sms").click();
    await ap.locator("#sms-phone").fill("+7 (912) 345-67-89");
    await ap.locator('#sms-box button[type="submit"]').click();
    await ap.locator("#sms-status", { hasText: "+7******6789: Delivered." }).waitFor({ timeout: T });
    const sent = await (await fetch(`${SMSC_CONTROL}/sent`)).json();
    assert.equal(sent.length, 1);
    assert.equal(sent[0].phone, "79123456789");
    assert.match(sent[0].text, new RegExp(`${BASE}/call/[A-Za-z0-9_-]{43}$`));
    await ap.locator("#chat-log", { hasText: "SMS to +7******6789: Delivered." }).waitFor({ timeout: T });
  });

  await step("the agent asks for the location: the customer agrees, both chats show the address, the map picture and the map link", async () => {
    // Chromium's grant replaces the origin's permissions: keep the camera and microphone's,
    // or their tracks end
    await customer.context.grantPermissions(["geolocation", "camera", "microphone"], { origin: BASE });
    await customer.context.setGeolocation({ latitude: 55.7539, longitude: 37.6208, accuracy: 20 });
    await ap.locator("#ask-location").click();
    await cp.locator("#location-ask").waitFor({ state: "visible", timeout: T });
    await cp.locator("#location-share").click();
    for (const page of [ap, cp]) {
      const entry = page.locator("#chat-log li.location", { hasText: "Red Square, Tverskoy District, Moscow" });
      await entry.waitFor({ timeout: T });
      assert.equal(await entry.locator("a.map").getAttribute("href"), "https://yandex.ru/maps/?pt=37.620800,55.753900&z=16");
      // the small map picture, from the (fake) static map service, loaded by the browser
      const picture = entry.locator("a.map-preview img");
      await picture.waitFor({ timeout: T });
      assert.match(await picture.getAttribute("src"), /\/static\?ll=37\.620800,55\.753900&/);
      await page.waitForFunction((img) => img.complete && img.naturalWidth === 1, await picture.elementHandle(), { timeout: T });
    }
    const calls = await (await fetch(`${BASE}/api/v1/interactions/${interactionId}/calls`, { headers: { Authorization: `Bearer ${ALICE_TOKEN}` } })).json();
    const kept = calls.items.find((c) => c.room_id === room.room_id).location;
    assert.equal(kept.address, "Red Square, Tverskoy District, Moscow, Russia", "kept with the call record");
  });

  await step("bob takes a screenshot of the customer's video, draws on it (pen, undo, arrow, text) and sends it; the stored JPEG carries the customer's position", async () => {
    await ap.locator("#shot").click();
    const editor = ap.locator(".sb-editor");
    await editor.waitFor({ timeout: T });
    const box = await editor.locator("canvas").boundingBox();
    const stroke = async (y, x0 = 0.3, x1 = 0.7) => {
      await ap.mouse.move(box.x + box.width * x0, box.y + box.height * y);
      await ap.mouse.down();
      for (let i = 1; i <= 8; i++) await ap.mouse.move(box.x + box.width * (x0 + ((x1 - x0) * i) / 8), box.y + box.height * y);
      await ap.mouse.up();
    };
    const shapes = async () => Number(await editor.getAttribute("data-shapes"));
    await editor.locator('[data-colour="#43a047"]').click();
    await stroke(0.25);
    assert.equal(await shapes(), 1, "the pen stroke");
    await editor.locator('[data-act="undo"]').click();
    assert.equal(await shapes(), 0, "undone");
    await editor.locator('[data-colour="#e53935"]').click();
    await stroke(0.5);
    await editor.locator('[data-tool="arrow"]').click();
    await stroke(0.8, 0.2, 0.4);
    await editor.locator('[data-tool="text"]').click();
    await editor.locator("input").fill("here");
    await ap.mouse.click(box.x + box.width * 0.1, box.y + box.height * 0.1);
    assert.equal(await shapes(), 3, "pen, arrow and text");
    await editor.locator('[data-act="send"]').click();
    await editor.waitFor({ state: "detached", timeout: T });
    // both chats show it, as a picture
    let fileId;
    for (const page of [ap, cp]) {
      const entry = page.locator("#chat-log li.file.screenshot");
      await entry.waitFor({ timeout: T });
      await until("the screenshot shows", async () => ({ ok: await entry.locator("img.shot").evaluate((img) => img.complete && img.naturalWidth > 0) }));
      fileId = await entry.getAttribute("data-file");
    }
    // its bytes: the red stroke drawn across the middle, and the GPS written by the hub
    const link = await (await fetch(`${BASE}/api/v1/video/rooms/${room.room_id}/files/${fileId}/link`, {
      method: "POST", headers: { Authorization: `Bearer ${BOB_TOKEN}` },
    })).json();
    const jpeg = new Uint8Array(await (await fetch(new URL(link.url, BASE))).arrayBuffer());
    const gps = exifGps(jpeg);
    assert.ok(gps, "GPS EXIF in the stored screenshot");
    assert.ok(Math.abs(gps.lat - 55.7539) < 1e-4 && Math.abs(gps.lon - 37.6208) < 1e-4, `GPS ${JSON.stringify(gps)}`);
    const pixel = await ap.evaluate(async (url) => {
      const bitmap = await createImageBitmap(await (await fetch(url)).blob());
      const c = new OffscreenCanvas(bitmap.width, bitmap.height);
      const ctx = c.getContext("2d");
      ctx.drawImage(bitmap, 0, 0);
      return [...ctx.getImageData(Math.round(bitmap.width * 0.5), Math.round(bitmap.height * 0.5), 1, 1).data];
    }, link.url);
    assert.ok(pixel[0] > 150 && pixel[0] > pixel[1] + 60 && pixel[0] > pixel[2] + 60, `the red pen stroke in the sent picture: ${pixel}`);
    console.log(`  screenshot ${jpeg.length} bytes, GPS ${gps.lat.toFixed(6)}, ${gps.lon.toFixed(6)}, pixel ${pixel}`);
  });

  await step("the customer takes a screenshot of the agent's video: it reaches bob's chat", async () => {
    const before = await ap.locator("#chat-log li.file.screenshot").count();
    await cp.locator("#shot").click();
    await until("bob sees the customer's screenshot", async () => ({ ok: (await ap.locator("#chat-log li.file.screenshot.in").count()) === 1, before }));
  });

  // 5 MB: the 100 MB limit and the flat memory are video/tests/call_files.rs's
  await step("the customer sends a 5 MB file with a progress bar; it reaches bob, who downloads it", async () => {
    const SIZE = 5 * 1024 * 1024;
    // the progress bar's values as they change (the upload is quick on loopback)
    await cp.evaluate(() => {
      window.__progress = [];
      new MutationObserver((list) => {
        for (const m of list) {
          const bars = m.target.querySelectorAll ? m.target.querySelectorAll("li.upload progress") : [];
          for (const b of bars) window.__progress.push([b.value, b.max]);
          if (m.target.matches && m.target.matches("li.upload progress")) window.__progress.push([m.target.value, m.target.max]);
        }
      }).observe(document.getElementById("chat-log"), { subtree: true, childList: true, attributes: true, attributeFilter: ["value", "max"] });
    });
    // from a file on disk: the browser reads it itself (a buffer would cross the protocol)
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const file = `${mkdtempSync(`${tmpdir()}/sb-call-file-`)}/отчёт.bin`;
    writeFileSync(file, Buffer.alloc(SIZE, 7));
    const started = Date.now();
    await cp.locator("#attach").setInputFiles(file);
    const sent = await until("the upload finishes", async () => ({ ok: (await cp.locator("#chat-log li.file.out", { hasText: "отчёт.bin" }).count()) === 1 }));
    const uploadMs = Date.now() - started;
    const entry = ap.locator("#chat-log li.file.in", { hasText: "отчёт.bin" });
    await entry.waitFor({ timeout: T });
    assert.match(await entry.locator(".size").textContent(), /^5\.0 MB$/);
    assert.ok(sent.ok);
    const progress = await cp.evaluate(() => window.__progress);
    assert.ok(progress.some(([v, max]) => v > 0 && max >= SIZE), `the progress bar moved: ${JSON.stringify(progress.slice(-5))}`);
    const [download] = await Promise.all([ap.waitForEvent("download", { timeout: T }), entry.locator("a.download").click()]);
    assert.equal(download.suggestedFilename(), "отчёт.bin");
    const path = await download.path();
    const { statSync, rmSync } = await import("node:fs");
    assert.equal(statSync(path).size, SIZE);
    rmSync(file);
    console.log(`  5 MB sent in ${uploadMs} ms, downloaded by ${Date.now() - started} ms, ${progress.length} progress updates seen`);
  });

  await step("screenshots at phone width", async () => {
    await cp.setViewportSize(PHONE);
    await ap.setViewportSize(PHONE);
    await sleep(800);
    await cp.screenshot({ path: `${SCREENSHOTS}/video-customer-phone.png` });
    await ap.screenshot({ path: `${SCREENSHOTS}/video-agent-phone.png` });
    await cp.setViewportSize(DESKTOP);
    await ap.setViewportSize(DESKTOP);
  });

  let frame;
  await step("alice joins as the supervisor from a CRM iframe (token by postMessage) and receives both", async () => {
    const panel = `${BASE}/video/agent?room=${encodeURIComponent(room.room_id)}`;
    crmPage = `<!doctype html><title>CRM</title><h1 style="font:16px sans-serif;margin:8px">Order A-1009 · video call</h1>
<script>
window.events = [];
addEventListener("message", (e) => {
  if (e.origin !== ${JSON.stringify(BASE)}) return;
  window.events.push(e.data);
  if (e.data.type === "switchboard:ready") e.source.postMessage({ type: "switchboard:token", token: ${JSON.stringify(ALICE_TOKEN)} }, e.origin);
});
</script>
<iframe id="panel" title="Video call" style="width:100%;height:700px;border:0" allow="camera; microphone; display-capture; autoplay; clipboard-write" src="${panel}"></iframe>`;
    await crm.page.goto(`${CRM}/crm`); // a real server: Chromium blocks a public page framing a loopback one
    frame = crm.page.frames().find((f) => f.url().startsWith(`${BASE}/video/agent`));
    assert.ok(frame, `the panel frame among ${JSON.stringify(crm.page.frames().map((f) => f.url()))}`);
    await crm.page.waitForFunction(() => window.events.some((m) => m.event === "joined"), null, { timeout: T }).catch(async (e) => {
      const said = await frame.evaluate(() => [document.querySelector("#status").textContent, document.querySelector("#fatal").textContent]);
      throw new Error(`${e.message}\n  the panel says: ${JSON.stringify(said)}; the CRM got ${JSON.stringify(await crm.page.evaluate(() => window.events))}`);
    });
    assert.equal(await frame.evaluate(() => window.switchboardCall.me.role), "supervisor");
    await frame.waitForFunction(() => window.switchboardCall.state === "connected", null, { timeout: T });
    await receives(frame, "customer", "camera", "supervisor <- customer camera", cp);
    await receives(frame, "agent", "camera", "supervisor <- agent camera", ap);
    await receives(frame, "customer", "screen", "supervisor <- customer screen", cp);
    await ap.locator("#chat-log li.event", { hasText: "(supervisor) joined" }).waitFor({ timeout: T });
    await cp.locator("#chat-log li.event", { hasText: "joined" }).nth(1).waitFor({ timeout: T });
    await frame.locator("#chat-input").fill("Supervisor here, listening in.");
    await frame.locator("#chat-input").press("Enter");
    await cp.locator("#chat-log li.in", { hasText: "Supervisor here" }).waitFor({ timeout: T });
    await ap.locator("#chat-log li.in", { hasText: "Supervisor here" }).waitFor({ timeout: T });
    await crm.page.screenshot({ path: `${SCREENSHOTS}/video-supervisor-desktop.png` });
  });

  await step("the customer stops sharing: the agent's large video is the customer's camera again", async () => {
    await cp.locator('[data-action="screen"]').click();
    await ap.locator('.sb-stage .sb-tile[data-role="customer"][data-source="camera"]').waitFor({ timeout: T });
    await ap.locator('.sb-tile[data-source="screen"]').waitFor({ state: "detached", timeout: T });
  });

  await step("bob ends the call: the customer and the supervisor see it ended; the link is spent", async () => {
    await ap.locator('[data-action="end"]').click();
    await cp.locator("#ended", { hasText: "The agent ended the call" }).waitFor({ timeout: T });
    await frame.locator("#ended").waitFor({ state: "visible", timeout: T });
    await crm.page.waitForFunction(() => window.events.some((m) => m.event === "ended"), null, { timeout: T });
    await ap.locator("#ended").waitFor({ state: "visible", timeout: T });
  });

  await step("the customer rates the call: stored with the call, interaction.rated reaches the CRM's webhook", async () => {
    const hook = await fetch(`${BASE}/api/v1/webhooks`, {
      method: "POST",
      headers: { Authorization: `Bearer ${tokenOf(ADMIN_URL)}`, "Content-Type": "application/json" },
      body: JSON.stringify({ url: `http://127.0.0.1:${crmServer.address().port}/hook`, events: ["interaction.rated"] }),
    });
    assert.equal(hook.status, 201, `POST /api/v1/webhooks: ${await hook.text()}`);
    await cp.locator("#survey").waitFor({ state: "visible", timeout: T });
    await cp.locator('#survey label:has(input[value="4"])').click();
    await cp.locator('#survey button[type="submit"]').click();
    await cp.locator("#survey-thanks").waitFor({ state: "visible", timeout: T });
    const rated = await until("the interaction.rated webhook", async () => {
      const h = hooks.find((e) => e.type === "interaction.rated" && e.data.room_id === room.room_id);
      return { ok: !!h, hook: h, got: hooks.length };
    });
    assert.equal(rated.hook.data.rating, 4);
    assert.equal(rated.hook.interaction_id, interactionId);
    const calls = await (await fetch(`${BASE}/api/v1/interactions/${interactionId}/calls`, { headers: { Authorization: `Bearer ${ALICE_TOKEN}` } })).json();
    assert.equal(calls.items.find((c) => c.room_id === room.room_id).survey.rating, 4);
  });

  await step("the spent link is refused", async () => {
    await cp.reload();
    await cp.locator("#join").click();
    await until("the spent link is refused", async () => {
      const text = await cp.locator("#join-error").textContent();
      return { ok: /ended|not valid|does not exist/.test(text), text };
    });
  });
  await step("a one_way room: the customer's video reaches bob, whose panel sends nothing", async () => {
    const res = await fetch(`${BASE}/api/v1/video/rooms`, {
      method: "POST",
      headers: { Authorization: `Bearer ${BOB_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ interaction_id: interactionId, mode: "one_way", quality: CAP.label }),
    });
    const text = await res.text();
    assert.ok(res.ok, `POST /api/v1/video/rooms (one_way): ${res.status} ${text}`);
    const oneWay = JSON.parse(text);
    await cp.goto(BASE + new URL(oneWay.customer_link).pathname);
    await cp.locator("#join").click();
    await cp.locator("#call").waitFor({ state: "visible", timeout: T });
    const join = new URL(oneWay.agent_join);
    await ap.goto(`${BASE}${join.pathname}${join.search}#token=${encodeURIComponent(BOB_TOKEN)}`);
    await ap.waitForFunction(() => window.switchboardCall && window.switchboardCall.state === "connected", null, { timeout: T });
    assert.equal(await ap.evaluate(() => window.switchboardCall.room.mode), "one_way");
    await receives(ap, "customer", "camera", "one_way: agent <- customer camera", cp);
    for (const action of ["mute", "camera", "screen"]) {
      assert.equal(await ap.locator(`[data-action="${action}"]`).isVisible(), false, `no ${action} button in a one_way panel`);
    }
    const sent = (await stats(ap)).outbound.filter((o) => o.packetsSent > 0);
    assert.deepEqual(sent, [], "the agent sends no media");
    await ap.locator('[data-action="end"]').click();
    await cp.locator("#ended", { hasText: "The agent ended the call" }).waitFor({ timeout: T });
  });

  await step("TURN: a relay-only customer (?ice=relay) connects through coturn with the hub's credentials", async () => {
    assert.ok(process.env.SWITCHBOARD_TEST_TURN_URL, "no coturn: run deploy/services.sh coturn start, then eval \"$(deploy/services.sh env)\"");
    const res = await fetch(`${BASE}/api/v1/video/rooms`, {
      method: "POST",
      headers: { Authorization: `Bearer ${BOB_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ interaction_id: interactionId, quality: CAP.label }),
    });
    const text = await res.text();
    assert.ok(res.ok, `POST /api/v1/video/rooms: ${res.status} ${text}`);
    const relayed = JSON.parse(text);
    await cp.goto(BASE + new URL(relayed.customer_link).pathname + "?ice=relay");
    await cp.locator("#join").click();
    await cp.locator("#call").waitFor({ state: "visible", timeout: T });
    const join = new URL(relayed.agent_join);
    await ap.goto(`${BASE}${join.pathname}${join.search}#token=${encodeURIComponent(BOB_TOKEN)}`);
    await ap.waitForFunction(() => window.switchboardCall && window.switchboardCall.state === "connected", null, { timeout: T });
    const servers = await cp.evaluate(() => window.switchboardCall.iceServers || null);
    await receives(ap, "customer", "camera", "relay: agent <- customer camera", cp);
    await receives(cp, "agent", "camera", "relay: customer <- agent camera", ap);
    const pair = (await stats(cp)).candidatePair;
    assert.equal(pair && pair.localCandidateType, "relay", `the customer's path is TURN: ${JSON.stringify(pair)} ${JSON.stringify(servers)}`);
    await ap.locator('[data-action="end"]').click();
    await cp.locator("#ended", { hasText: "The agent ended the call" }).waitFor({ timeout: T });
  });

  await step("a recorded call: the notice and the customer's consent, REC on both sides, the file in the call records", async () => {
    const res = await fetch(`${BASE}/api/v1/video/rooms`, {
      method: "POST",
      headers: { Authorization: `Bearer ${BOB_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ interaction_id: interactionId, quality: CAP.label, record: true }),
    });
    const text = await res.text();
    assert.ok(res.ok, `POST /api/v1/video/rooms (record): ${res.status} ${text}`);
    const recorded = JSON.parse(text);
    assert.equal(recorded.record, true);
    await cp.goto(BASE + new URL(recorded.customer_link).pathname);
    await cp.locator("#recording-notice", { hasText: "recorded" }).waitFor({ timeout: T });
    assert.equal(await cp.locator("#recording-consent").isChecked(), true);
    await cp.screenshot({ path: `${SCREENSHOTS}/video-recording-consent.png` });
    await cp.locator("#join").click();
    await cp.locator("#call").waitFor({ state: "visible", timeout: T });
    await cp.locator("#rec:not([hidden])").waitFor({ timeout: T });
    const join = new URL(recorded.agent_join);
    await ap.goto(`${BASE}${join.pathname}${join.search}#token=${encodeURIComponent(BOB_TOKEN)}`);
    await ap.waitForFunction(() => window.switchboardCall && window.switchboardCall.state === "connected", null, { timeout: T });
    await ap.locator("#rec:not([hidden])").waitFor({ timeout: T });
    await receives(ap, "customer", "camera", "recorded: agent <- customer camera", cp);
    // the quality indicator: both sides' connections, measured by the SFU, on the tiles
    await ap.locator('.sb-tile[data-role="customer"][data-source="camera"] .sb-quality[data-level="good"]').waitFor({ timeout: T });
    await cp.locator('.sb-tile[data-participant="self"][data-source="camera"] .sb-quality:not([hidden])').waitFor({ timeout: T });
    await sleep(3000);
    await ap.locator('[data-action="end"]').click();
    await cp.locator("#ended", { hasText: "The agent ended the call" }).waitFor({ timeout: T });
    const call = await until("the recording is ready", async () => {
      const r = await fetch(`${BASE}/api/v1/interactions/${interactionId}/calls`, { headers: { Authorization: `Bearer ${ALICE_TOKEN}` } });
      const body = await r.json();
      const c = (body.items || []).find((i) => i.room_id === recorded.room_id);
      return { ok: !!(c && c.recording && c.recording.state === "ready"), status: r.status, call: c };
    }, 60_000);
    const c = call.call;
    const customerRow = c.participants.find((p) => p.role === "customer");
    assert.equal(customerRow.recording_consent, true);
    assert.equal(customerRow.camera, true, "the page reported its camera");
    assert.match(customerRow.browser || "", /Chrom/);
    assert.equal(customerRow.ice_path, "direct");
    assert.equal(c.recording.file.mime, "video/webm");
    const file = await fetch(`${BASE}${c.recording.file.url}`, { headers: { Authorization: `Bearer ${BOB_TOKEN}` } });
    assert.equal(file.status, 200, "bob downloads the recording");
    const bytes = Buffer.from(await file.arrayBuffer());
    assert.ok(bytes.length > 10_000 && bytes.subarray(0, 4).equals(Buffer.from([0x1a, 0x45, 0xdf, 0xa3])), "a Matroska file");
    console.log(`  recording: ${c.recording.duration_ms} ms, ${bytes.length} bytes, ${c.recording.video_codec}`);
  });

  await step("the quality indicator: a customer on a lossy network (15% of its media dropped) shows poor", async () => {
    // a UDP relay between the customer's browser and the SFU that drops 15% of the customer's RTP:
    // the offer's host candidate is rewritten to the relay (Playwright's WebSocket routing)
    const dgram = await import("node:dgram");
    const front = dgram.createSocket("udp4");
    await new Promise((r) => front.bind(0, "127.0.0.1", r));
    let sfuPort = 0, n = 0;
    const backs = new Map();
    front.on("message", (msg, from) => {
      const key = `${from.address}:${from.port}`;
      let back = backs.get(key);
      if (!back) {
        back = dgram.createSocket("udp4");
        back.on("message", (m) => front.send(m, from.port, from.address));
        back.bind(0, "127.0.0.1");
        backs.set(key, back);
      }
      const rtp = msg[0] >= 128 && msg[0] <= 191 && !(msg[1] >= 200 && msg[1] <= 206);
      if (rtp && (n++ % 20) < 3) return; // 15%
      back.send(msg, sfuPort, "127.0.0.1");
    });
    const lossyPort = front.address().port;
    await cp.routeWebSocket(/\/api\/v1\/video\/ws/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        let frame;
        try { frame = JSON.parse(m); } catch { return ws.send(m); }
        if (frame.type === "offer") {
          frame.sdp = frame.sdp.replace(/(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)/gi, (_, head, port) => {
            sfuPort = Number(port);
            return head + lossyPort;
          });
        }
        ws.send(JSON.stringify(frame));
      });
    });
    try {
      const res = await fetch(`${BASE}/api/v1/video/rooms`, {
        method: "POST",
        headers: { Authorization: `Bearer ${BOB_TOKEN}`, "Content-Type": "application/json" },
        body: JSON.stringify({ interaction_id: interactionId, quality: CAP.label }),
      });
      const lossy = JSON.parse(await res.text());
      await cp.goto(BASE + new URL(lossy.customer_link).pathname);
      await cp.locator("#join").click();
      await cp.locator("#call").waitFor({ state: "visible", timeout: T });
      const join = new URL(lossy.agent_join);
      await ap.goto(`${BASE}${join.pathname}${join.search}#token=${encodeURIComponent(BOB_TOKEN)}`);
      await ap.waitForFunction(() => window.switchboardCall && window.switchboardCall.state === "connected", null, { timeout: T });
      assert.ok(sfuPort > 0, "the customer's offer went through the relay");
      // the first measures may come before any loss (and a camera still ramping up is already
      // fair): wait for one that saw the relay's losses
      await ap.waitForFunction(() => {
        const c = [...window.switchboardCall.participants.values()].find((p) => p.role === "customer");
        const q = c && window.switchboardCall.connection.get(c.id);
        return q && q.loss_pct >= 5;
      }, null, { timeout: T });
      const bad = '.sb-quality[data-level="poor"], .sb-quality[data-level="fair"]';
      await ap.locator(`.sb-tile[data-role="customer"][data-source="camera"] :is(${bad})`).waitFor({ timeout: T });
      await cp.locator(`.sb-tile[data-participant="self"][data-source="camera"] :is(${bad})`).waitFor({ timeout: T });
      const seen = await ap.evaluate(() => {
        const c = [...window.switchboardCall.participants.values()].find((p) => p.role === "customer");
        return window.switchboardCall.connection.get(c.id);
      });
      console.log(`  the agent sees the customer's connection: ${JSON.stringify(seen)} (the relay passed ${n} RTP packets, dropped 3 of every 20)`);
      assert.ok(seen.loss_pct >= 5, `loss measured: ${JSON.stringify(seen)}`);
      await ap.screenshot({ path: `${SCREENSHOTS}/video-quality-poor.png` });
      await ap.locator('[data-action="end"]').click();
      await cp.locator("#ended", { hasText: "The agent ended the call" }).waitFor({ timeout: T });
    } finally {
      await cp.unrouteAll({ behavior: "ignoreErrors" }).catch(() => {});
      front.close();
      for (const b of backs.values()) b.close();
    }
  });

  await step("the console's Video call button starts a room and opens the call panel beside the chat", async () => {
    await bp.locator("#video").click();
    await bp.locator("#call").waitFor({ state: "visible", timeout: T });
    const panel = bp.frameLocator("#call-frame");
    await panel.locator("body").waitFor({ timeout: T });
    const found = await until("the panel in the console's iframe", async () => ({ ok: bp.frames().some((f) => f.url().includes("/video/agent")) }));
    assert.ok(found.ok);
    const frame = bp.frames().find((f) => f.url().includes("/video/agent"));
    assert.ok(!frame.url().includes("token="), "the token left the panel's address");
    await frame.waitForFunction(() => window.switchboardCall && window.switchboardCall.me && window.switchboardCall.me.role === "agent", null, { timeout: T });
    await bp.locator("#messages", { hasText: "video call created" }).waitFor({ timeout: T });
    // the invitation is an ordinary message of the chat
    await bp.locator("#messages", { hasText: "invites you to a video call" }).last().waitFor({ timeout: T });
    await frame.locator('[data-action="end"]').click();
    await bp.locator("#messages", { hasText: "video call ended" }).waitFor({ timeout: T });
  });

  await step("the console books a call for a time: the customer gets the link now; the supervisor cancels it", async () => {
    const at = new Date(Date.now() + 2 * 3600 * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    const local = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
    await bp.locator("#schedule-at").fill(local);
    await bp.locator("#schedule").click();
    await bp.locator("#toast", { hasText: "Call booked for" }).waitFor({ timeout: T });
    await bp.locator("#messages", { hasText: "video call scheduled for" }).waitFor({ timeout: T });
    // the invitation naming the time is an ordinary message of the chat
    await bp.locator("#messages", { hasText: "invites you to a video call on" }).last().waitFor({ timeout: T });
    // alice, a supervisor, sees it among the scheduled calls and cancels it over the same REST API
    const list = await fetch(`${BASE}/api/v1/video/schedules?state=scheduled&interaction_id=${interactionId}`, { headers: { Authorization: `Bearer ${ALICE_TOKEN}` } });
    const { schedules } = await list.json();
    assert.equal(schedules.length, 1, JSON.stringify(schedules));
    assert.equal(schedules[0].agent, "bob");
    const cancel = await fetch(`${BASE}/api/v1/video/schedules/${schedules[0].id}`, { method: "DELETE", headers: { Authorization: `Bearer ${ALICE_TOKEN}` } });
    assert.equal(cancel.status, 200, await cancel.text());
    await bp.locator("#messages", { hasText: "cancelled" }).last().waitFor({ timeout: T });
    await bp.locator("#messages", { hasText: "is cancelled" }).last().waitFor({ timeout: T });
  });
} catch {
  // reported by step()
} finally {
  await browser.close();
  crmServer.close();
}

console.log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
