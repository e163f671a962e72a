/* Switchboard video call client: an ES module, no build step, no dependency.
 *
 *   import { joinCall } from "https://HUB/video/call.js";
 *   const call = await joinCall({ roomId, token, container: document.querySelector("#call") });
 *   call.on("chat", (e) => console.log(e.detail.from.name, e.detail.text));
 *   call.on("ended", (e) => console.log("ended:", e.detail.reason));
 *   await call.setMuted(true); await call.shareScreen(); call.sendChat("hello"); await call.leave();
 *
 * Protocol (docs/video.md, "Signalling"): one WebSocket per participant, the first frame
 * authenticates; the server is always the offerer and one offer covers the whole call. This page
 * answers with mids 0-2 (its microphone, camera and screen) set to `sendonly`; sources are
 * switched with RTCRtpSender.replaceTrack, so turning the camera on or sharing the screen never
 * renegotiates. Mids 3-8 carry the others, as said by `slots`. Chat and pointer events go over the
 * data channel `switchboard` the server opens. */

const HUB = (() => {
  try { return new URL(import.meta.url).origin; } catch { return location.origin; }
})();

/** The mids this page sends on (server's recvonly m-sections). */
const LOCAL_MIDS = { audio: "0", camera: "1", screen: "2" };
const POINTER_INTERVAL_MS = 40; // 25/s, under the server's 30/s per sender
const CHAT_MAX = 2000;
/** The largest file sent in a call (docs/video.md, "Screenshots and files"). */
export const FILE_MAX = 100 * 1024 * 1024;

// ---- language: English or Russian ---------------------------------------------------------
// The pages' words, like the console's, the admin panel's and the web chat widget's: keys are the
// English text itself, `{name}` marks a value; a key missing in Russian stays English. The
// language is ?lang=ru or ?lang=en in the page's address, else (the agent panel only) the
// console's and the admin panel's switch (localStorage "switchboard-lang"), else the browser's
// first language of the two, else English. The account's own texts (branding, the recording
// notice, the survey) are shown as they are.

const RU = {
  // both pages
  "Video call": "Видеозвонок",
  "Video call · {name}": "Видеозвонок · {name}",
  "Video call · Switchboard": "Видеозвонок · Switchboard",
  "This call is being recorded": "Звонок записывается",
  "REC": "ЗАПИСЬ",
  "Screenshot": "Снимок экрана",
  "Video": "Видео",
  "Call controls": "Управление звонком",
  "Mute": "Выключить микрофон",
  "Unmute": "Включить микрофон",
  "Camera off": "Выключить камеру",
  "Camera on": "Включить камеру",
  "Switch camera": "Сменить камеру",
  "Share screen": "Демонстрация экрана",
  "Stop sharing": "Остановить демонстрацию",
  "Leave": "Выйти из звонка",
  "End call": "Завершить звонок",
  "Chat": "Чат",
  "Call chat": "Чат звонка",
  "Chat messages": "Сообщения чата",
  "Message": "Сообщение",
  "Send a file (at most 100 MB)": "Прикрепить файл (не больше 100 МБ)",
  "Attach": "Файл",
  "Attach a file": "Прикрепить файл",
  "Send": "Отправить",
  "The call has ended": "Звонок завершён",
  "Connecting…": "Подключение…",
  "Reconnecting…": "Переподключение…",
  "Not connected": "Нет подключения",
  "Call ended": "Звонок завершён",
  "Could not join: {e}": "Не удалось подключиться: {e}",
  "No video to take a screenshot of yet.": "Пока нет видео, с которого можно сделать снимок.",
  "The agent ended the call.": "Оператор завершил звонок.",
  "Everyone left the call.": "Все участники вышли из звонка.",
  "You left the call.": "Вы вышли из звонка.",
  "This call has already ended.": "Этот звонок уже завершён.",
  // the customer page
  "Send the agent a picture of the video": "Отправить оператору снимок видео",
  "Join the video call": "Подключиться к видеозвонку",
  "Join the video call with {name}": "Видеозвонок с компанией {name}",
  "Our support team invited you to a video call in this browser. Nothing to install.":
    "Служба поддержки приглашает вас на видеозвонок прямо в браузере. Ничего устанавливать не нужно.",
  "consent.default":
    "Когда вы подключитесь, браузер запросит доступ к камере и микрофону. Ваше видео, голос и сообщения, которые вы " +
    "пишете здесь, видят только участники звонка: оператор и, при необходимости, его руководитель. Вы можете выключить " +
    "микрофон или камеру либо выйти из звонка в любой момент.",
  "recording.default":
    "Звонок записывается: ваше видео, ваш голос и голос оператора хранит компания, с которой вы говорите, по своим " +
    "правилам хранения данных. Если вы не согласны, подключитесь без записи.",
  "I agree that this call is recorded": "Я даю согласие на запись звонка",
  "Join with camera": "Подключиться с камерой",
  "Join with sound only": "Подключиться только со звуком",
  "The agent asks where you are. If you agree, your browser asks you to allow your location; the agent sees the address and a map.":
    "Оператор просит сообщить, где вы находитесь. Если вы согласны, браузер запросит доступ к геопозиции; оператор увидит адрес и карту.",
  "Share my location": "Отправить геопозицию",
  "Not now": "Не сейчас",
  "1: very poor, 5: excellent": "1 — очень плохо, 5 — отлично",
  "Thank you for your feedback.": "Спасибо за вашу оценку!",
  "Continue": "Продолжить",
  "Continue to {host}": "Перейти на {host}",
  "You can close this page. To talk again, reply in the chat you wrote from.":
    "Эту страницу можно закрыть. Чтобы продолжить разговор, напишите в тот же чат, из которого вы обращались.",
  "This call link is not valid any more. Ask for a new one in the chat you wrote from.":
    "Эта ссылка на звонок больше не действует. Попросите новую в чате, из которого вы обращались.",
  "This call does not exist any more.": "Этого звонка больше нет.",
  "This call already has all its participants.": "В этом звонке уже все участники.",
  "The call service cannot be reached. Check your connection and try again.":
    "Сервис видеозвонков недоступен. Проверьте подключение к интернету и попробуйте ещё раз.",
  "The call link expired.": "Срок действия ссылки на звонок истёк.",
  "You joined this call from another tab or device.": "Вы подключились к этому звонку из другой вкладки или с другого устройства.",
  "The connection was lost.": "Связь прервалась.",
  "Camera or microphone access was blocked. You can still chat; allow access in the browser's site settings to be seen and heard.":
    "Доступ к камере или микрофону запрещён. Вы можете писать в чат; чтобы вас было видно и слышно, разрешите доступ в настройках сайта в браузере.",
  "No camera or microphone was found. You can still chat.": "Камера или микрофон не найдены. Вы можете писать в чат.",
  "This page needs the call link you received.": "Откройте эту страницу по ссылке на звонок, которую вы получили.",
  "Could not send: {e}": "Не удалось отправить: {e}",
  "Waiting for the agent to join…": "Ожидаем оператора…",
  "In a call with {names}": "На связи: {names}",
  "{name} joined": "{name} — подключение к звонку",
  "{name} left": "{name} — выход из звонка",
  // the agent panel
  "Starting…": "Запуск…",
  "A link for the customer, to paste where they are": "Ссылка для клиента, чтобы отправить её туда, где он на связи",
  "Copy customer link": "Скопировать ссылку для клиента",
  "Link by SMS": "Ссылка по SMS",
  "Ask location": "Запросить геопозицию",
  "A picture of the large video, to draw on and send to the customer": "Снимок большого видео: можно сделать пометки и отправить клиенту",
  "Invite supervisor": "Пригласить супервизора",
  "Supervisor link (they open it signed in with their own token):": "Ссылка для супервизора (он открывает её, войдя со своим токеном):",
  "Customer link:": "Ссылка для клиента:",
  "Send the customer the call link by SMS:": "Отправить клиенту ссылку на звонок по SMS:",
  "Sign in to join the call": "Войдите, чтобы подключиться к звонку",
  "Paste your agent or supervisor token (the one your console uses).": "Вставьте токен оператора или супервизора (тот же, что в консоли).",
  "Token": "Токен",
  "Join": "Подключиться",
  "Sign in": "Вход",
  "Video; click or drag on the customer's video to point at something": "Видео; щёлкните или проведите по видео клиента, чтобы показать указателем",
  "The room expired.": "Срок действия звонка истёк.",
  "You joined this call from another tab.": "Вы подключились к этому звонку из другой вкладки.",
  "The connection to the hub was lost.": "Связь с сервером прервалась.",
  "Your token was refused (expired or not valid). Sign in again.": "Токен не принят (истёк или недействителен). Войдите снова.",
  "You may not join this call (only its agent and a supervisor can).": "Вы не можете подключиться к этому звонку (только его оператор и супервизор).",
  "This call does not exist.": "Такого звонка нет.",
  "This call already has its supervisor.": "К этому звонку уже подключён супервизор.",
  "The video service cannot be reached.": "Сервис видеозвонков недоступен.",
  "This page needs ?room=<room id>.": "Странице нужен параметр ?room=<идентификатор звонка>.",
  "You asked for the customer's location.": "Вы запросили геопозицию клиента.",
  "This call is to be recorded once the customer agrees.": "Звонок будет записываться, когда клиент даст согласие.",
  "The call is being recorded.": "Звонок записывается.",
  "One-way call: you see and hear the customer; they see the chat only.": "Односторонний звонок: вы видите и слышите клиента, а он видит только чат.",
  "You joined muted with your camera off.": "Вы подключились с выключенными микрофоном и камерой.",
  "Supervising": "Наблюдение",
  "Call": "Звонок",
  "waiting for the customer…": "ожидаем клиента…",
  "connecting…": "подключение…",
  "{name} ({role}) joined": "{name} ({role}) — подключение к звонку",
  "{name} ({role}) left": "{name} ({role}) — выход из звонка",
  "{name} is sharing their screen": "{name} показывает свой экран",
  "The customer": "Клиент",
  "Copied.": "Скопировано.",
  "Copy it (Ctrl+C).": "Скопируйте её (Ctrl+C).",
  "No link: {e}": "Нет ссылки: {e}",
  "Sent, waiting for delivery…": "Отправлено, ждём доставки…",
  "Delivered.": "Доставлено.",
  "Not delivered": "Не доставлено",
  "Sending…": "Отправляется…",
  "Call link sent by SMS to {phone}": "Ссылка на звонок отправлена по SMS на номер {phone}",
  "SMS to {phone}: {state}": "SMS на номер {phone}: {state}",
  "Not sent: {e}": "Не отправлено: {e}",
  // the call module (videos, chat, files, the screenshot editor)
  "Agent": "Оператор",
  "Customer": "Клиент",
  "Supervisor": "Супервизор",
  "Participant": "Участник",
  "agent": "оператор",
  "customer": "клиент",
  "supervisor": "супервизор",
  "Good connection": "Хорошая связь",
  "Fair connection": "Средняя связь",
  "Poor connection": "Плохая связь",
  "connection {level}": "связь: {level}",
  "loss {loss}%, jitter {jitter} ms": "потери {loss}%, джиттер {jitter} мс",
  ", round trip {rtt} ms": ", задержка туда и обратно {rtt} мс",
  ", {out} kbit/s sent, {in} kbit/s received": ", отправлено {out} кбит/с, получено {in} кбит/с",
  "microphone off": "микрофон выключен",
  "Other videos": "Другие видео",
  "Turn on sound": "Включить звук",
  "You": "Вы",
  "Your screen": "Ваш экран",
  "{name}'s screen": "Экран: {name}",
  "{label} (preview)": "{label} (предпросмотр)",
  "{label}, video": "{label}, видео",
  "Write a message": "Напишите сообщение",
  "Chat connects with the call…": "Чат подключится вместе со звонком…",
  "{name} · location": "{name} · геопозиция",
  "Open the map": "Открыть карту",
  "Map of the location": "Карта с отмеченным местом",
  "No location: {reason}": "Геопозиция не получена: {reason}",
  "declined": "клиент отказался",
  "this browser cannot tell its location": "браузер не умеет определять геопозицию",
  "the browser's permission was refused": "в браузере не дано разрешение",
  "the browser could not find the location": "браузер не смог определить геопозицию",
  "{name} · screenshot": "{name} · снимок экрана",
  "{name} · file": "{name} · файл",
  "Screenshot {name}": "Снимок экрана {name}",
  "Sending {name}": "Отправляется {name}",
  "screenshot": "снимок экрана",
  "{name} is larger than {max}, the most a call takes.": "{name} больше {max}: это предел для файлов в звонке.",
  "Draw on the screenshot": "Пометки на снимке экрана",
  "Pen": "Карандаш",
  "Arrow": "Стрелка",
  "Text": "Текст",
  "Text, then click the picture": "Введите текст и щёлкните по снимку",
  "Text to place": "Текст для надписи",
  "Red": "Красный",
  "Yellow": "Жёлтый",
  "Green": "Зелёный",
  "Blue": "Синий",
  "White": "Белый",
  "Black": "Чёрный",
  "Undo": "Отменить действие",
  "Cancel": "Отмена",
  "camera": "камера",
  "microphone": "микрофон",
  "screen": "экран",
  "{what}: {e}": "{what}: {e}",
  "could not reach the video server ({code})": "не удалось связаться с сервером видеозвонков ({code})",
  "the upload failed ({status})": "файл не загрузился ({status})",
  "the upload broke off": "загрузка файла прервалась",
  "a chat message is at most {n} characters": "сообщение в чате может быть не длиннее {n} символов",
  "the chat is not connected yet": "чат ещё не подключён",
  "this room sends no media from your side (one-way)": "в этом звонке ваше видео и звук не передаются (односторонний звонок)",
  "the call has ended": "звонок завершён",
  "screen sharing is not available on this device": "демонстрация экрана недоступна на этом устройстве",
  "only the agent ends the call": "завершить звонок может только оператор",
};

/** The English of the keys that are not English text themselves. */
const EN = {
  "consent.default":
    "When you join, your browser asks to use your camera and microphone. Your video, voice and the messages you write " +
    "here go only to the people in this call: the agent and, if needed, their supervisor. You can mute, turn your " +
    "camera off or leave at any time.",
  "recording.default":
    "This call is recorded: your video, your voice and the agent's are kept by the company you are talking to, under " +
    "its retention policy. Join without recording if you do not agree.",
};

/** The console's and the admin panel's switch (the agent panel follows it). */
const LANG_KEY = "switchboard-lang";

function pickLang() {
  const asked = (typeof location !== "undefined" && new URLSearchParams(location.search).get("lang")) || "";
  if (asked === "ru" || asked === "en") return asked;
  if (typeof document !== "undefined" && document.body && document.body.classList.contains("agent")) {
    try {
      const kept = localStorage.getItem(LANG_KEY);
      if (kept === "ru" || kept === "en") return kept;
    } catch { /* storage blocked */ }
  }
  const nav = typeof navigator !== "undefined" ? navigator : {};
  const langs = nav.languages && nav.languages.length ? nav.languages : [nav.language || "en"];
  for (const l of langs) {
    const base = String(l).toLowerCase().split("-")[0];
    if (base === "ru" || base === "en") return base;
  }
  return "en";
}

const current = pickLang();

/** The pages' language: "en" or "ru". */
export function lang() { return current; }

/** The text of `key` in the pages' language, `{name}` replaced from `params`. */
function tr(key, params) {
  let s = current === "ru" && RU[key] !== undefined ? RU[key] : EN[key] !== undefined ? EN[key] : key;
  if (params) for (const [k, v] of Object.entries(params)) s = s.split(`{${k}}`).join(String(v));
  return s;
}
export { tr as t };

/** Whether `text` (e.g. the branding's consent text) is the built-in English of `key`, which the
 * page then shows in its own language; the account's own texts are shown as they are. */
export function isDefaultText(key, text) {
  const squash = (s) => String(s || "").replace(/\s+/g, " ").trim();
  return squash(text) === squash(EN[key]);
}

/** Translates the page's static words: data-i18n (text), data-i18n-title, data-i18n-aria
 * (aria-label), data-i18n-placeholder; sets <html lang>. */
export function applyLang(root = document) {
  if (root === document) document.documentElement.lang = current;
  root.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = tr(e.getAttribute("data-i18n")); });
  root.querySelectorAll("[data-i18n-title]").forEach((e) => { e.setAttribute("title", tr(e.getAttribute("data-i18n-title"))); });
  root.querySelectorAll("[data-i18n-aria]").forEach((e) => { e.setAttribute("aria-label", tr(e.getAttribute("data-i18n-aria"))); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((e) => { e.setAttribute("placeholder", tr(e.getAttribute("data-i18n-placeholder"))); });
}

/**
 * Join a call. Resolves with a Call once the server has answered `joined` (media keeps
 * connecting in the background: listen to "state"). Rejects with an Error whose `code` is the
 * server's error code (`unauthorized`, `room_ended`, `room_full`, ...) if the join is refused.
 *
 * options:
 *   server     the hub's base URL (default: where this module was loaded from)
 *   link       the customer link token (the last part of /call/<token>), or
 *   roomId, token   the room id and an agent or supervisor JWT
 *   container  optional element: the call renders its video tiles there (CallView)
 *   audio, video   start the microphone / camera (default true; ignored where the room's mode
 *              sends nothing from this role)
 *   muted      join with the microphone muted (default false)
 *   pointer    let a click or drag on the main remote video send pointer events (default: agent
 *              and supervisor roles)
 *   reconnect  rejoin after a lost socket (default true)
 *   consent    the customer's answer to a recorded call's notice (see callInfo): true records
 *              the call, false joins it unrecorded
 */
export async function joinCall(options = {}) {
  const call = new Call(options);
  await call._start();
  return call;
}

/**
 * What the customer page shows before joining: `{state, record, consent_text, survey, branding}`
 * (whether the call is recorded and the notice to consent to, the survey after the call, the
 * branding for applyBranding). The link travels in the body, never in a URL.
 */
export async function callInfo(link, server = HUB) {
  const res = await fetch(server.replace(/\/+$/, "") + "/api/v1/video/link", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ link }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || res.statusText), { code: body.error && body.error.code });
  return body;
}

/** Sends the customer's answers to the survey after the call (`survey` of callInfo):
 * `rating` 1-5, `answers` {question id: text}. Resolves to the stored survey; rejects with an
 * Error carrying the server's `code` (`conflict`: answered already). */
export async function answerSurvey(link, rating, answers = {}, server = HUB) {
  const res = await fetch(server.replace(/\/+$/, "") + "/api/v1/video/survey", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ link, rating, answers }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || res.statusText), { code: body.error && body.error.code });
  return body;
}

/**
 * Applies a call's `branding` (of callInfo, or of the room for the agent panel): the colours as
 * the CSS custom properties --brand-primary, --brand-background and --brand-text, the company
 * name into `name` and the document's title, the logo into `logo` (an <img>, hidden without
 * one). The server checked every value (#rrggbb colours, https URLs); a missing field keeps the
 * page's own.
 */
export function applyBranding(branding, { name, logo } = {}) {
  if (!branding) return;
  const root = document.documentElement.style;
  const colour = (v) => typeof v === "string" && /^#[0-9a-fA-F]{6}$/.test(v);
  for (const key of ["primary", "background", "text"]) {
    if (colour(branding[key])) root.setProperty(`--brand-${key}`, branding[key]);
  }
  if (branding.company_name) {
    if (name) name.textContent = branding.company_name;
    document.title = tr("Video call · {name}", { name: branding.company_name });
  }
  if (logo) {
    const url = typeof branding.logo_url === "string" && branding.logo_url.startsWith("https://") ? branding.logo_url : "";
    if (url) logo.src = url;
    logo.hidden = !url;
  }
}

/** How long a pointer's trail dot and a click's ripple stay, in ms; the most of each on a tile. */
const TRAIL_MS = 1000;
const TRAIL_MAX = 24;

/** Quality levels, worst last. */
export const QUALITY_LEVELS = ["good", "fair", "poor"];

/** One participant's view of a call. Events (CustomEvent, data in `detail`):
 *   state {state: "connecting"|"connected"|"reconnecting"|"ended"}
 *   joined {participant, room}            this page joined (again, after a reconnect)
 *   participant-joined {participant}, participant-left {participant}
 *   media {participant}                  a participant's audio/camera/screen flags changed
 *   tracks {}                            the remote tracks or slots changed (see remoteTracks())
 *   local {audio, camera, screen, muted} this page's sources changed
 *   chat {from, at, text, self}          a chat message (self: sent from this page)
 *   pointer {from, at, target, x, y}     a pointer event from another participant
 *   location-request {from}              the agent asks for the customer's location
 *   location {from, at, lat, lon, accuracy, address, map_url, preview_url, self}  a shared location
 *   location-denied {from, reason}       the customer declined, or the browser could not tell
 *   chat-ready {}                        the data channel is open
 *   ended {reason}                       the call is over for this page (reason: ended_by_agent,
 *                                        empty, expired, left, replaced, or an error code)
 *   error {code, message}                an error the server reported, or a device error
 *   quality {participant_id, level, loss_pct, jitter_ms, rtt_ms, bitrate_in_kbps, bitrate_out_kbps, self}
 *                                        a participant's connection as the SFU measures it
 *                                        (every 2 s; level good / fair / poor)
 *   recording {state}                    the call's recording started ("started")
 */
export class Call extends EventTarget {
  constructor(options) {
    super();
    this.options = { audio: true, video: true, muted: false, reconnect: true, ...options };
    this.server = (this.options.server || HUB).replace(/\/+$/, "");
    if (!this.options.link && !(this.options.roomId && this.options.token)) {
      throw new Error("joinCall needs link, or roomId and token");
    }
    this.state = "connecting";
    this.me = null; // {id, role, name}
    this.room = null; // {id, interaction_id, mode, quality}
    this.participants = new Map(); // id -> {id, role, name, media: {audio, camera, screen} | null}
    this.slots = []; // [{mid, participant_id, source}]
    this.local = { audio: null, camera: null, screen: null };
    this.muted = !!this.options.muted;
    this.facing = "user";
    this.cameraId = null;
    this.pc = null;
    this.dc = null;
    this.ws = null;
    this.negotiations = 0; // offers answered
    this._queue = Promise.resolve();
    this._closing = false;
    this._attempt = 0;
    this._redirect = null; // the signalling URL of the node hosting the call, once told
    this._redirects = 0;
    this._lastPointer = 0;
    this._restartTimer = null;
    this._lastRestart = 0;
    this._candidates = null; // buffered until the answer is sent
    this.connection = new Map(); // participant id -> the latest `quality` frame
    this.view = this.options.container ? new CallView(this, this.options.container, this.options) : null;
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(type, fn) {
    this.addEventListener(type, fn);
    return () => this.removeEventListener(type, fn);
  }

  _emit(type, detail = {}) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _setState(state) {
    if (this.state === state || this.state === "ended") return;
    this.state = state;
    this._emit("state", { state });
  }

  /** What this role may send in this room: nothing but chat goes back in a one_way room. */
  get canSend() {
    return !(this.room && this.room.mode === "one_way" && this.me && this.me.role !== "customer");
  }

  get quality() {
    return (this.room && this.room.quality) || { label: "720p", width: 1280, height: 720, max_bitrate: 2_500_000 };
  }

  // --- signalling -------------------------------------------------------------------------

  async _start() {
    // which devices exist (kinds are known before any permission): for the call records
    try {
      const list = await navigator.mediaDevices.enumerateDevices();
      this._devices = { camera: list.some((d) => d.kind === "videoinput"), microphone: list.some((d) => d.kind === "audioinput") };
    } catch { this._devices = null; }
    return new Promise((resolve, reject) => {
      this._joinWaiter = { resolve, reject };
      this._connect();
    });
  }

  _connect() {
    const url = this._redirect || this.server.replace(/^http/, "ws") + "/api/v1/video/ws";
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      const join = this.options.link
        ? { type: "join", link: this.options.link }
        : { type: "join", room_id: this.options.roomId, token: this.options.token };
      if (this.options.link && typeof this.options.consent === "boolean") join.consent = this.options.consent;
      if (this._devices) join.devices = this._devices;
      ws.send(JSON.stringify(join));
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this._queue = this._queue.then(() => this._handle(msg)).catch((e) => this._fail("internal", e));
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this._lostSocket(ev);
    };
  }

  /** The devices the browser has (again once permission was asked): for the call records. */
  async _sendDevices() {
    try {
      const list = await navigator.mediaDevices.enumerateDevices();
      this._send({ type: "devices", camera: list.some((d) => d.kind === "videoinput"), microphone: list.some((d) => d.kind === "audioinput") });
    } catch { /* not reported */ }
  }

  _send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  async _handle(msg) {
    switch (msg.type) {
      case "joined": return this._onJoined(msg);
      case "offer": return this._onOffer(msg);
      case "slots": this.slots = msg.slots || []; this._emit("tracks"); return;
      case "candidate": // the server is ICE-lite and puts its candidate in the offer; accept trickle anyway
        if (this.pc && msg.candidate) await this.pc.addIceCandidate(msg.candidate).catch(() => {});
        return;
      case "participant_joined": {
        const p = this._addParticipant(msg.participant);
        this._emit("participant-joined", { participant: p });
        this._sendMedia(); // `media` is relayed, not kept: tell the newcomer what this page sends
        return;
      }
      case "participant_left": {
        const p = this.participants.get(msg.participant_id);
        this.participants.delete(msg.participant_id);
        this.slots = this.slots.filter((s) => s.participant_id !== msg.participant_id);
        if (p) this._emit("participant-left", { participant: p });
        this._emit("tracks");
        return;
      }
      case "media": {
        const p = this.participants.get(msg.participant_id);
        if (!p) return;
        p.media = { audio: !!msg.audio, camera: !!msg.camera, screen: !!msg.screen };
        this._emit("media", { participant: p });
        return;
      }
      case "quality": {
        this.connection.set(msg.participant_id, msg);
        this._emit("quality", { ...msg, self: !!this.me && msg.participant_id === this.me.id });
        return;
      }
      case "recording":
        if (this.room) this.room.recording = msg.state === "started";
        this._emit("recording", { state: msg.state });
        return;
      case "location_request": this._emit("location-request", { from: msg.from || {} }); return;
      case "file":
        if (msg.file) this._emit("file", { ...msg.file, self: !!this.me && msg.file.role === this.me.role });
        return;
      case "location": this._emit("location", { ...msg, self: !!this.me && msg.from && msg.from.id === this.me.id }); return;
      case "location_denied": this._emit("location-denied", { from: msg.from || {}, reason: msg.reason }); return;
      case "ended": return this._finish(msg.reason || "ended");
      case "error":
        if (msg.code === "room_on_other_node" && msg.url && !this.me && this._redirects < 3) {
          // another video node hosts the call: join there (docs/video.md, "Several video nodes")
          this._redirects++;
          this._redirect = msg.url;
          this._connect();
          return undefined;
        }
        return this._onError(msg);
      default: return undefined;
    }
  }

  _onError(msg) {
    const err = Object.assign(new Error(msg.message || msg.code), { code: msg.code });
    if (this._joinWaiter) {
      // a refused join: the server closes the socket; do not reconnect
      this._closing = true;
      const w = this._joinWaiter;
      this._joinWaiter = null;
      this._setState("ended");
      w.reject(err);
      return;
    }
    if (!this.me) { // a refused rejoin after a lost socket
      this._finish(msg.code);
      return;
    }
    this._emit("error", { code: msg.code, message: msg.message });
  }

  _addParticipant(p) {
    const known = this.participants.get(p.id);
    // media flags stay unknown (null) until the participant's first `media` frame, unless the
    // server includes them; a late joiner then relies on whether the tracks carry frames
    const entry = { media: null, ...known, ...p };
    this.participants.set(p.id, entry);
    return entry;
  }

  async _onJoined(msg) {
    this._attempt = 0;
    this._redirects = 0;
    this.me = msg.participant;
    this.room = msg.room;
    this.participants.clear();
    for (const p of msg.participants || []) this._addParticipant(p);
    this._newPeerConnection(msg.ice_servers || []);
    this._emit("joined", { participant: this.me, room: this.room });
    if (this._joinWaiter) {
      const w = this._joinWaiter;
      this._joinWaiter = null;
      // the first join: open the sources asked for (an offer may arrive meanwhile; the tracks
      // are attached to the negotiated transceivers when they are ready)
      if (this.canSend) {
        const wantAudio = this.options.audio !== false;
        const wantVideo = this.options.video !== false;
        Promise.all([
          wantAudio ? this.setMicrophone(true).catch((e) => this._deviceError("microphone", e)) : null,
          wantVideo ? this.setCamera(true).catch((e) => this._deviceError("camera", e)) : null,
        ]).then(() => { this._sendMedia(); this._sendDevices(); });
      } else {
        this._stopAll();
      }
      this._sendMedia();
      w.resolve(this);
    } else {
      this._sendMedia();
      await this._attachLocalTracks();
    }
  }

  _newPeerConnection(iceServers) {
    if (this.pc) { try { this.pc.close(); } catch { /* closed */ } }
    // iceTransportPolicy "relay": only TURN (troubleshooting, and the test that TURN works)
    const iceTransportPolicy = this.options.iceTransportPolicy === "relay" ? "relay" : "all";
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
    this.pc = pc;
    this.dc = null;
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      const frame = {
        type: "candidate",
        candidate: c && c.candidate ? {
          candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex,
          ...(c.usernameFragment ? { usernameFragment: c.usernameFragment } : {}),
        } : null,
      };
      if (!frame.candidate) { // end of candidates, said once per gathering
        if (this._endSent) return;
        this._endSent = true;
      }
      if (this._candidates) this._candidates.push(frame); else this._send(frame);
    };
    pc.ontrack = () => this._emit("tracks");
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "connected") this._setState("connected");
      else if (pc.connectionState === "failed") this._iceRestart(0);
    };
    pc.oniceconnectionstatechange = () => {
      if (pc !== this.pc) return;
      const s = pc.iceConnectionState;
      if (s === "disconnected") this._iceRestart(4000);
      else if (s === "failed") this._iceRestart(0);
      else if (s === "connected" || s === "completed") clearTimeout(this._restartTimer);
    };
    pc.ondatachannel = (e) => {
      if (e.channel.label !== "switchboard") return;
      this.dc = e.channel;
      this.dc.onopen = () => this._emit("chat-ready");
      this.dc.onmessage = (m) => this._onData(m.data);
      if (this.dc.readyState === "open") this._emit("chat-ready");
    };
  }

  _iceRestart(delay) {
    clearTimeout(this._restartTimer);
    this._restartTimer = setTimeout(() => {
      const s = this.pc && this.pc.iceConnectionState;
      if (!this.pc || (s !== "disconnected" && s !== "failed")) return;
      if (Date.now() - this._lastRestart < 5000) return this._iceRestart(5000);
      this._lastRestart = Date.now();
      this._setState("reconnecting");
      this._send({ type: "renegotiate" });
    }, delay);
  }

  async _onOffer(msg) {
    const pc = this.pc;
    if (!pc) return;
    this.slots = msg.slots || [];
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    const directions = sdpDirections(msg.sdp);
    for (const t of pc.getTransceivers()) {
      if (t.mid === null) continue;
      if (isLocalMid(t.mid)) {
        const serverReceives = directions[t.mid] === "recvonly" || directions[t.mid] === "sendrecv";
        t.direction = serverReceives && this.canSend ? "sendonly" : "inactive";
      } else if (directions[t.mid] === "sendonly" || directions[t.mid] === "sendrecv") {
        t.direction = "recvonly";
      }
    }
    await this._attachLocalTracks();
    const answer = await pc.createAnswer();
    this._candidates = [];
    this._endSent = false;
    await pc.setLocalDescription(answer);
    this._send({ type: "answer", sdp: pc.localDescription.sdp });
    this.negotiations += 1;
    const buffered = this._candidates;
    this._candidates = null;
    for (const frame of buffered) this._send(frame);
    await this._applyEncodings();
    this._emit("tracks");
  }

  _transceiver(mid) {
    return this.pc ? this.pc.getTransceivers().find((t) => t.mid === mid) : undefined;
  }

  async _attachLocalTracks() {
    for (const [source, mid] of Object.entries(LOCAL_MIDS)) {
      const t = this._transceiver(mid);
      if (!t) continue;
      const track = this.canSend ? this.local[source] : null;
      if (t.sender.track !== track) await t.sender.replaceTrack(track).catch(() => {});
    }
  }

  /** Caps what is sent to the room's quality: encoder bitrate and, when the source is larger,
   * a scale-down (cameras that ignore the getUserMedia constraints, screens). */
  async _applyEncodings() {
    const q = this.quality;
    for (const source of ["camera", "screen"]) {
      const t = this._transceiver(LOCAL_MIDS[source]);
      const track = this.local[source];
      if (!t || !track) continue;
      const params = t.sender.getParameters();
      if (!params.encodings || !params.encodings.length) continue;
      const s = track.getSettings();
      const long = Math.max(s.width || 0, s.height || 0), short = Math.min(s.width || 0, s.height || 0);
      const scale = Math.max(1, long / q.width || 1, short / q.height || 1);
      const enc = params.encodings[0];
      if (q.max_bitrate) enc.maxBitrate = q.max_bitrate;
      enc.scaleResolutionDownBy = scale;
      if (source === "screen") params.degradationPreference = "maintain-resolution";
      try { await t.sender.setParameters(params); } catch { /* not negotiated yet: applied after the answer */ }
    }
  }

  _lostSocket(ev) {
    if (this._closing || this.state === "ended") return;
    // a rejoin goes through the entry point again: if the node that hosted the call is gone,
    // the node it reaches takes the call over
    const redirected = this._redirect !== null;
    this._redirect = null;
    this._redirects = 0;
    if (this._joinWaiter && !this.me && !redirected) {
      // never joined: nothing to resume
      const w = this._joinWaiter;
      this._joinWaiter = null;
      this._setState("ended");
      w.reject(Object.assign(new Error(tr("could not reach the video server ({code})", { code: ev.code })), { code: "unreachable" }));
      return;
    }
    if (!this.options.reconnect || this._attempt >= 6) return this._finish("disconnected");
    this._setState("reconnecting");
    const delay = Math.min(8000, 500 * 2 ** this._attempt++);
    this.me = null;
    if (this.pc) { try { this.pc.close(); } catch { /* closed */ } this.pc = null; }
    this._emit("tracks");
    setTimeout(() => { if (!this._closing) this._connect(); }, delay);
  }

  _finish(reason) {
    if (this.state === "ended") return;
    this._closing = true;
    clearTimeout(this._restartTimer);
    this._stopAll();
    if (this.pc) { try { this.pc.close(); } catch { /* closed */ } }
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    this.pc = null;
    this._setState("ended");
    this._emit("tracks");
    this._emit("ended", { reason });
  }

  _fail(code, e) {
    this._emit("error", { code, message: String((e && e.message) || e) });
  }

  // --- data channel ------------------------------------------------------------------------

  _onData(data) {
    let m;
    try { m = JSON.parse(data); } catch { return; }
    if (m.from && this.me && m.from.id === this.me.id) return; // an echo of our own
    if (m.type === "chat" && typeof m.text === "string") {
      this._emit("chat", { from: m.from || {}, at: m.at, text: m.text, self: false });
    } else if (m.type === "pointer") {
      this._emit("pointer", { from: m.from || {}, at: m.at, target: m.target, x: clamp01(m.x), y: clamp01(m.y), click: m.click === true });
    }
  }

  get chatReady() { return !!(this.dc && this.dc.readyState === "open"); }

  /** Agent or supervisor: asks the customer for their location (the customer's page gets
   * `location-request`; everyone gets `location` or `location-denied` back). */
  requestLocation() {
    this._send({ type: "location_request" });
  }

  /** Customer: asks the browser for the position and sends it (the hub adds the address and
   * the map link and shows it to everyone as `location`); a refusal or failure is sent as
   * `location_denied`. Resolves to true when a position was sent. */
  shareLocation() {
    return new Promise((resolve) => {
      if (!navigator.geolocation) {
        this.declineLocation("this browser cannot tell its location");
        return resolve(false);
      }
      navigator.geolocation.getCurrentPosition(
        (pos) => {
          const { latitude: lat, longitude: lon, accuracy } = pos.coords;
          this._send({ type: "location", lat, lon, accuracy: Number.isFinite(accuracy) ? Math.min(accuracy, 100000) : null });
          resolve(true);
        },
        (err) => {
          this.declineLocation(err && err.code === 1 ? "the browser's permission was refused" : "the browser could not find the location");
          resolve(false);
        },
        { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 },
      );
    });
  }

  /** Customer: tells the others the location will not come. */
  declineLocation(reason = "declined") {
    this._send({ type: "location_denied", reason: String(reason).slice(0, 200) });
  }

  /** The hub's base URL for this call's REST calls: the node hosting the call once the join
   * was sent there (its files are announced to the call from that node). */
  _restBase() {
    if (this._redirect) return this._redirect.replace(/^ws/, "http").replace(/\/api\/v1\/video\/ws.*$/, "");
    return this.server;
  }

  _auth() {
    return this.options.link ? { "x-call-link": this.options.link } : { Authorization: `Bearer ${this.options.token}` };
  }

  async _rest(method, path) {
    const res = await fetch(this._restBase() + path, { method, headers: this._auth() });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || res.statusText), { code: body.error && body.error.code });
    return body;
  }

  /** Sends a file (a File or Blob) to the call: stored with the interaction, shown to everyone
   * in the call's chat (`file` event). `screenshot`: a JPEG screenshot (the hub writes the
   * customer's shared position into its EXIF). `onProgress(sent, total)` follows the upload.
   * Resolves to the stored file; rejects with an Error carrying the hub's `code`
   * (`file_too_large`, `not_jpeg`, `room_ended`, ...). At most FILE_MAX bytes. */
  sendFile(file, { name = file.name, screenshot = false, onProgress } = {}) {
    const room = this.room ? this.room.id : this.options.roomId;
    const query = new URLSearchParams();
    if (name) query.set("name", name);
    if (screenshot) query.set("screenshot", "true");
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${this._restBase()}/api/v1/video/rooms/${encodeURIComponent(room)}/files?${query}`);
      for (const [k, v] of Object.entries(this._auth())) xhr.setRequestHeader(k, v);
      xhr.setRequestHeader("content-type", file.type || "application/octet-stream");
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status === 201) return resolve(body);
        const err = body.error || {};
        reject(Object.assign(new Error(err.message || tr("the upload failed ({status})", { status: xhr.status })), { code: err.code || "upload_failed", status: xhr.status }));
      };
      xhr.onerror = () => reject(Object.assign(new Error(tr("the upload broke off")), { code: "upload_failed" }));
      xhr.send(file);
    });
  }

  /** The files sent in this call so far, oldest first. */
  async files() {
    const room = this.room ? this.room.id : this.options.roomId;
    return (await this._rest("GET", `/api/v1/video/rooms/${encodeURIComponent(room)}/files`)).files;
  }

  /** A short-lived download URL of one of the call's files (no credentials needed in it). */
  async fileUrl(fileId) {
    const room = this.room ? this.room.id : this.options.roomId;
    const { url } = await this._rest("POST", `/api/v1/video/rooms/${encodeURIComponent(room)}/files/${encodeURIComponent(fileId)}/link`);
    return new URL(url, this._restBase() + "/").href;
  }

  /** The picture of the call's large video (what this page receives; its own camera when it is
   * alone), as a canvas; null when no video plays yet. */
  captureFrame(video = this.view && this.view.stage.querySelector("video")) {
    if (!video || !video.videoWidth) return null;
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return canvas;
  }

  /** Sends a chat message to the others (at most 2,000 characters). */
  sendChat(text) {
    text = String(text || "").trim();
    if (!text) return false;
    if (text.length > CHAT_MAX) throw Object.assign(new Error(tr("a chat message is at most {n} characters", { n: CHAT_MAX })), { code: "too_long" });
    if (!this.chatReady) throw Object.assign(new Error(tr("the chat is not connected yet")), { code: "not_connected" });
    this.dc.send(JSON.stringify({ type: "chat", text }));
    this._emit("chat", { from: this.me, at: new Date().toISOString(), text, self: true });
    return true;
  }

  /** Points at (x, y) in [0, 1] of participant `target`'s video; rate-limited to 25/s
   * (`force` sends even inside the interval, e.g. the last point of a drag). `click`: the press
   * that starts a gesture (the others draw a ripple), not a move. */
  sendPointer(target, x, y, force = false, click = false) {
    const now = performance.now();
    if (!this.chatReady || (!force && now - this._lastPointer < POINTER_INTERVAL_MS)) return false;
    this._lastPointer = now;
    const msg = { type: "pointer", target, x: round4(clamp01(x)), y: round4(clamp01(y)) };
    if (click) msg.click = true;
    this.dc.send(JSON.stringify(msg));
    this._emit("pointer", { from: this.me, at: new Date().toISOString(), ...msg, self: true });
    return true;
  }

  // --- local sources -----------------------------------------------------------------------

  _deviceError(what, e) {
    const code = e && e.name === "NotAllowedError" ? "permission_denied"
      : e && (e.name === "NotFoundError" || e.name === "OverconstrainedError") ? "no_device" : "device_error";
    this._emit("error", { code, message: tr("{what}: {e}", { what: tr(what), e: (e && e.message) || e }), source: what });
  }

  _sendMedia() {
    const media = {
      audio: !!(this.local.audio && !this.muted),
      camera: !!this.local.camera,
      screen: !!this.local.screen,
    };
    if (this.me) this._send({ type: "media", ...media });
    this._emit("local", { ...media, muted: this.muted });
  }

  async _setSource(source, track) {
    const old = this.local[source];
    this.local[source] = track;
    if (old && old !== track) old.stop();
    const t = this._transceiver(LOCAL_MIDS[source]);
    if (t && this.canSend) await t.sender.replaceTrack(track).catch(() => {});
    if (track) await this._applyEncodings();
    this._sendMedia();
  }

  _stopAll() {
    for (const k of Object.keys(this.local)) {
      if (this.local[k]) this.local[k].stop();
      this.local[k] = null;
    }
  }

  _requireSend() {
    if (!this.canSend) throw Object.assign(new Error(tr("this room sends no media from your side (one-way)")), { code: "forbidden" });
    if (this.state === "ended") throw Object.assign(new Error(tr("the call has ended")), { code: "ended" });
  }

  /** Turns the microphone on or off (off releases the device; see setMuted for muting). */
  async setMicrophone(on) {
    if (!on) return this._setSource("audio", null);
    this._requireSend();
    if (this.local.audio) return undefined;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const track = stream.getAudioTracks()[0];
    if (this.state === "ended") { track.stop(); return undefined; }
    track.enabled = !this.muted;
    return this._setSource("audio", track);
  }

  /** Mutes or unmutes the microphone (opens it if it was never on). */
  async setMuted(muted) {
    this.muted = !!muted;
    if (!this.muted && !this.local.audio && this.canSend) await this.setMicrophone(true);
    if (this.local.audio) this.local.audio.enabled = !this.muted;
    this._sendMedia();
  }

  _cameraConstraints() {
    const q = this.quality;
    const c = { width: { ideal: q.width }, height: { ideal: q.height }, frameRate: { ideal: 30, max: 30 } };
    if (this.cameraId) c.deviceId = { exact: this.cameraId };
    else c.facingMode = { ideal: this.facing };
    return c;
  }

  /** Turns the camera on or off (off releases the device, so its light goes out). */
  async setCamera(on) {
    if (!on) return this._setSource("camera", null);
    this._requireSend();
    if (this.local.camera) return undefined;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: this._cameraConstraints() });
    } catch (e) {
      if (e.name !== "OverconstrainedError" || !this.cameraId) throw e;
      this.cameraId = null; // the chosen camera went away: any camera
      stream = await navigator.mediaDevices.getUserMedia({ video: this._cameraConstraints() });
    }
    const track = stream.getVideoTracks()[0];
    if (this.state === "ended") { track.stop(); return undefined; }
    track.contentHint = "motion";
    const s = track.getSettings();
    if (s.facingMode) this.facing = s.facingMode;
    return this._setSource("camera", track);
  }

  /** The cameras of this device (labels once camera access was granted). */
  async cameras() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return all.filter((d) => d.kind === "videoinput");
  }

  /** Switches to the next camera: the other facing on phones, else the next device. */
  async switchCamera() {
    this._requireSend();
    const cams = await this.cameras();
    const current = this.local.camera && this.local.camera.getSettings();
    if (current && current.facingMode) {
      this.facing = current.facingMode === "user" ? "environment" : "user";
      this.cameraId = null;
    } else if (cams.length > 1) {
      const i = cams.findIndex((d) => current && d.deviceId === current.deviceId);
      this.cameraId = cams[(i + 1) % cams.length].deviceId;
    } else {
      this.facing = this.facing === "user" ? "environment" : "user";
    }
    // phones open one camera at a time: release the old one first
    const wasOn = !!this.local.camera;
    if (this.local.camera) this.local.camera.stop();
    try {
      this.local.camera = null;
      await this.setCamera(true);
    } catch (e) {
      if (wasOn) { this.cameraId = null; await this.setCamera(true).catch(() => this._sendMedia()); }
      throw e;
    }
  }

  /** Starts (default) or stops sharing the screen. Must be called from a user gesture. */
  async shareScreen(on = true) {
    if (!on) return this._setSource("screen", null);
    this._requireSend();
    if (this.local.screen) return undefined;
    if (!canShareScreen()) throw Object.assign(new Error(tr("screen sharing is not available on this device")), { code: "unsupported" });
    const q = this.quality;
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { width: { max: Math.max(q.width, 1280) }, height: { max: Math.max(q.height, 720) }, frameRate: { ideal: 15, max: 30 } },
      audio: false,
    });
    const track = stream.getVideoTracks()[0];
    if (this.state === "ended") { track.stop(); return undefined; }
    track.contentHint = "detail";
    track.addEventListener("ended", () => { if (this.local.screen === track) this._setSource("screen", null); });
    return this._setSource("screen", track);
  }

  /** Asks the server for a fresh offer with an ICE restart (done by itself when ICE fails). */
  restartIce() {
    this._lastRestart = Date.now();
    this._send({ type: "renegotiate" });
  }

  // --- leaving -----------------------------------------------------------------------------

  /** Leaves the call (the others stay). */
  async leave() {
    this._send({ type: "leave" });
    this._finish("left");
  }

  /** Ends the call for everyone (agent only; others get `forbidden` and stay). */
  async end() {
    if (this.me && this.me.role !== "agent") throw Object.assign(new Error(tr("only the agent ends the call")), { code: "forbidden" });
    this._send({ type: "end" });
    this._finish("ended_by_agent");
  }

  // --- what is received ----------------------------------------------------------------------

  /** The remote tracks by participant: [{participant, audio, camera, screen}] (tracks or null). */
  remoteTracks() {
    const byId = new Map();
    for (const p of this.participants.values()) byId.set(p.id, { participant: p, audio: null, camera: null, screen: null });
    if (!this.pc) return [...byId.values()];
    for (const s of this.slots) {
      const entry = byId.get(s.participant_id);
      const t = this._transceiver(String(s.mid));
      if (entry && t && t.receiver.track && s.source in entry) entry[s.source] = t.receiver.track;
    }
    return [...byId.values()];
  }

  /** A summary of RTCPeerConnection.getStats(): per received and sent stream, with the
   * participant and source of each received mid. */
  async stats() {
    const out = { state: this.state, inbound: [], outbound: [], candidatePair: null };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    const slotOf = new Map(this.slots.map((s) => [String(s.mid), s]));
    let pairId = null;
    report.forEach((r) => {
      if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    });
    report.forEach((r) => {
      if (r.type === "inbound-rtp") {
        const slot = slotOf.get(String(r.mid));
        const p = slot && this.participants.get(slot.participant_id);
        out.inbound.push({
          mid: r.mid, kind: r.kind, participant_id: slot ? slot.participant_id : null,
          role: p ? p.role : null, source: slot ? slot.source : null,
          packetsReceived: r.packetsReceived, packetsLost: r.packetsLost, bytesReceived: r.bytesReceived,
          framesDecoded: r.framesDecoded, frameWidth: r.frameWidth, frameHeight: r.frameHeight,
          framesPerSecond: r.framesPerSecond, jitter: r.jitter, keyFramesDecoded: r.keyFramesDecoded,
          pliCount: r.pliCount, firCount: r.firCount, nackCount: r.nackCount,
        });
      } else if (r.type === "outbound-rtp") {
        const source = Object.keys(LOCAL_MIDS).find((k) => LOCAL_MIDS[k] === String(r.mid)) || null;
        out.outbound.push({
          mid: r.mid, kind: r.kind, source, packetsSent: r.packetsSent, bytesSent: r.bytesSent,
          framesEncoded: r.framesEncoded, frameWidth: r.frameWidth, frameHeight: r.frameHeight,
          qualityLimitationReason: r.qualityLimitationReason, targetBitrate: r.targetBitrate,
          keyFramesEncoded: r.keyFramesEncoded, pliCount: r.pliCount, firCount: r.firCount, nackCount: r.nackCount,
        });
      } else if (r.type === "candidate-pair" && (r.id === pairId || (!pairId && r.nominated && r.state === "succeeded"))) {
        const local = report.get(r.localCandidateId);
        out.candidatePair = {
          currentRoundTripTime: r.currentRoundTripTime, availableOutgoingBitrate: r.availableOutgoingBitrate,
          bytesSent: r.bytesSent, bytesReceived: r.bytesReceived,
          localCandidateType: local ? local.candidateType : null,
        };
      }
    });
    return out;
  }
}

/** Whether this browser can share its screen (desktop browsers; not phones or tablets). */
export function canShareScreen() {
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getDisplayMedia !== "function") return false;
  const mobile = (navigator.userAgentData && navigator.userAgentData.mobile)
    || /Android|iPhone|iPad|iPod|Mobile/i.test(navigator.userAgent);
  return !mobile;
}

/** Whether this is probably a phone or tablet (front/back camera switch by facingMode). */
export function isMobile() {
  return !!((navigator.userAgentData && navigator.userAgentData.mobile)
    || /Android|iPhone|iPad|iPod|Mobile/i.test(navigator.userAgent)
    || (window.matchMedia && matchMedia("(pointer: coarse)").matches && Math.min(screen.width, screen.height) < 820));
}

function isLocalMid(mid) { return mid === "0" || mid === "1" || mid === "2"; }
function clamp01(v) { v = Number(v); return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0; }
function round4(v) { return Math.round(v * 10000) / 10000; }

/** mid -> direction of every m-section of an SDP. */
export function sdpDirections(sdp) {
  const out = {};
  const sessionDir = (/^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(sdp.split(/\r?\nm=/)[0]) || [])[1] || "sendrecv";
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = (/^a=mid:(\S+)/m.exec(section) || [])[1];
    if (mid === undefined) continue;
    out[mid] = (/^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(section) || [])[1] || sessionDir;
  }
  return out;
}

// --- the default rendering -------------------------------------------------------------------

const MIC_OFF = '<svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true" focusable="false"><path fill="currentColor" d="M19 11h-1.7c0 .74-.16 1.43-.43 2.05l1.23 1.23c.56-.98.9-2.09.9-3.28zm-4.02.17c0-.06.02-.11.02-.17V5a3 3 0 0 0-6 0v.18l5.98 5.99zM4.27 3L3 4.27l6.01 6.01V11a3 3 0 0 0 3 3c.22 0 .44-.03.65-.08l1.66 1.66c-.71.33-1.5.52-2.31.52A5.2 5.2 0 0 1 6.7 11H5c0 3.41 2.72 6.23 6 6.72V21h2v-3.28c.91-.13 1.77-.45 2.54-.9L19.73 21 21 19.73 4.27 3z"/></svg>';
const ROLE_NAMES = { agent: "Agent", customer: "Customer", supervisor: "Supervisor" };
/** A role's name for people, in the pages' language ("" for an unknown role). */
const roleName = (role) => (ROLE_NAMES[role] ? tr(ROLE_NAMES[role]) : "");

/**
 * Renders a call into a container: one large tile (a shared screen first, then the other
 * side's camera: the customer's for agents and supervisors, the agent's for customers) and a
 * strip of the rest, the self-view last. Remote audio plays through hidden <audio> elements.
 * Pointer events are drawn over the video they point at; with `pointer: true` a click or drag
 * on the large tile sends them.
 */
/** The quality indicator's words. */
const QUALITY_NAMES = { good: "Good connection", fair: "Fair connection", poor: "Poor connection" };

export class CallView {
  constructor(call, container, options = {}) {
    this.call = call;
    this.root = container;
    this.options = options;
    this.tiles = new Map(); // key -> {el, video, key}
    this.audios = new Map(); // participant id -> <audio>
    this.soundBlocked = false;
    container.classList.add("sb-call");
    container.innerHTML = "";
    this.stage = el("div", "sb-stage");
    this.strip = el("div", "sb-strip");
    this.strip.setAttribute("aria-label", tr("Other videos"));
    this.soundBtn = el("button", "sb-sound");
    this.soundBtn.type = "button";
    this.soundBtn.textContent = tr("Turn on sound");
    this.soundBtn.hidden = true;
    this.soundBtn.addEventListener("click", () => this._playAll());
    this.audioBox = el("div", "sb-audio");
    this.audioBox.hidden = true;
    container.append(this.stage, this.strip, this.soundBtn, this.audioBox);
    const render = () => this.render();
    for (const t of ["tracks", "joined", "participant-joined", "participant-left", "media", "local", "state", "quality"]) call.on(t, render);
    call.on("pointer", (e) => this.showPointer(e.detail));
    if (typeof ResizeObserver === "function") new ResizeObserver(() => this._placePointers()).observe(container);
    this.render();
  }

  /** The large tile's key: remote screen > the other side's camera > any remote camera > self. */
  _mainKey(entries) {
    const role = this.call.me && this.call.me.role;
    const screens = entries.filter((e) => e.screen && e.participant.media && e.participant.media.screen);
    const prefer = role === "customer" ? ["agent", "supervisor"] : ["customer", "agent", "supervisor"];
    const byRole = (list) => list.sort((a, b) => prefer.indexOf(a.participant.role) - prefer.indexOf(b.participant.role));
    if (screens.length) return `${byRole(screens)[0].participant.id}:screen`;
    const others = byRole(entries.filter((e) => e.participant.id !== (this.call.me && this.call.me.id)));
    if (others.length) return `${others[0].participant.id}:camera`;
    return "self:camera";
  }

  render() {
    const call = this.call;
    const entries = call.state === "ended" ? [] : call.remoteTracks();
    const wanted = [];
    for (const e of entries) {
      const p = e.participant;
      wanted.push({ key: `${p.id}:camera`, participant: p, track: e.camera, source: "camera", remote: true });
      if (e.screen && p.media && p.media.screen) {
        wanted.push({ key: `${p.id}:screen`, participant: p, track: e.screen, source: "screen", remote: true });
      }
      this._audio(p.id, e.audio);
    }
    for (const [id, a] of this.audios) {
      if (!entries.some((e) => e.participant.id === id)) { a.srcObject = null; a.remove(); this.audios.delete(id); }
    }
    if (call.me && call.state !== "ended") {
      const me = { ...call.me, name: call.me.name || tr("You"), media: { audio: !!call.local.audio && !call.muted, camera: !!call.local.camera, screen: !!call.local.screen } };
      wanted.push({ key: "self:camera", participant: me, track: call.local.camera, source: "camera", self: true });
      if (call.local.screen) wanted.push({ key: "self:screen", participant: me, track: call.local.screen, source: "screen", self: true });
    }
    const main = this._mainKey(entries);
    const keys = new Set(wanted.map((w) => w.key));
    for (const [key, t] of this.tiles) {
      if (!keys.has(key)) { t.video.srcObject = null; t.el.remove(); this.tiles.delete(key); }
    }
    for (const w of wanted) {
      const t = this.tiles.get(w.key) || this._tile(w);
      this._update(t, w);
      const parent = w.key === main ? this.stage : this.strip;
      if (t.el.parentNode !== parent) parent.append(t.el);
      t.el.classList.toggle("sb-main", parent === this.stage);
    }
    // keep the strip in a stable order: remote tiles first, self last
    for (const w of wanted) {
      const t = this.tiles.get(w.key);
      if (t.el.parentNode === this.strip) this.strip.append(t.el);
    }
    this.root.dataset.tiles = String(this.tiles.size);
    this.stage.hidden = !this.stage.firstChild;
    this._placePointers();
  }

  _tile(w) {
    const fig = el("figure", "sb-tile");
    const video = el("video", "");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // audio plays through <audio>: video autoplays under every policy
    const cap = el("figcaption", "");
    const quality = el("span", "sb-quality");
    quality.hidden = true;
    const name = el("span", "sb-name");
    const flags = el("span", "sb-flags");
    const placeholder = el("div", "sb-placeholder");
    placeholder.setAttribute("aria-hidden", "true");
    const pointer = el("div", "sb-pointer");
    pointer.hidden = true;
    pointer.setAttribute("aria-hidden", "true");
    cap.append(quality, name, flags);
    fig.append(video, placeholder, pointer, cap);
    const t = { el: fig, video, name, flags, quality, placeholder, pointer, key: w.key, pointerAt: null };
    video.addEventListener("loadedmetadata", () => this.render());
    video.addEventListener("resize", () => this.render());
    if (w.remote && this.options.pointer !== false) this._pointable(t);
    this.tiles.set(w.key, t);
    return t;
  }

  _update(t, w) {
    const p = w.participant;
    const { el: fig, video } = t;
    t.participant = p;
    t.source = w.source;
    fig.dataset.participant = w.self ? "self" : p.id;
    fig.dataset.role = p.role || "";
    fig.dataset.source = w.source;
    fig.classList.toggle("sb-self", !!w.self);
    const mirrored = !!(w.self && w.source === "camera" && this.call.facing !== "environment");
    fig.classList.toggle("sb-mirror", mirrored);
    const who = p.name || roleName(p.role) || tr("Participant");
    const label = w.self ? tr(w.source === "screen" ? "Your screen" : "You")
      : w.source === "screen" ? tr("{name}'s screen", { name: who }) : who;
    t.name.textContent = label;
    const role = roleName(p.role) || "";
    t.name.title = role;
    // the connection quality of the tile's participant (the camera tile only)
    const q = w.source === "camera" ? this.call.connection.get(w.self ? this.call.me && this.call.me.id : p.id) : null;
    t.quality.hidden = !q;
    if (q && t.quality.dataset.level !== q.level) {
      t.quality.dataset.level = q.level;
      t.quality.textContent = QUALITY_NAMES[q.level] ? tr(QUALITY_NAMES[q.level]) : q.level;
    }
    if (q) {
      t.quality.title = tr("loss {loss}%, jitter {jitter} ms", { loss: q.loss_pct, jitter: q.jitter_ms }) +
        (q.rtt_ms != null ? tr(", round trip {rtt} ms", { rtt: q.rtt_ms }) : "") +
        tr(", {out} kbit/s sent, {in} kbit/s received", { out: q.bitrate_in_kbps, in: q.bitrate_out_kbps });
      t.quality.setAttribute("aria-label", tr("connection {level}", { level: QUALITY_NAMES[q.level] ? tr(QUALITY_NAMES[q.level]).toLowerCase() : q.level }));
    }
    const micOff = w.source === "camera" && !!p.media && !p.media.audio;
    if (micOff !== t.micOff) {
      t.micOff = micOff;
      t.flags.innerHTML = micOff ? MIC_OFF : "";
      t.flags.setAttribute("aria-label", micOff ? tr("microphone off") : "");
      t.flags.setAttribute("role", micOff ? "img" : "none");
    }
    const flagged = w.self || w.source === "screen" || !p.media || p.media.camera;
    // no picture until the first decoded frame (a video waiting for its keyframe stays black)
    const videoOn = !!w.track && flagged && w.track.readyState !== "ended" && (w.self || !w.track.muted) && video.videoWidth > 0;
    if (w.track && !w.self && t.hooked !== w.track) {
      // a remote track is muted while no frames arrive: show the placeholder meanwhile
      t.hooked = w.track;
      const again = () => { if (t.hooked === w.track) this.render(); };
      w.track.addEventListener("mute", again);
      w.track.addEventListener("unmute", again);
    }
    fig.classList.toggle("sb-off", !videoOn);
    t.placeholder.textContent = initials(w.self ? (this.call.me && this.call.me.name) || tr("You") : p.name || role);
    video.setAttribute("aria-label", tr(w.self ? "{label} (preview)" : "{label}, video", { label }));
    const stream = video.srcObject;
    if (w.track && (!stream || stream.getVideoTracks()[0] !== w.track)) {
      video.srcObject = new MediaStream([w.track]);
      video.play().catch(() => {});
    } else if (!w.track && stream) {
      video.srcObject = null;
    }
  }

  _audio(id, track) {
    let a = this.audios.get(id);
    if (!track) { if (a) { a.srcObject = null; a.remove(); this.audios.delete(id); } return; }
    if (!a) {
      a = document.createElement("audio");
      a.autoplay = true;
      this.audioBox.append(a);
      this.audios.set(id, a);
    }
    const stream = a.srcObject;
    if (!stream || stream.getAudioTracks()[0] !== track) {
      a.srcObject = new MediaStream([track]);
      a.play().then(() => { this.soundBlocked = false; this.soundBtn.hidden = true; }, () => {
        this.soundBlocked = true;
        this.soundBtn.hidden = false; // autoplay blocked until a click
      });
    }
  }

  _playAll() {
    for (const a of this.audios.values()) a.play().catch(() => {});
    this.soundBtn.hidden = true;
  }

  _pointable(t) {
    const call = this.call;
    let down = false;
    const send = (ev, force, click = false) => {
      if (!t.el.classList.contains("sb-main") || !t.participant) return;
      const r = contentRect(t.video);
      if (!r) return;
      const x = (ev.clientX - r.left) / r.width, y = (ev.clientY - r.top) / r.height;
      if (x < 0 || x > 1 || y < 0 || y > 1) return;
      if (call.sendPointer(t.participant.id, x, y, force, click)) ev.preventDefault();
    };
    t.el.addEventListener("pointerdown", (ev) => {
      if (!this.options.pointer) return;
      down = true;
      try { t.el.setPointerCapture(ev.pointerId); } catch { /* not capturable */ }
      send(ev, true, true);
    });
    t.el.addEventListener("pointermove", (ev) => { if (down && this.options.pointer) send(ev, false); });
    const up = (ev) => { if (down && this.options.pointer) send(ev, true); down = false; };
    t.el.addEventListener("pointerup", up);
    t.el.addEventListener("pointercancel", () => { down = false; });
  }

  /** Draws a pointer event over the video it points at (the target's screen when shared). */
  showPointer(p) {
    const call = this.call;
    const mine = call.me && p.target === call.me.id;
    let key;
    if (mine) key = call.local.screen ? "self:screen" : "self:camera";
    else key = this.tiles.has(`${p.target}:screen`) ? `${p.target}:screen` : `${p.target}:camera`;
    const t = this.tiles.get(key);
    if (!t) return;
    t.pointerAt = { x: p.x, y: p.y, name: p.self ? "" : (p.from && p.from.name) || "" };
    t.pointer.title = t.pointerAt.name;
    t.pointer.dataset.name = t.pointerAt.name;
    t.pointer.hidden = false;
    t.el.classList.add("sb-pointed");
    clearTimeout(t.pointerTimer);
    t.pointerTimer = setTimeout(() => { t.pointer.hidden = true; t.pointerAt = null; t.el.classList.remove("sb-pointed"); }, 2500);
    this._placePointer(t);
    // a dot of the trail at every point, and a ripple at a click; each fades out in about a second
    this._mark(t, p, "sb-trail", TRAIL_MS);
    if (p.click) this._mark(t, p, "sb-ripple", TRAIL_MS);
  }

  _placePointers() { for (const t of this.tiles.values()) if (t.pointerAt) this._placePointer(t); }

  /** Where (x, y) of a tile's picture is, in pixels from the tile's corner (null: no picture). */
  _spot(t, x, y) {
    const r = contentRect(t.video);
    if (!r) return null;
    const box = t.el.getBoundingClientRect();
    if (t.el.classList.contains("sb-mirror")) x = 1 - x;
    return { left: r.left - box.left + x * r.width, top: r.top - box.top + y * r.height };
  }

  _placePointer(t) {
    const at = this._spot(t, t.pointerAt.x, t.pointerAt.y);
    if (!at) return;
    t.pointer.style.left = `${at.left}px`;
    t.pointer.style.top = `${at.top}px`;
  }

  /** A short-lived mark (a trail dot or a click's ripple) at a pointer event's spot; at most
   * TRAIL_MAX of a kind on a tile (the oldest goes first). */
  _mark(t, p, cls, ms) {
    const at = this._spot(t, p.x, p.y);
    if (!at) return;
    const marks = t.el.getElementsByClassName(cls);
    while (marks.length >= TRAIL_MAX) marks[0].remove();
    const mark = el("span", cls);
    mark.setAttribute("aria-hidden", "true");
    mark.style.left = `${at.left}px`;
    mark.style.top = `${at.top}px`;
    t.el.append(mark);
    setTimeout(() => mark.remove(), ms);
  }
}

/** The rectangle the picture occupies in a <video> (object-fit: contain or cover). */
function contentRect(video) {
  const r = video.getBoundingClientRect();
  if (!r.width || !r.height) return null;
  const vw = video.videoWidth, vh = video.videoHeight;
  if (!vw || !vh) return r;
  const fit = getComputedStyle(video).objectFit;
  const s = fit === "cover" ? Math.max(r.width / vw, r.height / vh) : Math.min(r.width / vw, r.height / vh);
  const w = vw * s, h = vh * s;
  return { left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, width: w, height: h };
}

function initials(name) {
  const parts = String(name || "?").trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || "?").slice(0, 2)).toUpperCase();
}

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

// --- page helpers (shared by customer.html and agent.html) ----------------------------------

/**
 * Wires a chat UI: `log` (a list), `form` with a text `input`. Messages from the data channel
 * and this page's own are appended; the form is disabled until the channel is open.
 */
export function mountChat(call, { log, form, input, button }) {
  const setReady = () => {
    const ready = call.chatReady;
    input.disabled = !ready;
    if (button) button.disabled = !ready;
    input.placeholder = tr(ready ? "Write a message" : "Chat connects with the call…");
  };
  setReady();
  call.on("chat-ready", setReady);
  call.on("state", setReady);
  call.on("chat", (e) => {
    const { from, at, text, self } = e.detail;
    const li = document.createElement("li");
    li.className = self ? "out" : "in";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = self ? tr("You") : from.name || roleName(from.role) || tr("Participant");
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    const time = document.createElement("time");
    const d = at ? new Date(at) : new Date();
    time.dateTime = d.toISOString();
    time.textContent = d.toLocaleTimeString(current, { hour: "2-digit", minute: "2-digit" });
    li.append(who, body, time);
    log.append(li);
    log.scrollTop = log.scrollHeight;
  });
  // a shared location: the address (or the coordinates) and the map link
  call.on("location", (e) => {
    const { from, at, lat, lon, address, map_url: mapUrl, preview_url: previewUrl, self } = e.detail;
    const li = document.createElement("li");
    li.className = `location ${self ? "out" : "in"}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = tr("{name} · location", { name: self ? tr("You") : from.name || roleName(from.role) || tr("Participant") });
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = address || `${Number(lat).toFixed(5)}, ${Number(lon).toFixed(5)}`;
    li.append(who, body);
    if (typeof mapUrl === "string" && /^https?:\/\//.test(mapUrl)) {
      // the small map picture (video.geocoder.preview_url), a link to the map itself; a
      // picture that does not load is taken away and the link stays
      if (typeof previewUrl === "string" && /^https?:\/\//.test(previewUrl)) {
        const p = document.createElement("a");
        p.href = mapUrl;
        p.target = "_blank";
        p.rel = "noopener noreferrer";
        p.className = "map-preview";
        const img = document.createElement("img");
        img.src = previewUrl;
        img.alt = tr("Map of the location");
        img.width = 320;
        img.height = 160;
        img.loading = "lazy";
        img.referrerPolicy = "no-referrer";
        img.addEventListener("error", () => p.remove());
        p.append(img);
        li.append(p);
      }
      const a = document.createElement("a");
      a.href = mapUrl;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.textContent = tr("Open the map");
      a.className = "map";
      li.append(a);
    }
    const time = document.createElement("time");
    const d = at ? new Date(at) : new Date();
    time.dateTime = d.toISOString();
    time.textContent = d.toLocaleTimeString(current, { hour: "2-digit", minute: "2-digit" });
    li.append(time);
    log.append(li);
    log.scrollTop = log.scrollHeight;
  });
  call.on("location-denied", (e) => {
    const li = document.createElement("li");
    li.className = "event";
    // the reason travels in English (the protocol's words); shown in the page's language when known
    li.textContent = tr("No location: {reason}", { reason: tr(e.detail.reason || "declined") });
    log.append(li);
    log.scrollTop = log.scrollHeight;
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    try {
      if (call.sendChat(input.value)) input.value = "";
    } catch (e) {
      call._emit("error", { code: e.code || "chat", message: e.message });
    }
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && input.tagName === "TEXTAREA") { ev.preventDefault(); form.requestSubmit(); }
  });
}

/**
 * Wires the call controls found in `root` by data-action: mute, camera, switch, screen, leave,
 * end. A button's label says what a click does ("Mute" / "Unmute"); each is shown only where
 * it applies (no camera switch with one camera, no screen share on phones or in one-way rooms).
 */
/** "1.5 MB": a size for people. */
export function formatSize(bytes) {
  const ru = current === "ru";
  if (bytes < 1024) return `${bytes} ${ru ? "байт" : "B"}`;
  const units = ru ? ["КБ", "МБ", "ГБ"] : ["KB", "MB", "GB"];
  let v = bytes;
  let u = -1;
  do { v /= 1024; u++; } while (v >= 1024 && u < units.length - 1);
  const n = v < 10 ? v.toFixed(1) : String(Math.round(v));
  return `${ru ? n.replace(".", ",") : n} ${units[u]}`;
}

/**
 * Shows the call's files in its chat log (`file` events: a screenshot as a picture, a file as a
 * download with its name and size) and sends files: `attach` (an <input type=file>) sends what
 * is picked, each with a progress bar in the log. Returns `{upload(file, options)}` (options of
 * Call.sendFile), which shows the same progress and resolves to the stored file or null.
 */
export function mountFiles(call, { log, attach, onError } = {}) {
  const shown = new Set();
  const scroll = () => { log.scrollTop = log.scrollHeight; };
  const show = (f) => {
    if (shown.has(f.file_id)) return;
    shown.add(f.file_id);
    const self = f.self !== undefined ? f.self : !!call.me && f.role === call.me.role;
    const li = el("li", `file ${self ? "out" : "in"}${f.screenshot ? " screenshot" : ""}`);
    li.dataset.file = f.file_id;
    const who = el("span", "who");
    who.textContent = tr(f.screenshot ? "{name} · screenshot" : "{name} · file", { name: self ? tr("You") : f.sender_name || roleName(f.role) || tr("Participant") });
    const open = el("a", "download");
    open.href = "#";
    open.rel = "noopener noreferrer";
    open.addEventListener("click", async (ev) => {
      ev.preventDefault();
      try {
        const url = await call.fileUrl(f.file_id);
        const a = document.createElement("a");
        a.href = url;
        a.download = f.name;
        document.body.append(a);
        a.click();
        a.remove();
      } catch (e) {
        if (onError) onError(e);
      }
    });
    const name = el("span", "name");
    name.textContent = f.name;
    const size = el("span", "size");
    size.textContent = formatSize(f.size);
    if (f.screenshot) {
      const img = el("img", "shot");
      img.alt = tr("Screenshot {name}", { name: f.name });
      call.fileUrl(f.file_id).then((url) => { img.src = url; }).catch((e) => { if (onError) onError(e); });
      open.append(img);
    }
    open.append(name, size);
    const time = document.createElement("time");
    const d = f.at ? new Date(f.at) : new Date();
    time.dateTime = d.toISOString();
    time.textContent = d.toLocaleTimeString(current, { hour: "2-digit", minute: "2-digit" });
    li.append(who, open, time);
    log.append(li);
    scroll();
  };
  call.on("file", (e) => show(e.detail));
  // what was sent before this page joined (or before a reconnect)
  const preload = () => call.files().then((files) => files.forEach(show)).catch(() => {});
  call.on("joined", preload);
  if (call.me) preload();

  const upload = async (file, options = {}) => {
    const li = el("li", "upload out");
    const label = el("span", "who");
    label.textContent = tr("Sending {name}", { name: options.name || file.name || tr("screenshot") });
    const bar = document.createElement("progress");
    bar.max = file.size || 1;
    bar.value = 0;
    const pct = el("span", "pct");
    pct.textContent = "0%";
    li.append(label, bar, pct);
    log.append(li);
    scroll();
    if (file.size > FILE_MAX) {
      li.className = "event error";
      li.textContent = tr("{name} is larger than {max}, the most a call takes.", { name: file.name, max: formatSize(FILE_MAX) });
      return null;
    }
    try {
      const stored = await call.sendFile(file, {
        ...options,
        onProgress: (sent, total) => {
          bar.max = total || 1;
          bar.value = sent;
          pct.textContent = `${Math.floor((100 * sent) / (total || 1))}%`;
        },
      });
      li.remove();
      show({ ...stored, self: true });
      return stored;
    } catch (e) {
      li.className = "event error";
      li.textContent = tr("Not sent: {e}", { e: e.message });
      if (onError) onError(e);
      return null;
    }
  };
  if (attach) {
    attach.addEventListener("change", async () => {
      const files = [...attach.files];
      attach.value = "";
      for (const f of files) await upload(f);
    });
  }
  return { upload };
}

const PEN_COLOURS = [["#e53935", "Red"], ["#fdd835", "Yellow"], ["#43a047", "Green"], ["#1e88e5", "Blue"], ["#ffffff", "White"], ["#000000", "Black"]];

/**
 * Lets the agent draw on a screenshot (a canvas, e.g. Call.captureFrame()): pen, arrow and
 * text in six colours, undo; resolves to the picture as a JPEG Blob on *Send*, or null on
 * *Cancel* (or Escape).
 */
export function openScreenshotEditor(source, { parent = document.body } = {}) {
  return new Promise((resolve) => {
    const box = el("div", "sb-editor");
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-label", tr("Draw on the screenshot"));
    const bar = el("div", "sb-editor-bar");
    bar.setAttribute("role", "toolbar");
    const canvas = document.createElement("canvas");
    canvas.width = source.width;
    canvas.height = source.height;
    canvas.className = "sb-editor-canvas";
    const ctx = canvas.getContext("2d");
    const shapes = [];
    let tool = "pen";
    let colour = PEN_COLOURS[0][0];
    const width = Math.max(3, Math.round(canvas.width / 200));
    const fontPx = Math.max(16, Math.round(canvas.width / 30));
    const button = (text, attrs) => {
      const b = el("button", "secondary");
      b.type = "button";
      b.textContent = text;
      for (const [k, v] of Object.entries(attrs)) b.dataset[k] = v;
      bar.append(b);
      return b;
    };
    const tools = [["pen", "Pen"], ["arrow", "Arrow"], ["text", "Text"]].map(([t, label]) => button(tr(label), { tool: t }));
    const textInput = document.createElement("input");
    textInput.placeholder = tr("Text, then click the picture");
    textInput.maxLength = 200;
    textInput.setAttribute("aria-label", tr("Text to place"));
    textInput.hidden = true;
    bar.append(textInput);
    const swatches = PEN_COLOURS.map(([c, label]) => {
      const b = button("", { colour: c });
      b.className = "swatch";
      b.style.background = c;
      b.title = tr(label);
      b.setAttribute("aria-label", tr(label));
      return b;
    });
    const undo = button(tr("Undo"), { act: "undo" });
    const cancel = button(tr("Cancel"), { act: "cancel" });
    const send = button(tr("Send"), { act: "send" });
    send.className = "";
    const select = () => {
      for (const b of tools) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
      for (const b of swatches) b.setAttribute("aria-pressed", String(b.dataset.colour === colour));
      textInput.hidden = tool !== "text";
      undo.disabled = !shapes.length;
      box.dataset.shapes = String(shapes.length);
    };
    const arrowHead = (s) => {
      const [x0, y0] = s.points[0];
      const [x1, y1] = s.points[1];
      const a = Math.atan2(y1 - y0, x1 - x0);
      const len = width * 5;
      ctx.beginPath();
      ctx.moveTo(x1, y1);
      ctx.lineTo(x1 - len * Math.cos(a - Math.PI / 7), y1 - len * Math.sin(a - Math.PI / 7));
      ctx.moveTo(x1, y1);
      ctx.lineTo(x1 - len * Math.cos(a + Math.PI / 7), y1 - len * Math.sin(a + Math.PI / 7));
      ctx.stroke();
    };
    const draw = () => {
      ctx.drawImage(source, 0, 0);
      for (const s of shapes) {
        ctx.strokeStyle = ctx.fillStyle = s.colour;
        ctx.lineWidth = width;
        ctx.lineCap = ctx.lineJoin = "round";
        if (s.kind === "text") {
          ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
          ctx.textBaseline = "top";
          ctx.fillText(s.text, s.points[0][0], s.points[0][1]);
          continue;
        }
        ctx.beginPath();
        s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        if (s.points.length === 1) ctx.lineTo(s.points[0][0] + 0.1, s.points[0][1]);
        ctx.stroke();
        if (s.kind === "arrow") arrowHead(s);
      }
    };
    const at = (ev) => {
      const r = canvas.getBoundingClientRect();
      return [((ev.clientX - r.left) / r.width) * canvas.width, ((ev.clientY - r.top) / r.height) * canvas.height];
    };
    let current = null;
    canvas.addEventListener("pointerdown", (ev) => {
      ev.preventDefault();
      const p = at(ev);
      if (tool === "text") {
        const text = textInput.value.trim();
        if (!text) return textInput.focus();
        shapes.push({ kind: "text", colour, text, points: [p] });
        textInput.value = "";
      } else {
        current = { kind: tool, colour, points: tool === "arrow" ? [p, p] : [p] };
        shapes.push(current);
        canvas.setPointerCapture(ev.pointerId);
      }
      draw();
      select();
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (!current) return;
      const p = at(ev);
      if (current.kind === "arrow") current.points[1] = p;
      else current.points.push(p);
      draw();
    });
    const stop = () => { current = null; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    const close = (result) => {
      document.removeEventListener("keydown", onKey);
      box.remove();
      resolve(result);
    };
    const onKey = (ev) => {
      if (ev.key === "Escape") close(null);
      if (ev.key === "z" && (ev.ctrlKey || ev.metaKey) && shapes.length) { shapes.pop(); draw(); select(); }
    };
    document.addEventListener("keydown", onKey);
    bar.addEventListener("click", (ev) => {
      const b = ev.target.closest("button");
      if (!b) return;
      if (b.dataset.tool) tool = b.dataset.tool;
      if (b.dataset.colour) colour = b.dataset.colour;
      if (b.dataset.act === "undo" && shapes.length) { shapes.pop(); draw(); }
      if (b.dataset.act === "cancel") return close(null);
      if (b.dataset.act === "send") {
        draw();
        send.disabled = true;
        return canvas.toBlob((blob) => close(blob), "image/jpeg", 0.9);
      }
      select();
    });
    box.append(bar, canvas);
    parent.append(box);
    draw();
    select();
    tools[0].focus();
  });
}

export function mountControls(call, root, { onError } = {}) {
  const btn = (a) => root.querySelector(`[data-action="${a}"]`);
  const report = (e) => { if (onError) onError(e); else call._emit("error", { code: e.code || "device_error", message: e.message }); };
  const act = (name, fn) => {
    const b = btn(name);
    if (!b) return;
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await fn(b); } catch (e) { report(e); } finally { b.disabled = false; sync(); }
    });
  };
  act("mute", () => call.setMuted(!call.muted));
  act("camera", () => call.setCamera(!call.local.camera));
  act("switch", () => call.switchCamera());
  act("screen", () => call.shareScreen(!call.local.screen));
  act("leave", () => call.leave());
  act("end", () => call.end());
  const sync = () => {
    const send = call.canSend && call.state !== "ended";
    const set = (name, pressed, label, show = true) => {
      const b = btn(name);
      if (!b) return;
      b.hidden = !show;
      // the label says what a click does; data-active marks a source that is off or shared
      if (pressed !== null) b.dataset.active = String(pressed);
      if (label) { const l = b.querySelector(".label"); (l || b).textContent = tr(label); }
    };
    set("mute", call.muted || !call.local.audio, call.muted || !call.local.audio ? "Unmute" : "Mute", send);
    set("camera", !call.local.camera, call.local.camera ? "Camera off" : "Camera on", send);
    set("screen", !!call.local.screen, call.local.screen ? "Stop sharing" : "Share screen", send && canShareScreen());
    const sw = btn("switch");
    if (sw) sw.hidden = !send || !call.local.camera || !(isMobile() || sw.dataset.cameras > 1);
    const end = btn("end");
    if (end) end.hidden = !(call.me && call.me.role === "agent") || call.state === "ended";
    const leave = btn("leave");
    if (leave) leave.hidden = call.state === "ended" || !!(call.me && call.me.role === "agent" && end);
  };
  const countCameras = async () => {
    const sw = btn("switch");
    if (!sw || !navigator.mediaDevices) return;
    try { sw.dataset.cameras = String((await call.cameras()).length); } catch { /* no devices */ }
    sync();
  };
  for (const t of ["local", "state", "joined"]) call.on(t, sync);
  call.on("local", countCameras);
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) navigator.mediaDevices.addEventListener("devicechange", countCameras);
  sync();
  return sync;
}
