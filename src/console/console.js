/* Switchboard reference agent console. Uses only the public agent WebSocket API
 * (docs/agent-api.md) and the file API (docs/fileserver.md). Plain JS, no build step. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  // ---- language: English or Russian, the switch's choice (shared with the admin panel) or the
  // browser's -------------------------------------------------------------------------------
  var RU = {
    "Language": "Язык", "Status": "Статус", "My status": "Мой статус", "Ready": "Готов", "Not ready": "Не готов", "Away": "Отошёл",
    "Supervisor": "Супервизор", "Sign out": "Выйти", "Sign in": "Вход",
    "signin.help": "Вставьте токен оператора (JWT из системы входа или switchboard token --sub alice).",
    "Token": "Токен", "Interactions": "Обращения", "Offered": "Предложены", "Mine": "Мои", "Queued": "В очереди",
    "Refresh": "Обновить", "Conversation": "Переписка", "Select an interaction.": "Выберите обращение.",
    "agent login or queue:name": "логин оператора или queue:имя", "Transfer to": "Передать", "Transfer": "Передать",
    "Close": "Закрыть", "Video call": "Видеозвонок", "Start a video call: the customer gets a link in this chat": "Начать видеозвонок: клиент получит ссылку в этом чате",
    "Attach a file": "Прикрепить файл", "Reply": "Ответ", "Reply…": "Ответ…", "Send": "Отправить", "Hide": "Скрыть",
    "Live view": "Онлайн-монитор", "connecting…": "подключение…", "online": "в сети", "reconnecting… ({code})": "переподключение… ({code})",
    "Sign-in refused: the token is invalid or expired.": "Вход отклонён: токен неверен или истёк.",
    "hello failed: {e}": "ошибка приветствия: {e}", "New chat offered: {name}": "Предложен новый чат: {name}",
    "Transferred to you: {name}": "Передан вам: {name}", "closed": "закрыто", "closed: {reason}": "закрыто: {reason}",
    "Accept": "Принять", "Decline": "Отклонить", "Take": "Взять", "{name} is typing…": "{name} печатает…",
    "deleted": "удалено", "read": "прочитано", "queued": "в очереди", "sent": "отправлено", "delivered": "доставлено", "failed": "ошибка",
    "received": "получено", "This interaction is not yours.": "Это обращение не ваше.", "Not sent: {e}": "Не отправлено: {e}",
    "Transferred.": "Передано.", "Closed.": "Закрыто.", "Video call started: the customer got the link.": "Видеозвонок начат: клиент получил ссылку.",
    "Call time": "Время звонка", "Schedule call": "Назначить звонок", "Scheduled calls": "Назначенные звонки",
    "Book a video call for this time: the customer gets the link now and a reminder before": "Назначить видеозвонок на это время: клиент получит ссылку сейчас и напоминание перед звонком",
    "Pick the call's time first.": "Сначала выберите время звонка.", "Call booked for {time}: the customer got the link.": "Звонок назначен на {time}: клиент получил ссылку.",
    "Video call with {name} at {time}: get ready.": "Видеозвонок с {name} в {time}: приготовьтесь.",
    "video call scheduled for {time}": "видеозвонок назначен на {time}", "video call moved to {time}": "видеозвонок перенесён на {time}",
    "video call at {time} cancelled": "видеозвонок в {time} отменён", "video call at {time}: reminder": "видеозвонок в {time}: напоминание",
    "The video call moved to {agent} with the chat.": "Видеозвонок передан {agent} вместе с чатом.",
    "The video call came with the chat: press Video call to join.": "Видеозвонок передан вместе с чатом: нажмите «Видеозвонок», чтобы подключиться.",
    "When": "Когда", "Move": "Перенести", "Cancel": "Отменить", "New time (YYYY-MM-DD HH:MM, local)": "Новое время (ГГГГ-ММ-ДД ЧЧ:ММ, местное)",
    "Moved.": "Перенесено.", "Cancelled.": "Отменено.", "Reminder": "Напоминание",
    "rejoined": "подключение снова", "ended": "завершён", "by {actor}": "— {actor}",
    "Waiting": "Ожидают", "In progress": "В работе", "Agents": "Операторы", "Queues": "Очереди",
    "Customer": "Клиент", "Channel": "Канал", "Queue": "Очередь", "Waits": "Ждёт", "Agent": "Оператор", "For": "Длительность",
    "Status ": "Статус", "Load": "Загрузка", "Queued ": "Ждут", "Offered ": "Предложено", "Assigned": "Назначено", "Longest wait": "Дольше всех",
    "Monitor": "Наблюдать", "Join": "Подключиться", "Join call": "В звонок", "offered to {agent}": "предложено: {agent}",
    "Nobody waits.": "Никто не ждёт.", "Nothing in progress.": "Ничего в работе.", "updated {time}": "обновлено {time}",
    "offline": "не в сети", "ready": "готов", "not_ready": "не готов", "away": "отошёл",
    "You monitor this chat: you see everything and write nothing.": "Вы наблюдаете за чатом: видите всё и ничего не пишете.",
    "Joined: you may write in this chat.": "Вы подключились: можете писать в этот чат.",
    "Actions": "Действия",
  };
  var LANG_KEY = "switchboard-lang";
  function detectLang() {
    try { var kept = localStorage.getItem(LANG_KEY); if (kept === "en" || kept === "ru") return kept; } catch (e) { /* blocked */ }
    var langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    for (var k = 0; k < langs.length; k++) {
      var base = String(langs[k]).toLowerCase().split("-")[0];
      if (base === "ru" || base === "en") return base;
    }
    return "en";
  }
  var lang = detectLang();
  function t(key, params) {
    var text = lang === "ru" && RU[key] !== undefined ? RU[key] : key;
    if (key === "signin.help" && lang !== "ru") text = "Paste an agent token (a JWT from your sign-on, or switchboard token --sub alice).";
    Object.keys(params || {}).forEach(function (p) { text = text.split("{" + p + "}").join(String(params[p])); });
    return text;
  }
  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach(function (e) { e.textContent = t(e.getAttribute("data-i18n")); });
    document.querySelectorAll("[data-i18n-aria]").forEach(function (e) { e.setAttribute("aria-label", t(e.getAttribute("data-i18n-aria"))); });
    document.querySelectorAll("[data-i18n-title]").forEach(function (e) { e.setAttribute("title", t(e.getAttribute("data-i18n-title"))); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (e) { e.setAttribute("placeholder", t(e.getAttribute("data-i18n-placeholder"))); });
    $("lang").value = lang;
  }
  applyLang();
  $("lang").addEventListener("change", function () {
    lang = this.value;
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* blocked */ }
    applyLang();
    if (me) { $("conn").textContent = t(ws && ws.readyState === 1 ? "online" : "connecting…"); renderLists(); renderLive(); }
  });
  var token = null, ws = null, me = null, lastSeq = 0, reqNo = 0, waiting = {}, backoff = 0;
  var interactions = {};   // id -> interaction (offered / assigned / joined)
  var selected = null, attachedFile = null, stopped = false;

  function toast(text) {
    var t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { t.hidden = true; }, 4000);
  }
  function human(n) {
    if (n < 1024) return n + " bytes";
    if (n < 1048576) return (n / 1024).toFixed(1).replace(/\.0$/, "") + " KB";
    return (n / 1048576).toFixed(1).replace(/\.0$/, "") + " MB";
  }
  function time(iso) { return new Date(iso).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" }); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  // ---- the socket -------------------------------------------------------------------------
  function request(cmd, args) {
    return new Promise(function (resolve, reject) {
      if (!ws || ws.readyState !== 1) { reject(new Error("not connected")); return; }
      var id = "c" + (++reqNo);
      waiting[id] = { resolve: resolve, reject: reject };
      ws.send(JSON.stringify({ id: id, cmd: cmd, args: args || {} }));
    });
  }

  function connect() {
    var url = location.origin.replace(/^http/, "ws") + "/api/v1/agent/ws?access_token=" + encodeURIComponent(token);
    $("conn").textContent = t("connecting…");
    ws = new WebSocket(url);
    var opened = false;
    ws.onopen = function () {
      opened = true;
      var args = lastSeq > 0 ? { resume_from: lastSeq } : {};
      request("hello", args).then(onHello, function (e) { toast(t("hello failed: {e}", { e: e.message })); });
    };
    ws.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.re !== undefined) {
        var w = waiting[f.re];
        if (!w) return;
        delete waiting[f.re];
        if (f.ok) w.resolve(f.data); else w.reject(new Error(f.error.message + " (" + f.error.code + ")"));
      } else if (f.update === "supervisor.overview") {
        live = f.data;
        liveAt = new Date();
        renderLive();
      } else if (f.event) {
        lastSeq = f.seq;
        onEvent(f.event, f.data);
      }
    };
    ws.onclose = function (ev) {
      Object.keys(waiting).forEach(function (k) { waiting[k].reject(new Error("disconnected")); });
      waiting = {};
      if (stopped) return;
      if (!opened && !me) {
        signOut(t("Sign-in refused: the token is invalid or expired."));
        return;
      }
      backoff = Math.min(backoff + 1, 5);
      $("conn").textContent = t("reconnecting… ({code})", { code: ev.code });
      setTimeout(connect, 400 * Math.pow(2, backoff));
    };
  }

  function onHello(data) {
    backoff = 0;
    me = data.agent;
    $("conn").textContent = t("online");
    $("who").textContent = me.name + " (" + me.login + ")";
    $("status").value = me.status;
    document.querySelector(".status-pick").hidden = false;
    $("signout").hidden = false;
    supervisor = me.roles.indexOf("supervisor") >= 0;
    $("overview-btn").hidden = !supervisor;
    $("signin").hidden = true;
    $("desk").hidden = false;
    interactions = {};
    data.interactions.forEach(function (i) { interactions[i.id] = i; });
    renderLists();
    refreshQueued();
    if (selected && interactions[selected]) openInteraction(selected);
    if (supervisor && (!$("overview").hidden || wantLive)) { wantLive = false; showOverview(true); }
  }

  function onEvent(name, d) {
    var i = d.interaction;
    switch (name) {
      case "interaction.offered":
      case "interaction.assigned":
      case "interaction.joined":
        interactions[i.id] = i;
        if (name === "interaction.offered") toast(t("New chat offered: {name}", { name: i.customer.name }));
        break;
      case "interaction.declined":
      case "interaction.offer_expired":
      case "interaction.closed":
        delete interactions[i.id];
        if (selected === i.id && name === "interaction.closed") appendEvent(d.reason ? t("closed: {reason}", { reason: d.reason }) : t("closed"));
        break;
      case "interaction.transferred":
        if (i.agent === me.login) {
          interactions[i.id] = i;
          toast(t("Transferred to you: {name}", { name: i.customer.name }) + (d.note ? " — " + d.note : ""));
        } else {
          delete interactions[i.id];
        }
        break;
      case "message.new":
        if (selected === d.message.interaction_id) {
          if (d.message.direction === "in") showTyping(null);
          appendMessage(d.message);
          markRead();
        } else {
          markUnread(d.message.interaction_id);
        }
        break;
      case "video.room":
        if (selected === d.interaction_id) {
          var who = d.participant ? d.participant.name + " (" + d.role + ")" : "";
          appendEvent("video call " + d.state + (who ? ": " + who : "") + (d.reason ? " — " + d.reason.replace(/_/g, " ") : ""));
        }
        if (d.state === "ended" && !$("call").hidden && $("call-frame").src.indexOf(d.room_id) >= 0) {
          $("call-meta").textContent = "ended";
        }
        if (d.state === "transferred" && d.to_agent === me.login) toast(t("The video call came with the chat: press Video call to join."));
        if (d.state === "transferred" && d.from_agent === me.login && $("call-frame").src.indexOf(d.room_id) >= 0) {
          $("call").hidden = true;
          $("call-frame").src = "about:blank";
          toast(t("The video call moved to {agent} with the chat.", { agent: d.to_agent }));
        }
        break;
      case "video.scheduled":
        var when = new Date(d.at).toLocaleString(lang, { dateStyle: "short", timeStyle: "short" });
        var said = { scheduled: "video call scheduled for {time}", moved: "video call moved to {time}", cancelled: "video call at {time} cancelled", reminder: "video call at {time}: reminder" }[d.state];
        if (selected === d.interaction_id && said) appendEvent(t(said, { time: when }));
        if (d.state === "reminder") {
          var ix = interactions[d.interaction_id];
          toast(t("Video call with {name} at {time}: get ready.", { name: ix ? ix.customer.name : d.interaction_id, time: when }));
        }
        if (supervisor && !$("overview").hidden) loadSchedules();
        break;
      case "message.read":
        d.message_ids.forEach(function (id) {
          if (msgs[id]) { msgs[id].status = "read"; appendMessage(msgs[id]); }
        });
        break;
      case "interaction.typing":
        // ephemeral: a replayed one whose time has passed means nothing
        if (selected === d.interaction_id && new Date(d.expires_at) > new Date()) {
          showTyping(d.author.name, new Date(d.expires_at) - new Date());
        }
        break;
      case "message.status":
      case "message.edited":
      case "message.deleted":
        if (d.message && selected === d.message.interaction_id) appendMessage(d.message);
        break;
      case "agent.status":
        if (d.agent === me.login) $("status").value = d.status;
        break;
    }
    renderLists();
    if (name.indexOf("interaction.") === 0) refreshQueued();
  }

  // ---- lists -------------------------------------------------------------------------------
  var unread = {};
  function markUnread(id) { unread[id] = true; renderLists(); }

  function item(i, buttons) {
    var li = el("li");
    li.setAttribute("data-id", i.id);
    if (i.id === selected) li.classList.add("active");
    var row = el("div", "row");
    row.appendChild(el("strong", null, i.customer.name + (unread[i.id] ? " •" : "")));
    li.appendChild(row);
    li.appendChild(el("span", "muted", i.channel + " · " + (i.queue || "") + " · " + time(i.created_at)));
    if (buttons.length) {
      var b = el("div", "row");
      buttons.forEach(function (x) { b.appendChild(x); });
      li.appendChild(b);
    }
    li.addEventListener("click", function (e) {
      if (e.target.tagName !== "BUTTON") openInteraction(i.id);
    });
    return li;
  }
  function button(label, cls, fn) {
    var b = el("button", "small " + (cls || ""), label);
    b.type = "button";
    b.addEventListener("click", fn);
    return b;
  }

  function renderLists() {
    var offered = $("offered"), mine = $("mine");
    var current = selected && interactions[selected];
    if (current) $("c-meta").textContent = current.channel + " · " + (current.queue || "") + " · " + current.state;
    offered.textContent = "";
    mine.textContent = "";
    Object.keys(interactions).map(function (k) { return interactions[k]; })
      .sort(function (a, b) { return a.created_at < b.created_at ? 1 : -1; })
      .forEach(function (i) {
        if (i.state === "offered" && i.agent === me.login) {
          offered.appendChild(item(i, [
            button(t("Accept"), "", function () { act("interaction.accept", { interaction_id: i.id }, i.id); }),
            button(t("Decline"), "secondary", function () { act("interaction.decline", { interaction_id: i.id }); })
          ]));
        } else if (i.state !== "closed") {
          mine.appendChild(item(i, []));
        }
      });
  }

  function refreshQueued() {
    request("interaction.list_queued", {}).then(function (data) {
      var q = $("queued");
      q.textContent = "";
      data.interactions.forEach(function (i) {
        q.appendChild(item(i, [button(t("Take"), "", function () { act("interaction.take", { interaction_id: i.id }, i.id); })]));
      });
    }, function () { /* not connected */ });
  }

  function act(cmd, args, open) {
    return request(cmd, args).then(function () {
      if (open) openInteraction(open);
      refreshQueued();
    }, function (e) { toast(e.message); });
  }

  // ---- a conversation ------------------------------------------------------------------------
  var shown = {}, msgs = {};
  function openInteraction(id) {
    if (selected !== id) showTyping(null);
    selected = id;
    delete unread[id];
    renderLists();
    var i = interactions[id];
    $("empty").hidden = true;
    $("convo").hidden = false;
    $("c-name").textContent = i ? i.customer.name : id;
    $("c-meta").textContent = i ? i.channel + " · " + (i.queue || "") + " · " + i.state : "";
    $("messages").textContent = "";
    shown = {};
    msgs = {};
    request("history.get", { interaction_id: id, limit: 200 }).then(function (page) {
      if (selected !== id) return;
      var entries = page.messages.map(function (m) { return { at: m.created_at, m: m }; })
        .concat(page.events.map(function (e) { return { at: e.at, e: e }; }));
      entries.sort(function (a, b) { return a.at < b.at ? -1 : a.at > b.at ? 1 : 0; });
      entries.forEach(function (x) {
        if (x.m) appendMessage(x.m);
        else appendEvent(describe(x.e));
      });
      markRead();
    }, function (e) { toast(e.message); });
  }

  function describe(e) {
    var ev = e.event || {};
    var what = (ev.kind || "event").replace(/_/g, " ");
    return time(e.at) + " · " + e.channel + " · " + what + (ev.actor ? " by " + ev.actor : "");
  }

  function appendEvent(text) {
    var li = el("li", "event", text);
    $("messages").appendChild(li);
    scrollDown();
  }
  function scrollDown() { var m = $("messages"); m.scrollTop = m.scrollHeight; }

  // ---- typing and read marks ------------------------------------------------------------------
  // Only in an interaction assigned to me: the hub refuses the others (monitoring, not mine).
  function writable() {
    var i = selected && interactions[selected];
    return !!(i && me && i.state === "assigned" && i.agent === me.login);
  }

  // the customer sees "<me> is typing…": a hint every 2.5 s while the draft changes, and a stop
  // when it is cleared
  var typingAt = 0, typingIn = null;
  $("text").addEventListener("input", function () {
    if (!writable()) return;
    var empty = !this.value.trim(), now = Date.now();
    if (empty) {
      if (typingIn === selected) request("interaction.typing", { interaction_id: selected, typing: false }).catch(function () {});
      typingIn = null;
      typingAt = 0;
    } else if (now - typingAt > 2500 || typingIn !== selected) {
      typingAt = now;
      typingIn = selected;
      request("interaction.typing", { interaction_id: selected }).catch(function () {});
    }
  });

  // "<customer> is typing…" under the conversation, until the hint expires or they write
  function showTyping(name, ms) {
    var box = $("c-typing");
    clearTimeout(showTyping.timer);
    if (!name) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = t("{name} is typing…", { name: name });
    box.hidden = false;
    showTyping.timer = setTimeout(function () { showTyping(null); }, Math.min(Math.max(ms, 300), 10000));
  }

  // the customer's messages on screen are read: up to the newest message of the conversation
  function markRead() {
    if (!writable() || document.visibilityState !== "visible") return;
    var newest = null, unreadIn = false;
    Object.keys(msgs).forEach(function (k) {
      var m = msgs[k];
      if (m.interaction_id !== selected) return;
      if (m.direction === "in" && m.status === "received") unreadIn = true;
      if (!newest || m.created_at > newest.created_at || (m.created_at === newest.created_at && m.id > newest.id)) newest = m;
    });
    if (!unreadIn || !newest) return;
    request("message.read", { interaction_id: selected, up_to: newest.id }).catch(function (e) { toast(e.message); });
  }
  document.addEventListener("visibilitychange", markRead);

  function appendMessage(m) {
    msgs[m.id] = m;
    var li = shown[m.id];
    if (!li) {
      li = el("li");
      $("messages").appendChild(li);
      shown[m.id] = li;
    }
    li.className = m.direction === "out" ? "out" : "in";
    li.setAttribute("data-id", m.id);
    li.textContent = "";
    li.appendChild(el("strong", null, m.author.name));
    li.appendChild(el("br"));
    if (m.deleted) {
      li.appendChild(el("em", null, t("deleted")));
    } else {
      m.files.forEach(function (f) {
        var a = el("a", null, f.name + " (" + human(f.size) + ")");
        a.href = "#";
        a.setAttribute("data-file", f.id);
        li.appendChild(a);
        fileLink(f.id).then(function (url) {
          a.href = url;
          a.target = "_blank";
          if (/^image\//.test(f.mime)) {
            var img = el("img");
            img.src = url;
            img.alt = f.name;
            if (a.parentNode === li) li.insertBefore(img, a); // (a newer render may have replaced it)
          }
        });
        li.appendChild(el("br"));
      });
      if (m.text) li.appendChild(document.createTextNode(m.text));
    }
    var status = m.direction === "out" ? " · " + t(m.status) + (m.error ? ": " + m.error : "") : m.status === "read" ? " · " + t("read") : "";
    li.setAttribute("data-status", m.status);
    li.appendChild(el("span", "meta", time(m.created_at) + status));
    scrollDown();
  }

  var links = {};
  function fileLink(id) {
    if (!links[id]) {
      links[id] = fetch("/api/v1/files/" + id + "/link?ttl_s=3600", {
        method: "POST", headers: { Authorization: "Bearer " + token }
      }).then(function (r) { return r.json(); }).then(function (j) { return j.url; });
    }
    return links[id];
  }

  function upload(file, interaction) {
    var q = "?name=" + encodeURIComponent(file.name) + "&account_id=" + encodeURIComponent(interaction.account_id);
    return fetch("/api/v1/files" + q, {
      method: "POST",
      headers: { Authorization: "Bearer " + token, "Content-Type": file.type || "application/octet-stream" },
      body: file
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
        return j.id;
      });
    });
  }

  $("composer").addEventListener("submit", function (e) {
    e.preventDefault();
    var i = interactions[selected];
    if (!i) { toast(t("This interaction is not yours.")); return; }
    var text = $("text").value.trim();
    var file = attachedFile;
    if (!text && !file) return;
    var send = function (fileIds) {
      var args = { interaction_id: i.id, client_msg_id: "k" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8) };
      if (text) args.text = text;
      if (fileIds.length) args.file_ids = fileIds;
      return request("message.send", args).then(function (m) {
        $("text").value = "";
        typingAt = 0;
        attachedFile = null;
        $("attached").textContent = "";
        appendMessage(m);
      });
    };
    (file ? upload(file, i).then(function (id) { return send([id]); }) : send([]))
      .catch(function (err) { toast(t("Not sent: {e}", { e: err.message })); });
  });
  $("text").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("file").addEventListener("change", function () {
    attachedFile = this.files[0] || null;
    $("attached").textContent = attachedFile ? attachedFile.name + " (" + human(attachedFile.size) + ")" : "";
    this.value = "";
  });

  $("transfer").addEventListener("click", function () {
    var to = $("transfer-to").value.trim();
    if (!selected || !to) return;
    var args = { interaction_id: selected };
    if (to.indexOf("queue:") === 0) args.to_queue = to.slice(6); else args.to_agent = to;
    request("interaction.transfer", args).then(function () {
      toast(t("Transferred."));
      $("transfer-to").value = "";
    }, function (e) { toast(e.message); });
  });
  $("close").addEventListener("click", function () {
    if (!selected) return;
    request("interaction.close", { interaction_id: selected, reason: "resolved" }).then(function () {
      toast(t("Closed."));
    }, function (e) { toast(e.message); });
  });
  // ---- video: the hub's call panel (the same one a CRM embeds), in an iframe --------------------
  function openCall(agentJoin, meta) {
    // the token travels in the fragment, which the panel reads and drops; it never reaches a server
    $("call-frame").src = agentJoin + "#token=" + encodeURIComponent(token);
    $("call-meta").textContent = meta || "";
    $("call").hidden = false;
  }
  $("video").addEventListener("click", function () {
    if (!selected) return;
    request("video.start", { interaction_id: selected }).then(function (room) {
      toast(t("Video call started: the customer got the link."));
      openCall(room.agent_join, room.quality + (room.mode === "one_way" ? ", customer's video only" : ""));
    }, function (e) {
      var open = /room ([0-9a-f-]{36})/.exec(e.message || "");
      if (/\(conflict\)$/.test(e.message || "") && open) {
        openCall(location.origin + "/video/agent?room=" + open[1], t("rejoined"));
      } else {
        toast(e.message);
      }
    });
  });
  // ---- scheduled calls: POST /api/v1/video/schedules (docs/video.md, Scheduled calls) -----------
  function rest(method, path, body) {
    var headers = { Authorization: "Bearer " + token };
    if (body) headers["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error ? j.error.message + " (" + j.error.code + ")" : r.statusText);
        return j;
      });
    });
  }
  $("schedule").addEventListener("click", function () {
    if (!selected) return;
    var at = $("schedule-at").value;
    if (!at) { toast(t("Pick the call's time first.")); return; }
    rest("POST", "/api/v1/video/schedules", { interaction_id: selected, at: new Date(at).toISOString() }).then(function (s) {
      toast(t("Call booked for {time}: the customer got the link.", { time: new Date(s.at).toLocaleString(lang, { dateStyle: "short", timeStyle: "short" }) }));
    }, function (e) { toast(e.message); });
  });
  function loadSchedules() {
    rest("GET", "/api/v1/video/schedules?state=scheduled&from=" + encodeURIComponent(new Date(Date.now() - 3600000).toISOString())).then(function (d) {
      var box = $("schedules");
      box.textContent = "";
      box.appendChild(table(t("Scheduled calls"), [t("When"), t("Agent"), t("Reminder"), t("Actions")], d.schedules.map(function (s) {
        var acts = el("div", "row");
        acts.appendChild(button(t("Move"), "secondary", function () {
          var next = window.prompt(t("New time (YYYY-MM-DD HH:MM, local)"));
          if (!next) return;
          rest("PATCH", "/api/v1/video/schedules/" + s.id, { at: new Date(next.replace(" ", "T")).toISOString() })
            .then(function () { toast(t("Moved.")); loadSchedules(); }, function (e) { toast(e.message); });
        }));
        acts.appendChild(button(t("Cancel"), "secondary", function () {
          rest("DELETE", "/api/v1/video/schedules/" + s.id).then(function () { toast(t("Cancelled.")); loadSchedules(); }, function (e) { toast(e.message); });
        }));
        return { id: s.id, cells: [new Date(s.at).toLocaleString(lang, { dateStyle: "short", timeStyle: "short" }), s.agent, t(s.reminder === "sent" ? "sent" : "queued"), acts] };
      }), "—", "schedules"));
    }, function (e) { toast(e.message); });
  }
  $("schedules-refresh").addEventListener("click", loadSchedules);

  $("call-hide").addEventListener("click", function () {
    $("call").hidden = true;
    $("call-frame").src = "about:blank";
  });

  $("status").addEventListener("change", function () {
    request("agent.set_status", { status: this.value }).catch(function (e) { toast(e.message); });
  });
  $("refresh-queued").addEventListener("click", refreshQueued);

  // ---- supervisor: the live view ---------------------------------------------------------------
  // supervisor.overview with live: true; the hub then pushes `update` frames whenever the picture
  // changes (docs/agent-api.md). Wait times tick here, every second, from the times it sent.
  var live = null, liveAt = null, supervisor = false, wantLive = false;
  function ago(iso) {
    var s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
  }
  function since(iso) {
    var span = el("span", "since", iso ? ago(iso) : "—");
    if (iso) span.setAttribute("data-since", iso);
    return span;
  }
  function table(caption, head, rows, empty, key) {
    var tbl = el("table"), tr = el("tr");
    if (key) tbl.setAttribute("data-list", key);
    tbl.appendChild(el("caption", null, caption));
    head.forEach(function (x) { var th = el("th", null, x); th.scope = "col"; tr.appendChild(th); });
    var thead = el("thead"); thead.appendChild(tr); tbl.appendChild(thead);
    var tbody = el("tbody");
    if (!rows.length) {
      var row = el("tr"), td = el("td", "muted", empty || "—");
      td.colSpan = head.length; row.appendChild(td); tbody.appendChild(row);
    }
    rows.forEach(function (r) {
      var row = el("tr");
      if (r.id) row.setAttribute("data-id", r.id);
      r.cells.forEach(function (c) {
        var td = el("td");
        if (c instanceof Node) td.appendChild(c); else td.textContent = c;
        row.appendChild(td);
      });
      tbody.appendChild(row);
    });
    tbl.appendChild(tbody);
    return tbl;
  }
  function join(i, mode) {
    return request("interaction.join", { interaction_id: i.id, mode: mode }).then(function (got) {
      interactions[got.id] = got;
      renderLists();
      openInteraction(got.id);
      toast(t(mode === "monitor" ? "You monitor this chat: you see everything and write nothing." : "Joined: you may write in this chat."));
      return got;
    }, function (e) { toast(e.message); });
  }
  function joinButtons(i) {
    var box = el("div", "row");
    var who = i.customer.name;
    var mon = button(t("Monitor"), "secondary", function () { join(i, "monitor"); });
    mon.setAttribute("aria-label", t("Monitor") + ": " + who);
    var part = button(t("Join"), "", function () { join(i, "participate"); });
    part.setAttribute("aria-label", t("Join") + ": " + who);
    box.appendChild(mon);
    box.appendChild(part);
    if (i.call) {
      var call = button(t("Join call"), "", function () {
        join(i, "participate").then(function () { openCall(location.origin + "/video/agent?room=" + i.call, t("Supervisor")); });
      });
      call.setAttribute("aria-label", t("Join call") + ": " + who);
      box.appendChild(call);
    }
    return box;
  }
  function renderLive() {
    var body = $("overview-body");
    if (!live || $("overview").hidden) return;
    body.textContent = "";
    $("overview-age").textContent = liveAt ? t("updated {time}", { time: liveAt.toLocaleTimeString(lang) }) : "";
    var waiting = live.interactions.filter(function (i) { return i.state !== "assigned"; });
    var working = live.interactions.filter(function (i) { return i.state === "assigned"; });
    body.appendChild(el("h3", null, t("Waiting") + " (" + waiting.length + ")"));
    body.appendChild(table(t("Waiting"), [t("Customer"), t("Channel"), t("Queue"), t("Waits"), t("Actions")], waiting.map(function (i) {
      var state = i.state === "offered" ? el("div", "muted", t("offered to {agent}", { agent: i.agent })) : null;
      var who = el("div"); who.appendChild(el("strong", null, i.customer.name)); if (state) who.appendChild(state);
      return { id: i.id, cells: [who, i.channel, i.queue || "", since(i.waiting_since), joinButtons(i)] };
    }), t("Nobody waits."), "waiting"));
    body.appendChild(el("h3", null, t("In progress") + " (" + working.length + ")"));
    body.appendChild(table(t("In progress"), [t("Customer"), t("Channel"), t("Agent"), t("For"), t("Actions")], working.map(function (i) {
      return { id: i.id, cells: [i.customer.name, i.channel, i.agent || "", since(i.assigned_at), joinButtons(i)] };
    }), t("Nothing in progress."), "working"));
    body.appendChild(el("h3", null, t("Agents")));
    body.appendChild(table(t("Agents"), [t("Agent"), t("Status "), t("Load")], live.agents.map(function (a) {
      var who = el("span");
      var dot = el("span", "dot " + (a.online ? "on" : "off"));
      dot.setAttribute("aria-hidden", "true");
      who.appendChild(dot);
      who.appendChild(document.createTextNode(a.name + " (" + a.login + ")"));
      var names = { ready: "Ready", not_ready: "Not ready", away: "Away" };
      var status = (a.online ? t(names[a.status] || a.status) : t("offline")) + (a.reason ? " · " + a.reason : "");
      return { id: a.login, cells: [who, status, a.open + "/" + a.max_interactions] };
    }), null, "agents"));
    body.appendChild(el("h3", null, t("Queues")));
    body.appendChild(table(t("Queues"), [t("Queue"), t("Queued "), t("Offered "), t("Assigned"), t("Longest wait")], live.queues.map(function (q) {
      return { id: q.name, cells: [q.name, String(q.queued), String(q.offered), String(q.assigned), since(q.oldest_queued_at)] };
    }), null, "queues"));
  }
  setInterval(function () {
    document.querySelectorAll("#overview-body [data-since]").forEach(function (span) { span.textContent = ago(span.getAttribute("data-since")); });
  }, 1000);
  function showOverview(on) {
    $("overview").hidden = !on;
    if (on) loadSchedules();
    $("overview-btn").setAttribute("aria-expanded", String(on));
    request("supervisor.overview", { live: on }).then(function (d) {
      if (!on) return;
      live = d;
      liveAt = new Date();
      renderLive();
    }, function (e) { toast(e.message); });
  }
  $("overview-btn").addEventListener("click", function () { showOverview($("overview").hidden); });

  // ---- sign in ---------------------------------------------------------------------------------
  function signIn(t) {
    token = t.trim();
    stopped = false;
    try { sessionStorage.setItem("switchboard-console-token", token); } catch (e) { /* blocked */ }
    connect();
  }
  function signOut(message) {
    stopped = true;
    try { sessionStorage.removeItem("switchboard-console-token"); } catch (e) { /* blocked */ }
    if (ws) ws.close();
    me = null;
    lastSeq = 0;
    $("desk").hidden = true;
    $("signin").hidden = false;
    $("signout").hidden = true;
    document.querySelector(".status-pick").hidden = true;
    $("who").textContent = "";
    $("conn").textContent = "";
    $("signin-error").textContent = message || "";
  }
  $("signin-form").addEventListener("submit", function (e) {
    e.preventDefault();
    signIn($("token").value);
  });
  $("signout").addEventListener("click", function () { signOut(""); });

  var fromHash = /[#&]token=([^&]+)/.exec(location.hash);
  wantLive = /[#&]view=supervisor(&|$)/.test(location.hash);
  if (fromHash) {
    history.replaceState(null, "", location.pathname);
    signIn(decodeURIComponent(fromHash[1]));
  } else {
    var kept = null;
    try { kept = sessionStorage.getItem("switchboard-console-token"); } catch (e) { /* blocked */ }
    if (kept) signIn(kept);
  }
})();
