/* Switchboard web chat widget. One tag on any page:
 *   <script src="https://HUB/webchat/widget.js" data-key="ACCOUNT_KEY" async></script>
 * Optional: data-open="true" (start opened), data-name="Visitor name", data-lang="ru" or "en"
 * (else the visitor's switch in the header, else the browser's language).
 * Plain JS, no build step. The customer token is kept in localStorage so a reload resumes the
 * conversation. Shows "<agent> is typing…" and marks the customer's own messages "✓✓ read" once
 * an agent has read them; tells the agents when the customer types. Protocol:
 * connectors/src/webchat/socket.rs. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var key = script.getAttribute("data-key") || "";
  var hub = new URL(script.src, location.href).origin;
  var storeKey = "switchboard-webchat:" + key;
  var startOpen = script.getAttribute("data-open") === "true";
  var visitorName = script.getAttribute("data-name") || "";

  // English or Russian: the visitor's switch, else the page's data-lang, else the browser's
  var LANG_KEY = "switchboard-webchat-lang";
  var RU = {
    "Open chat": "Открыть чат", "Chat": "Чат", "Close chat": "Закрыть чат", "connecting…": "подключение…",
    "Attach a file": "Прикрепить файл", "Your message": "Ваше сообщение", "Write a message…": "Напишите сообщение…",
    "Send": "Отправить", "Support": "Поддержка", "message deleted": "сообщение удалено", "edited": "изменено",
    "sending…": "отправляется…", "✓✓ read": "✓✓ прочитано", "✓ sent": "✓ отправлено", "sending": "отправляется",
    "read": "прочитано", "sent": "отправлено", "{name} is typing…": "{name} печатает…",
    "Messages may have at most {n} characters.": "Сообщение может быть не длиннее {n} символов.",
    "{file} is {size}: files may be up to {max}.": "{file} — {size}: файлы могут быть не больше {max}.",
    "Attachment: {name}": "Вложение: {name}", "Files up to {size} · drop a file here or use the clip": "Файлы до {size} · перетащите файл сюда или нажмите на скрепку",
    "online": "в сети", "reconnecting…": "переподключение…", "offline": "не в сети",
    "The chat is not available right now.": "Чат сейчас недоступен.", "not sent": "не отправлено",
    "rate_limited": "Слишком часто: подождите немного и отправьте снова.", "Language": "Язык", "bytes": "байт",
  };
  function pickLang() {
    try { var kept = localStorage.getItem(LANG_KEY); if (kept === "ru" || kept === "en") return kept; } catch (e) { /* blocked */ }
    var attr = (script.getAttribute("data-lang") || "").toLowerCase();
    if (attr === "ru" || attr === "en") return attr;
    var langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    for (var k = 0; k < langs.length; k++) {
      var base = String(langs[k]).toLowerCase().split("-")[0];
      if (base === "ru" || base === "en") return base;
    }
    return "en";
  }
  var lang = pickLang();
  function t(key, params) {
    var text = lang === "ru" && RU[key] !== undefined ? RU[key] : key;
    Object.keys(params || {}).forEach(function (p) { text = text.split("{" + p + "}").join(String(params[p])); });
    return text;
  }

  var css = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',sans-serif}",
    ".launcher{display:flex;align-items:center;justify-content:center;position:fixed;right:20px;bottom:20px;width:60px;height:60px;border-radius:50%;border:0;background:var(--sb-primary,#2f5bea);color:#fff;font-size:26px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}",
    ".launcher:focus-visible,button:focus-visible,textarea:focus-visible{outline:3px solid #ffb020;outline-offset:2px}",
    ".panel{position:fixed;right:20px;bottom:92px;width:370px;max-width:calc(100vw - 24px);height:560px;max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 8px 30px rgba(0,0,0,.22);display:flex;flex-direction:column;overflow:hidden;z-index:2147483000;color:#1d2733;font-size:15px}",
    ".panel[hidden]{display:none}",
    "@media (max-width:520px){.panel{right:0;bottom:0;width:100vw;max-width:100vw;height:100vh;max-height:100vh;border-radius:0}.launcher.open{display:none}}",
    "header{background:var(--sb-primary,#2f5bea);color:#fff;padding:14px 16px;display:flex;align-items:center;gap:8px}",
    "header h2{font-size:17px;margin:0;flex:1}",
    "header .state{font-size:12px}",
    "header button{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1}",
    ".log{flex:1;overflow-y:auto;padding:14px;background:#f4f6f9;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:80%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word;line-height:1.4}",
    ".msg.in{align-self:flex-end;background:var(--sb-primary,#2f5bea);color:#fff;border-bottom-right-radius:4px}",
    ".msg.out{align-self:flex-start;background:#fff;border:1px solid #dde3ec;border-bottom-left-radius:4px}",
    ".msg .who{display:block;font-size:12px;font-weight:600;color:#4a5a70;margin-bottom:2px}",
    ".msg .meta{display:block;font-size:11px;opacity:.9;margin-top:3px;text-align:right}",
    ".msg a{color:inherit}",
    ".msg .buttons{display:flex;gap:6px;margin-top:6px}",
    ".msg .buttons button{flex:1;font:inherit;padding:4px 8px;border:1px solid #2f5bea;border-radius:8px;background:#fff;color:#2f5bea;cursor:pointer}",
    ".msg img{max-width:100%;border-radius:8px;display:block;margin-top:4px}",
    ".msg.deleted{font-style:italic;opacity:.6}",
    ".welcome{align-self:center;font-size:13px;color:#4a5a70;text-align:center}",
    ".msg .meta .read{font-weight:600}",
    ".typing{padding:4px 16px 6px;font-size:13px;font-style:italic;color:#4a5a70;background:#f4f6f9}",
    ".typing[hidden]{display:none}",
    ".notice{padding:8px 14px;font-size:13px;background:#fff4e0;color:#7a4b00;border-top:1px solid #f0d9a8}",
    ".notice[hidden]{display:none}",
    "form{display:flex;gap:6px;padding:10px;border-top:1px solid #dde3ec;background:#fff;align-items:flex-end}",
    "textarea{flex:1;resize:none;border:1px solid #c7d0dc;border-radius:10px;padding:9px;font-size:15px;min-height:40px;max-height:120px}",
    "form button{border:0;border-radius:10px;background:var(--sb-primary,#2f5bea);color:#fff;padding:0 14px;height:40px;font-size:15px;cursor:pointer}",
    "form button.attach{background:#e8ecf2;color:#1d2733;padding:0 10px;display:flex;align-items:center}",
    ".limit{font-size:11px;color:#4f5d70;padding:0 12px 8px;background:#fff}",
    "header .lang{font-size:12px;font-weight:600;border:1px solid rgba(255,255,255,.7);border-radius:6px;padding:2px 6px;line-height:1.2}",
    ".drop{outline:3px dashed var(--sb-primary,#2f5bea);outline-offset:-8px}"
  ].join("\n");

  var host = document.createElement("div");
  host.id = "switchboard-webchat";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" + css + "</style>" +
    '<button class="launcher" type="button" aria-expanded="false"><svg width="28" height="28" viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z"/></svg></button>' +
    '<section class="panel" role="dialog" hidden>' +
    '<header><h2 class="title"></h2><span class="state" aria-live="polite"></span>' +
    '<button class="lang" type="button"></button>' +
    '<button class="close" type="button">&times;</button></header>' +
    '<div class="log" role="log" aria-live="polite"></div>' +
    '<div class="typing" aria-live="polite" hidden></div>' +
    '<div class="notice" role="alert" hidden></div>' +
    '<form><button class="attach" type="button"><svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true"><path fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" d="M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"/></svg></button>' +
    '<input type="file" hidden>' +
    '<textarea rows="1"></textarea>' +
    '<button class="send" type="submit"></button></form>' +
    '<div class="limit"></div>' +
    "</section>";
  (document.body || document.documentElement).appendChild(host);

  var $ = function (sel) { return root.querySelector(sel); };
  var launcher = $(".launcher"), panel = $(".panel"), log = $(".log"), notice = $(".notice");
  var form = $("form"), input = $("textarea"), fileInput = $("input[type=file]"), stateEl = $(".state");
  var limitEl = $(".limit"), titleEl = $(".title"), typingEl = $(".typing"), langEl = $(".lang");

  // the widget's own words in the chosen language (the title and welcome are the account's)
  function applyLang() {
    launcher.setAttribute("aria-label", t("Open chat"));
    if (!titleEl.textContent || titleEl.getAttribute("data-default") === "1") {
      titleEl.textContent = t("Chat");
      titleEl.setAttribute("data-default", "1");
    }
    panel.setAttribute("aria-label", hello && hello.title ? hello.title : t("Chat"));
    $(".close").setAttribute("aria-label", t("Close chat"));
    $(".attach").setAttribute("aria-label", t("Attach a file"));
    $(".attach").setAttribute("title", t("Attach a file"));
    input.setAttribute("aria-label", t("Your message"));
    input.setAttribute("placeholder", t("Write a message…"));
    $(".send").textContent = t("Send");
    langEl.textContent = lang === "ru" ? "EN" : "RU";
    langEl.setAttribute("lang", lang === "ru" ? "en" : "ru");
    langEl.setAttribute("aria-label", lang === "ru" ? "EN: English" : "RU: Русский");
    root.host.setAttribute("lang", lang);
    if (hello) limitEl.textContent = t("Files up to {size} · drop a file here or use the clip", { size: human(hello.max_file_bytes) });
    stateEl.textContent = t(stateKey);
    Object.keys(byId).forEach(function (id) { if (byId[id].message) render(byId[id], byId[id].message); });
  }
  var stateKey = "connecting…";
  function setState(key) { stateKey = key; stateEl.textContent = t(key); }
  langEl.addEventListener("click", function () {
    lang = lang === "ru" ? "en" : "ru";
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* blocked */ }
    applyLang();
  });

  var ws = null, hello = null, retry = 0, noticeTimer = null;
  var pending = {};   // client_msg_id -> {frame, bytes, el}
  var byId = {};      // message id -> element
  var ackedEl = {};   // message id -> pending element (own message, before its first sync)

  function open(show) {
    panel.hidden = !show;
    launcher.setAttribute("aria-expanded", String(show));
    launcher.classList.toggle("open", show);
    if (show) { input.focus(); scroll(); setTimeout(markRead, 300); }
  }
  launcher.addEventListener("click", function () { open(panel.hidden); });
  $(".close").addEventListener("click", function () { open(false); launcher.focus(); });

  function scroll() { log.scrollTop = log.scrollHeight; }
  function showNotice(text, ms) {
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    if (ms) noticeTimer = setTimeout(function () { notice.hidden = true; }, ms);
  }
  function human(n) {
    if (lang === "ru") {
      if (n < 1024) return n + " байт";
      if (n < 1048576) return (n / 1024).toFixed(1).replace(/\.0$/, "") + " КБ";
      return (n / 1048576).toFixed(1).replace(/\.0$/, "") + " МБ";
    }
    if (n < 1024) return n + " bytes";
    if (n < 1048576) return (n / 1024).toFixed(1).replace(/\.0$/, "") + " KB";
    return (n / 1048576).toFixed(1).replace(/\.0$/, "") + " MB";
  }
  function newId() {
    return "w" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  }
  function time(iso) {
    var d = iso ? new Date(iso) : new Date();
    return d.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
  }

  function render(el, m) {
    el.message = m;
    el.className = "msg " + (m.direction === "in" ? "in" : "out") + (m.deleted ? " deleted" : "");
    el.textContent = "";
    if (m.direction !== "in") {
      var who = document.createElement("span");
      who.className = "who";
      who.textContent = m.author && m.author.name ? m.author.name : t("Support");
      el.appendChild(who);
    }
    if (m.deleted) {
      el.appendChild(document.createTextNode(t("message deleted")));
    } else {
      (m.files || []).forEach(function (f) {
        var url = f.url ? hub + f.url : null;
        if (url && /^image\//.test(f.mime)) {
          var img = document.createElement("img");
          img.src = url; img.alt = f.name;
          el.appendChild(img);
        }
        var a = document.createElement(url ? "a" : "span");
        if (url) { a.href = url; a.target = "_blank"; a.rel = "noopener"; a.setAttribute("download", f.name); }
        a.textContent = f.name + " (" + human(f.size) + ")";
        el.appendChild(a);
        if (m.text) el.appendChild(document.createElement("br"));
      });
      if (m.text) el.appendChild(document.createTextNode(m.text));
      // buttons (reply keyboard or inline): a press sends the button's text
      var rows = m.keyboard && m.keyboard.rows ? m.keyboard.rows : [];
      rows.forEach(function (row) {
        var line = document.createElement("div");
        line.className = "buttons";
        row.forEach(function (b) {
          var button = document.createElement("button");
          button.type = "button";
          button.textContent = b.text;
          button.addEventListener("click", function () {
            queue({ type: "message", client_msg_id: newId(), text: b.text }, null, b.text);
          });
          line.appendChild(button);
        });
        el.appendChild(line);
      });
    }
    var meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = time(m.created_at) + (m.edited ? " · " + t("edited") : "");
    if (m.direction === "in") {
      // the customer's own message: sending, sent, or read by an agent
      var status = document.createElement("span");
      status.className = m.status === "read" ? "read" : "";
      status.textContent = " · " + (m.failed ? t("not sent") : m.pending ? t("sending…") : m.status === "read" ? t("✓✓ read") : t("✓ sent"));
      status.setAttribute("aria-label", m.failed ? t("not sent") : m.pending ? t("sending") : m.status === "read" ? t("read") : t("sent"));
      meta.appendChild(status);
      el.setAttribute("data-status", m.pending ? "pending" : m.status || "");
    }
    el.appendChild(meta);
  }

  function place(el) {
    var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    log.appendChild(el);
    if (nearBottom) scroll();
  }

  // tells the hub the customer has seen the agents' messages (shown while the panel is open)
  var unread = false;
  function markRead() {
    if (!unread || panel.hidden || document.visibilityState !== "visible" || !ws || ws.readyState !== 1) return;
    unread = false;
    ws.send(JSON.stringify({ type: "read" }));
  }
  document.addEventListener("visibilitychange", markRead);

  // "<agent> is typing…", until the hint expires, the agent stops, or their message arrives
  var typingTimer = null;
  function showTyping(name, ms) {
    clearTimeout(typingTimer);
    if (!name) { typingEl.hidden = true; typingEl.textContent = ""; return; }
    typingEl.textContent = t("{name} is typing…", { name: name });
    typingEl.hidden = false;
    typingTimer = setTimeout(function () { showTyping(null); }, Math.min(Math.max(ms || 6000, 500), 10000));
  }

  // tells the agents the customer is typing: once every 2 s at most while they type
  var typingSent = 0;
  input.addEventListener("input", function () {
    var now = Date.now();
    if (!input.value.trim() || now - typingSent < 2000 || !ws || ws.readyState !== 1) return;
    typingSent = now;
    ws.send(JSON.stringify({ type: "typing" }));
  });

  function onMessage(m) {
    if (m.direction === "out" && !byId[m.id]) showTyping(null);
    if (m.direction === "out" && m.status !== "read" && m.status !== "failed") {
      // a second later: the connector records `sent` right after this frame
      unread = true;
      setTimeout(markRead, 1000);
    }
    var el = byId[m.id] || ackedEl[m.id];
    if (!el) {
      el = document.createElement("div");
      place(el);
    }
    el.setAttribute("data-id", m.id);
    byId[m.id] = el;
    delete ackedEl[m.id];
    render(el, m);
  }

  function sendPending(p) {
    if (!ws || ws.readyState !== 1) return;
    ws.send(JSON.stringify(p.frame));
    if (p.bytes) ws.send(p.bytes);
  }

  function queue(frame, bytes, preview) {
    var el = document.createElement("div");
    render(el, { direction: "in", text: preview, pending: true, files: [] });
    el.setAttribute("data-client-id", frame.client_msg_id);
    place(el);
    scroll();
    var p = { frame: frame, bytes: bytes, el: el };
    pending[frame.client_msg_id] = p;
    sendPending(p);
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (hello && text.length > hello.max_text_chars) {
      showNotice(t("Messages may have at most {n} characters.", { n: hello.max_text_chars }), 5000);
      return;
    }
    input.value = "";
    queue({ type: "message", client_msg_id: newId(), text: text }, null, text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  function sendFile(file) {
    var max = hello ? hello.max_file_bytes : 10485760;
    if (file.size > max) {
      showNotice(t("{file} is {size}: files may be up to {max}.", { file: file.name, size: human(file.size), max: human(max) }), 6000);
      return;
    }
    file.arrayBuffer().then(function (buf) {
      var text = input.value.trim();
      input.value = "";
      queue({ type: "file", client_msg_id: newId(), name: file.name, mime: file.type || "application/octet-stream",
              size: file.size, text: text || null }, buf, t("Attachment: {name}", { name: file.name }) + (text ? "\n" + text : ""));
    });
  }
  $(".attach").addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    Array.prototype.forEach.call(fileInput.files, sendFile);
    fileInput.value = "";
  });
  panel.addEventListener("dragover", function (e) { e.preventDefault(); panel.classList.add("drop"); });
  panel.addEventListener("dragleave", function () { panel.classList.remove("drop"); });
  panel.addEventListener("drop", function (e) {
    e.preventDefault();
    panel.classList.remove("drop");
    Array.prototype.forEach.call(e.dataTransfer.files, sendFile);
  });

  function connect() {
    var url = hub.replace(/^http/, "ws") + "/api/v1/webchat/ws?key=" + encodeURIComponent(key);
    var token = null;
    try { token = localStorage.getItem(storeKey); } catch (e) { /* storage blocked */ }
    if (token) url += "&token=" + encodeURIComponent(token);
    if (visitorName) url += "&name=" + encodeURIComponent(visitorName);
    setState("connecting…");
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    var opened = false;
    ws.onopen = function () { opened = true; };
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === "hello") {
        hello = f;
        retry = 0;
        try { localStorage.setItem(storeKey, f.token); } catch (e) { /* storage blocked */ }
        if (f.title) { titleEl.textContent = f.title; titleEl.removeAttribute("data-default"); }
        // the account's branding colour (checked by the server: #rrggbb)
        if (typeof f.primary === "string" && /^#[0-9a-fA-F]{6}$/.test(f.primary)) host.style.setProperty("--sb-primary", f.primary);
        setState("online");
        applyLang();
        if (f.welcome && !log.querySelector(".welcome")) {
          var w = document.createElement("div");
          w.className = "welcome";
          w.textContent = f.welcome;
          log.insertBefore(w, log.firstChild);
        }
        notice.hidden = true;
        Object.keys(pending).forEach(function (id) { sendPending(pending[id]); });
      } else if (f.type === "message") {
        onMessage(f.message);
      } else if (f.type === "typing") {
        showTyping(f.typing ? f.name || t("Support") : null, f.expires_in_ms);
      } else if (f.type === "ack") {
        var p = pending[f.client_msg_id];
        if (p) {
          delete pending[f.client_msg_id];
          if (byId[f.message_id]) { p.el.remove(); } else { ackedEl[f.message_id] = p.el; }
        }
      } else if (f.type === "error") {
        var q = f.client_msg_id && pending[f.client_msg_id];
        if (q) {
          delete pending[f.client_msg_id];
          q.el.classList.add("deleted");
          q.el.querySelector(".meta").textContent = t("not sent");
        }
        // in English the hub's own words; in Russian ours for the codes we know
        var said = lang === "ru" && RU[f.code] ? RU[f.code] : f.message;
        showNotice(said, f.code === "rate_limited" ? (f.retry_after_s || 5) * 1000 + 3000 : 8000);
      }
    };
    ws.onclose = function () {
      ws = null;
      showTyping(null);
      retry = Math.min(retry + 1, 6);
      setState(opened ? "reconnecting…" : "offline");
      if (!opened && retry >= 2) showNotice(t("The chat is not available right now."), 0);
      setTimeout(connect, Math.min(30000, 500 * Math.pow(2, retry)));
    };
  }

  applyLang();
  open(startOpen);
  connect();
  window.SwitchboardWebchat = { open: function () { open(true); }, close: function () { open(false); } };
})();
