/* Switchboard reference agent console. Uses only the public agent WebSocket API
 * (docs/agent-api.md) and the file API (docs/fileserver.md). Plain JS, no build step. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
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
  function time(iso) { return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
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
    $("conn").textContent = "connecting…";
    ws = new WebSocket(url);
    var opened = false;
    ws.onopen = function () {
      opened = true;
      var args = lastSeq > 0 ? { resume_from: lastSeq } : {};
      request("hello", args).then(onHello, function (e) { toast("hello failed: " + e.message); });
    };
    ws.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      if (f.re !== undefined) {
        var w = waiting[f.re];
        if (!w) return;
        delete waiting[f.re];
        if (f.ok) w.resolve(f.data); else w.reject(new Error(f.error.message + " (" + f.error.code + ")"));
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
        signOut("Sign-in refused: the token is invalid or expired.");
        return;
      }
      backoff = Math.min(backoff + 1, 5);
      $("conn").textContent = "reconnecting… (" + ev.code + ")";
      setTimeout(connect, 400 * Math.pow(2, backoff));
    };
  }

  function onHello(data) {
    backoff = 0;
    me = data.agent;
    $("conn").textContent = "online";
    $("who").textContent = me.name + " (" + me.login + ")";
    $("status").value = me.status;
    document.querySelector(".status-pick").hidden = false;
    $("signout").hidden = false;
    var supervisor = me.roles.indexOf("supervisor") >= 0;
    $("overview-btn").hidden = !supervisor;
    $("signin").hidden = true;
    $("desk").hidden = false;
    interactions = {};
    data.interactions.forEach(function (i) { interactions[i.id] = i; });
    renderLists();
    refreshQueued();
    if (selected && interactions[selected]) openInteraction(selected);
  }

  function onEvent(name, d) {
    var i = d.interaction;
    switch (name) {
      case "interaction.offered":
      case "interaction.assigned":
      case "interaction.joined":
        interactions[i.id] = i;
        if (name === "interaction.offered") toast("New chat offered: " + i.customer.name);
        break;
      case "interaction.declined":
      case "interaction.offer_expired":
      case "interaction.closed":
        delete interactions[i.id];
        if (selected === i.id && name === "interaction.closed") appendEvent("closed" + (d.reason ? ": " + d.reason : ""));
        break;
      case "interaction.transferred":
        if (i.agent === me.login) {
          interactions[i.id] = i;
          toast("Transferred to you: " + i.customer.name + (d.note ? " — " + d.note : ""));
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
            button("Accept", "", function () { act("interaction.accept", { interaction_id: i.id }, i.id); }),
            button("Decline", "secondary", function () { act("interaction.decline", { interaction_id: i.id }); })
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
        q.appendChild(item(i, [button("Take", "", function () { act("interaction.take", { interaction_id: i.id }, i.id); })]));
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
    var t = $("c-typing");
    clearTimeout(showTyping.timer);
    if (!name) { t.hidden = true; t.textContent = ""; return; }
    t.textContent = name + " is typing…";
    t.hidden = false;
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
      li.appendChild(el("em", null, "deleted"));
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
            li.insertBefore(img, a);
          }
        });
        li.appendChild(el("br"));
      });
      if (m.text) li.appendChild(document.createTextNode(m.text));
    }
    var status = m.direction === "out" ? " · " + m.status + (m.error ? ": " + m.error : "") : m.status === "read" ? " · read" : "";
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
    if (!i) { toast("This interaction is not yours."); return; }
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
      .catch(function (err) { toast("Not sent: " + err.message); });
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
      toast("Transferred.");
      $("transfer-to").value = "";
    }, function (e) { toast(e.message); });
  });
  $("close").addEventListener("click", function () {
    if (!selected) return;
    request("interaction.close", { interaction_id: selected, reason: "resolved" }).then(function () {
      toast("Closed.");
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
      toast("Video call started: the customer got the link.");
      openCall(room.agent_join, room.quality + (room.mode === "one_way" ? ", customer's video only" : ""));
    }, function (e) {
      var open = /room ([0-9a-f-]{36})/.exec(e.message || "");
      if (/\(conflict\)$/.test(e.message || "") && open) {
        openCall(location.origin + "/video/agent?room=" + open[1], "rejoined");
      } else {
        toast(e.message);
      }
    });
  });
  $("call-hide").addEventListener("click", function () {
    $("call").hidden = true;
    $("call-frame").src = "about:blank";
  });

  $("status").addEventListener("change", function () {
    request("agent.set_status", { status: this.value }).catch(function (e) { toast(e.message); });
  });
  $("refresh-queued").addEventListener("click", refreshQueued);

  // ---- supervisor ------------------------------------------------------------------------------
  function table(head, rows) {
    var t = el("table"), tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", null, h)); });
    t.appendChild(tr);
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c) { row.appendChild(el("td", null, c)); });
      t.appendChild(row);
    });
    return t;
  }
  function overview() {
    request("supervisor.overview", {}).then(function (d) {
      var body = $("overview-body");
      body.textContent = "";
      body.appendChild(el("h3", null, "Agents"));
      body.appendChild(table(["agent", "status", "open"], d.agents.map(function (a) {
        return [a.name + " (" + a.login + ")", a.status + (a.reason ? " · " + a.reason : ""), a.open + "/" + a.max_interactions];
      })));
      body.appendChild(el("h3", null, "Queues"));
      body.appendChild(table(["queue", "queued", "offered", "assigned", "oldest"], d.queues.map(function (q) {
        return [q.name, String(q.queued), String(q.offered), String(q.assigned), q.oldest_queued_at ? time(q.oldest_queued_at) : "—"];
      })));
    }, function (e) { toast(e.message); });
  }
  $("overview-btn").addEventListener("click", function () {
    var o = $("overview");
    o.hidden = !o.hidden;
    if (!o.hidden) overview();
  });
  $("overview-refresh").addEventListener("click", overview);

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
  if (fromHash) {
    history.replaceState(null, "", location.pathname);
    signIn(decodeURIComponent(fromHash[1]));
  } else {
    var kept = null;
    try { kept = sessionStorage.getItem("switchboard-console-token"); } catch (e) { /* blocked */ }
    if (kept) signIn(kept);
  }
})();
