-- WhatsApp: the 24-hour customer-service window and message templates.

-- An outbound template message (`message.send` with `template`): the approved template's name,
-- language and parameters, as the connector sends them. `text` holds the body as the agent saw
-- it (the stored body with the parameters filled in), for the history.
ALTER TABLE messages ADD COLUMN template jsonb;

-- When each customer last wrote to each account, by the platform's clock (the message's own
-- timestamp, never later than its arrival): WhatsApp lets a business send free-form messages
-- only within 24 hours of it, and templates at any time. Keyed like customer_identities, so
-- the chatserver finds it from an interaction's account and chat. Written by the channel module
-- for every inbound message (a repeated delivery changes nothing: the time only moves forward).
CREATE TABLE service_windows (
    account_id      uuid NOT NULL REFERENCES accounts (id),
    external_id     text NOT NULL,
    last_inbound_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, external_id)
);

-- The templates an account may send (approved at Meta; the provider knows them by name and
-- language). `params` is the number of body parameters ({{1}}, {{2}}, ...) they take, so a
-- `message.send` with the wrong number is refused before anything is queued. Edited through the
-- admin API (audited).
CREATE TABLE whatsapp_templates (
    account_id uuid NOT NULL REFERENCES accounts (id),
    name       text NOT NULL CHECK (name ~ '^[a-z0-9_]+$' AND length(name) <= 512),
    language   text NOT NULL CHECK (language ~ '^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})?$'),
    category   text NOT NULL DEFAULT 'utility' CHECK (category IN ('marketing', 'utility', 'authentication')),
    body       text NOT NULL,
    params     integer NOT NULL CHECK (params BETWEEN 0 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, name, language)
);
