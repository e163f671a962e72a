// What each channel's module needs in an account (docs/connectors.md, docs/webchat.md):
// credentials (secret, write-only), settings, and when the platform posts webhooks to the hub.
import { t } from "./i18n.js";

const text = (name, label, extra) => Object.assign({ name, label, type: "text" }, extra || {});
const num = (name, label, extra) => Object.assign({ name, label, type: "number" }, extra || {});
const list = (name, label, extra) => Object.assign({ name, label, type: "list" }, extra || {});
const bool = (name, label, extra) => Object.assign({ name, label, type: "bool" }, extra || {});
const choice = (name, label, options, extra) => Object.assign({ name, label, type: "select", options }, extra || {});
const secret = (name, label, extra) => Object.assign({ name, label }, extra || {});

export const CHANNELS = {
  telegram: {
    label: "Telegram",
    credentials: [
      secret("bot_token", "Bot token", { required: true, help: "help.bot_token" }),
      secret("webhook_secret", "Webhook secret", { showIf: ["mode", "webhook"], help: "help.webhook_secret" }),
    ],
    settings: [
      choice("mode", "Receive by", [["polling", "long polling (getUpdates)"], ["webhook", "webhook"]], { default: "polling" }),
      text("api_url", "API URL", { placeholder: "https://api.telegram.org/", help: "help.api_url" }),
      text("webhook_url", "Webhook URL", { showIf: ["mode", "webhook"], help: "help.webhook_url" }),
      num("poll_timeout_s", "Long-poll timeout, s", { min: 1, max: 50, placeholder: "25", showIf: ["mode", "polling"] }),
    ],
    webhook: (s) => s.mode === "webhook",
  },
  viber: {
    label: "Viber",
    credentials: [secret("auth_token", "Bot token (auth_token)", { required: true })],
    settings: [
      text("sender_name", "Sender name", { help: "help.sender_name" }),
      text("welcome", "Welcome message"),
      text("api_url", "API URL", { placeholder: "https://chatapi.viber.com/pa/", help: "help.api_url" }),
      text("webhook_url", "Webhook URL", { help: "help.webhook_url" }),
      num("min_api_version", "Minimal API version", { min: 1, placeholder: "1" }),
    ],
    webhook: () => true,
  },
  vk: {
    label: "VK",
    credentials: [
      secret("access_token", "Community token", { required: true }),
      secret("callback_secret", "Callback API secret", { showIf: ["mode", "callback"] }),
    ],
    settings: [
      num("group_id", "Community id", { required: true, min: 1 }),
      choice("mode", "Receive by", [["long_poll", "Bots Long Poll"], ["callback", "Callback API"]], { default: "long_poll" }),
      text("confirmation", "Confirmation string", { showIf: ["mode", "callback"] }),
      text("api_url", "API URL", { placeholder: "https://api.vk.com/", help: "help.api_url" }),
      text("api_version", "API version", { placeholder: "5.199" }),
      num("wait_s", "Long-poll wait, s", { min: 1, max: 90, placeholder: "25", showIf: ["mode", "long_poll"] }),
      bool("one_time_keyboards", "One-time reply keyboards", { default: true }),
    ],
    webhook: (s) => s.mode === "callback",
  },
  ok: {
    label: "OK",
    credentials: [
      secret("access_token", "Group token", { required: true }),
      secret("webhook_token", "Webhook token", { showIf: ["mode", "webhook"], help: "help.ok_webhook_token" }),
    ],
    settings: [
      choice("mode", "Receive by", [["webhook", "webhook"], ["long_poll", "long poll"]], { default: "webhook" }),
      list("allowed_sources", "Allowed sources", { showIf: ["mode", "webhook"], help: "help.allowed_sources" }),
      list("trusted_proxies", "Trusted proxies", { showIf: ["mode", "webhook"] }),
      text("api_url", "API URL", { placeholder: "https://api.ok.ru/", help: "help.api_url" }),
      num("poll_timeout_s", "Long-poll timeout, s", { min: 1, max: 90, placeholder: "25", showIf: ["mode", "long_poll"] }),
      bool("images_by_link", "Images by signed link"),
      text("callback_answer", "Answer to a button press", { placeholder: "✓" }),
    ],
    webhook: (s) => (s.mode || "webhook") === "webhook",
  },
  whatsapp: {
    label: "WhatsApp",
    providers: {
      cloud: {
        credentials: [
          secret("access_token", "Access token", { required: true }),
          secret("app_secret", "App secret", { required: true, help: "help.app_secret" }),
          secret("verify_token", "Verify token", { required: true }),
        ],
        settings: [
          text("phone_number_id", "Phone number id", { required: true }),
          text("waba_id", "WhatsApp Business account id"),
          text("api_url", "API URL", { placeholder: "https://graph.facebook.com/v21.0/", help: "help.api_url" }),
        ],
      },
      infobip: {
        credentials: [
          secret("api_key", "API key", { required: true }),
          secret("webhook_token", "Webhook token", { required: true, help: "help.infobip_webhook_token" }),
          secret("webhook_authorization", "Webhook Authorization header"),
        ],
        settings: [
          text("api_url", "API URL", { required: true, placeholder: "https://xxxxx.api.infobip.com/" }),
          text("sender", "Sender number", { required: true }),
          list("allowed_ips", "Allowed addresses"),
        ],
      },
    },
    settings: [
      choice("provider", "Provider", [["cloud", "Meta Cloud API"], ["infobip", "Infobip"]], { default: "cloud" }),
      text("webhook_url", "Webhook URL", { help: "help.webhook_url" }),
    ],
    webhook: () => true,
  },
  webchat: {
    label: "Web chat",
    credentials: [],
    settings: [
      text("title", "Widget title"),
      text("welcome", "Welcome line"),
      list("allowed_origins", "Allowed sites", { help: "help.allowed_origins" }),
      num("max_file_bytes", "Largest customer file, bytes", { min: 1, placeholder: "10485760" }),
      num("messages_burst", "Messages in a burst (per IP)", { min: 1, placeholder: "10" }),
      num("messages_per_minute", "Messages per minute (per IP)", { min: 1, placeholder: "30" }),
    ],
    webhook: () => false,
  },
};

/** The credential and setting fields of `channel` (with a WhatsApp provider's own). */
export function fieldsOf(channel, settings) {
  const c = CHANNELS[channel];
  if (!c) return { credentials: [], settings: [] };
  if (c.providers) {
    const p = c.providers[(settings && settings.provider) || "cloud"] || c.providers.cloud;
    return { credentials: p.credentials, settings: c.settings.concat(p.settings) };
  }
  return { credentials: c.credentials, settings: c.settings };
}

/** Whether a field is shown for these settings (`showIf: [setting, value]`). */
export function shown(field, settings, specs) {
  if (!field.showIf) return true;
  const [key, want] = field.showIf;
  const spec = (specs || []).find((s) => s.name === key);
  const value = settings[key] === undefined || settings[key] === "" ? (spec && spec.default) : settings[key];
  return value === want;
}

/** The URL a platform posts this account's webhooks to, or "" when it posts none. */
export function webhookUrl(account, base) {
  const c = CHANNELS[account.channel];
  if (!c || !c.webhook(account.settings || {})) return "";
  if (account.settings && account.settings.webhook_url) return account.settings.webhook_url;
  return base ? base + account.id + "/" + account.channel : "";
}

export function channelLabel(channel) {
  return CHANNELS[channel] ? t(CHANNELS[channel].label) : channel;
}
