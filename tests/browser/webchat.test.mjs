// Web chat widget + agent console in headless Chromium (playwright-core, /usr/bin/chromium).
// Started by run.sh, which passes BASE, WIDGET_URL, ALICE_URL, BOB_URL and SCREENSHOTS.
import assert from "node:assert/strict";
import http from "node:http";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const { BASE, WIDGET_URL, ALICE_URL, BOB_URL, SCREENSHOTS } = process.env;
for (const [k, v] of Object.entries({ BASE, WIDGET_URL, ALICE_URL, BOB_URL })) {
  if (!v) throw new Error(`${k} is not set: run tests/browser/run.sh`);
}
mkdirSync(SCREENSHOTS, { recursive: true });
const T = 20_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP shop.foreign.test 127.0.0.1"],
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
    console.log(`not ok - ${name}\n  ${String(e.stack || e).split("\n").slice(0, 6).join("\n  ")}`);
    throw e;
  }
}

const widget = (page) => page.locator("#switchboard-webchat");
const customerMsgs = (page) => widget(page).locator(".log .msg");

async function newPage(viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`  page error on ${page.url()}: ${e.message}`));
  return { context, page };
}

async function customerSays(page, text) {
  const box = widget(page).locator("textarea");
  await box.fill(text);
  await box.press("Enter");
}

async function signedIn(page) {
  await page.locator("#desk").waitFor({ state: "visible", timeout: T });
  await page.locator("#conn", { hasText: "online" }).waitFor({ timeout: T });
}

const customer = await newPage(DESKTOP);
const alice = await newPage(DESKTOP);
const bob = await newPage(DESKTOP);
const cp = customer.page, ap = alice.page, bp = bob.page;

try {
  await step("the widget opens on the demo page and gets a customer token", async () => {
    await cp.goto(WIDGET_URL);
    await widget(cp).locator(".state", { hasText: "online" }).waitFor({ timeout: T });
    await widget(cp).locator(".limit", { hasText: "Files up to 10 MB" }).waitFor({ timeout: T });
    const token = await cp.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("switchboard-webchat:")).length);
    assert.equal(token, 1, "the customer token is kept in localStorage");
    // no branding on the demo account: the widget's own colour (the fallback of --sb-primary)
    assert.equal(await widget(cp).locator(".launcher").evaluate((b) => getComputedStyle(b).backgroundColor), "rgb(47, 91, 234)");
  });

  await step("the customer writes; the message is stored (acknowledged)", async () => {
    await customerSays(cp, "Hello, where is my order A-1009?");
    await customerMsgs(cp).filter({ hasText: "where is my order" }).locator(".meta", { hasText: /sent|read/i }).waitFor({ timeout: T });
  });

  await step("agents sign in to the console with a token; alice goes ready and gets the offer", async () => {
    await ap.goto(ALICE_URL);
    await signedIn(ap);
    await bp.goto(BOB_URL);
    await signedIn(bp);
    await ap.locator("#status").selectOption("ready");
    await ap.locator("#offered li").first().waitFor({ timeout: T });
  });

  await step("alice accepts, sees the customer's message and replies; the customer sees the reply with her name, and alice sees it read", async () => {
    await ap.locator("#offered li button", { hasText: "Accept" }).first().click();
    await ap.locator("#mine li").first().waitFor({ timeout: T });
    await ap.locator("#messages li", { hasText: "where is my order" }).waitFor({ timeout: T });
    await ap.locator("#text").fill("Hi! Alice here, let me check A-1009.");
    await ap.locator("#composer button[type=submit]").click();
    const reply = customerMsgs(cp).filter({ hasText: "Alice here" });
    await reply.waitFor({ timeout: T });
    assert.match(await reply.locator(".who").textContent(), /Alice Smith/);
    // the widget is open and visible: the console shows the reply as read
    await ap.locator("#messages li.out", { hasText: "Alice here" }).locator(".meta", { hasText: "read" }).waitFor({ timeout: T });
  });

  await step("alice has the chat open: the customer sees their message read, then alice typing", async () => {
    // the console marks the customer's messages read when the conversation is on screen
    await customerMsgs(cp).filter({ hasText: "where is my order" }).locator(".meta .read", { hasText: "read" }).waitFor({ timeout: T });
    const typing = widget(cp).locator(".typing");
    await ap.locator("#text").pressSequentially("Let me look", { delay: 40 });
    await typing.filter({ hasText: "Alice Smith is typing" }).waitFor({ timeout: T });
    await cp.screenshot({ path: `${SCREENSHOTS}/widget-typing.png` });
    // the draft cleared: the hint goes at once (typing: false)
    await ap.locator("#text").fill("");
    await typing.waitFor({ state: "hidden", timeout: T });
  });

  await step("the customer types: alice sees it; their new message is read while she has it open", async () => {
    await widget(cp).locator("textarea").pressSequentially("It was due Monday", { delay: 40 });
    await ap.locator("#c-typing", { hasText: "is typing" }).waitFor({ timeout: T });
    await widget(cp).locator("textarea").press("Enter");
    await ap.locator("#messages li", { hasText: "It was due Monday" }).waitFor({ timeout: T });
    await ap.locator("#c-typing").waitFor({ state: "hidden", timeout: T });
    await customerMsgs(cp).filter({ hasText: "It was due Monday" }).locator(".meta .read", { hasText: "read" }).waitFor({ timeout: T });
    await ap.locator("#messages li.in", { hasText: "It was due Monday" }).locator(".meta", { hasText: "read" }).waitFor({ timeout: T });
  });

  await step("a file goes from the customer to the agent", async () => {
    // a picture of a parcel, drawn by the browser
    const dataUrl = await cp.evaluate(() => {
      const c = document.createElement("canvas");
      c.width = 240; c.height = 150;
      const g = c.getContext("2d");
      g.fillStyle = "#dfe7f5"; g.fillRect(0, 0, 240, 150);
      g.fillStyle = "#c8955a"; g.fillRect(60, 40, 120, 80);
      g.fillStyle = "#a8773f"; g.fillRect(110, 40, 20, 80);
      g.fillStyle = "#1d2733"; g.font = "14px sans-serif"; g.fillText("A-1009", 96, 140);
      return c.toDataURL("image/png");
    });
    const png = Buffer.from(dataUrl.split(",")[1], "base64");
    await widget(cp).locator("input[type=file]").setInputFiles({ name: "box-photo.png", mimeType: "image/png", buffer: png });
    await customerMsgs(cp).filter({ hasText: "box-photo.png" }).locator(".meta", { hasText: /sent|read/i }).waitFor({ timeout: T });
    const link = ap.locator("#messages li a", { hasText: "box-photo.png" });
    await link.waitFor({ timeout: T });
    await ap.locator("#messages li img[alt='box-photo.png']").waitFor({ timeout: T });
    const href = await link.getAttribute("href");
    const got = await fetch(new URL(href, BASE));
    assert.equal(got.status, 200, "the agent's signed link downloads the file");
    assert.equal(Buffer.from(await got.arrayBuffer()).length, png.length);
  });

  await step("a file goes from the agent to the customer", async () => {
    await ap.locator("#file").setInputFiles({ name: "return-label.txt", mimeType: "text/plain", buffer: Buffer.from("RETURN LABEL A-1009\n") });
    await ap.locator("#text").fill("Here is your return label.");
    await ap.locator("#composer button[type=submit]").click();
    const link = customerMsgs(cp).locator("a", { hasText: "return-label.txt" });
    await link.waitFor({ timeout: T });
    const href = await link.getAttribute("href");
    const got = await fetch(href);
    assert.equal(got.status, 200, "the customer's signed link downloads the file");
    assert.equal(await got.text(), "RETURN LABEL A-1009\n");
  });

  await step("screenshots of the widget and the console at desktop width", async () => {
    await cp.screenshot({ path: `${SCREENSHOTS}/widget-desktop.png` });
    await ap.screenshot({ path: `${SCREENSHOTS}/console-desktop.png` });
  });

  await step("a reload of the customer page keeps the conversation", async () => {
    await cp.reload();
    await widget(cp).locator(".state", { hasText: "online" }).waitFor({ timeout: T });
    await customerMsgs(cp).filter({ hasText: "where is my order" }).waitFor({ timeout: T });
    await customerMsgs(cp).filter({ hasText: "Alice here" }).waitFor({ timeout: T });
    await customerMsgs(cp).filter({ hasText: "return-label.txt" }).waitFor({ timeout: T });
    assert.equal(await customerMsgs(cp).filter({ hasText: "where is my order" }).count(), 1, "no message shown twice");
  });

  await step("a file dropped on the widget is sent; one over the limit is refused before upload, naming the limit", async () => {
    const dropped = await cp.evaluateHandle(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(["order A-1009 invoice"], "invoice.txt", { type: "text/plain" }));
      return dt;
    });
    await widget(cp).locator(".panel").dispatchEvent("drop", { dataTransfer: dropped });
    await customerMsgs(cp).filter({ hasText: "invoice.txt" }).locator(".meta", { hasText: /sent|read/i }).waitFor({ timeout: T });
    await ap.locator("#messages li a", { hasText: "invoice.txt" }).waitFor({ timeout: T });
    const before = await customerMsgs(cp).count();
    await widget(cp).locator("input[type=file]").setInputFiles({
      name: "huge.bin", mimeType: "application/octet-stream", buffer: Buffer.alloc(11 * 1024 * 1024),
    });
    await widget(cp).locator(".notice", { hasText: "files may be up to 10 MB" }).waitFor({ timeout: T });
    assert.equal(await customerMsgs(cp).count(), before, "nothing was sent");
  });

  await step("screenshots at phone width", async () => {
    await cp.setViewportSize(PHONE);
    await ap.setViewportSize(PHONE);
    await cp.screenshot({ path: `${SCREENSHOTS}/widget-phone.png` });
    await ap.screenshot({ path: `${SCREENSHOTS}/console-phone.png` });
    await cp.setViewportSize(DESKTOP);
    await ap.setViewportSize(DESKTOP);
  });

  await step("a transfer moves the chat to bob's console; his reply reaches the customer", async () => {
    await ap.locator("#transfer-to").fill("bob");
    await ap.locator("#transfer").click();
    await bp.locator("#mine li", { hasText: "Visitor" }).waitFor({ timeout: T });
    await ap.locator("#mine li").waitFor({ state: "detached", timeout: T });
    await bp.locator("#mine li", { hasText: "Visitor" }).click();
    await bp.locator("#messages li", { hasText: "where is my order" }).waitFor({ timeout: T });
    await bp.locator("#text").fill("Bob here, I took over from Alice.");
    await bp.locator("#composer button[type=submit]").click();
    const reply = customerMsgs(cp).filter({ hasText: "Bob here" });
    await reply.waitFor({ timeout: T });
    assert.match(await reply.locator(".who").textContent(), /Bob Jones/);
  });

  await step("the supervisor overview lists both agents", async () => {
    await ap.locator("#overview-btn").click();
    await ap.locator("#overview-body [data-list=agents] tr[data-id=bob]").waitFor({ timeout: T });
    await ap.locator("#overview-body [data-list=agents] tr[data-id=alice]").waitFor({ timeout: T });
    await ap.screenshot({ path: `${SCREENSHOTS}/console-supervisor.png` });
  });

  await step("a socket from a foreign origin is refused before the upgrade (403 origin_not_allowed)", async () => {
    const key = new URL(WIDGET_URL).searchParams.get("key");
    const { status, body } = await upgrade(`/api/v1/webchat/ws?key=${key}`, "https://evil.example");
    assert.equal(status, 403);
    assert.equal(JSON.parse(body).error.code, "origin_not_allowed");
    // the widget on a site the account does not allow (a host name that resolves to the hub but
    // is another origin): it stays offline
    const foreign = await newPage(DESKTOP);
    await foreign.page.goto(WIDGET_URL.replace("127.0.0.1", "shop.foreign.test"));
    await widget(foreign.page).locator(".notice", { hasText: "not available" }).waitFor({ timeout: T });
    await foreign.context.close();
  });

  await step("a flood from one IP is throttled with a clear error and the agent sees no spam", async () => {
    const flood = 30;
    for (let i = 0; i < flood; i++) await customerSays(cp, `spam ${i}`);
    await widget(cp).locator(".notice", { hasText: "too fast" }).waitFor({ timeout: T });
    await cp.screenshot({ path: `${SCREENSHOTS}/widget-rate-limited.png` });
    await customerMsgs(cp).filter({ hasText: "not sent" }).first().waitFor({ timeout: T });
    const refused = await customerMsgs(cp).filter({ hasText: "not sent" }).count();
    await bp.waitForTimeout(1500);
    const seen = await bp.locator("#messages li", { hasText: /spam \d+/ }).count();
    console.log(`  ${flood} sent, ${refused} refused, ${seen} reached the agent`);
    assert.ok(refused >= flood - 12, `most of the flood is refused (${refused})`);
    assert.ok(seen <= 12, `the agent sees at most the burst (${seen})`);
    assert.equal(seen + refused, flood);
  });
} catch {
  // reported by step()
} finally {
  await browser.close();
}

function upgrade(path, origin) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, BASE), {
      headers: {
        Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", Origin: origin,
      },
    });
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("upgrade", (res, socket) => { socket.destroy(); resolve({ status: res.statusCode, body: "" }); });
    req.on("error", reject);
    req.end();
  });
}

console.log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
