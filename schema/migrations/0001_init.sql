-- Switchboard's initial schema. Migrations are never edited once applied: add a new file.

CREATE TABLE queues (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    routing_mode     text NOT NULL DEFAULT 'auto' CHECK (routing_mode IN ('auto', 'manual')),
    offer_timeout_ms integer NOT NULL DEFAULT 30000 CHECK (offer_timeout_ms BETWEEN 1000 AND 3600000),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id            uuid PRIMARY KEY,
    channel       text NOT NULL CHECK (channel IN ('telegram', 'whatsapp', 'viber', 'vk', 'ok', 'webchat', 'video')),
    name          text NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    default_queue text NOT NULL REFERENCES queues (name),
    -- platform credentials (bot token, app secret...); never logged, returned masked by the admin API
    credentials   jsonb NOT NULL DEFAULT '{}',
    settings      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    login             text PRIMARY KEY,
    name              text NOT NULL,
    roles             text[] NOT NULL DEFAULT '{agent}',
    queues            text[] NOT NULL DEFAULT '{}',
    -- max concurrent interactions overall, and optionally per channel kind ({"telegram": 2})
    max_interactions  integer NOT NULL DEFAULT 3 CHECK (max_interactions >= 0),
    channel_capacity  jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'not_ready' CHECK (status IN ('ready', 'not_ready', 'away')),
    status_reason     text,
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    -- the last sequence number handed out in agent_events; bumped under the row lock, so gap-free
    last_event_seq    bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    phone      text,
    avatar_url text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_phone ON customers (phone) WHERE phone IS NOT NULL;

-- One row per (account, platform user): how a customer is known on one channel account.
-- The customer FK is deferred so an identity can be claimed first (ON CONFLICT) and its
-- customer row created after, in the same transaction, without orphans under races.
CREATE TABLE customer_identities (
    account_id   uuid NOT NULL REFERENCES accounts (id),
    external_id  text NOT NULL,
    customer_id  uuid NOT NULL REFERENCES customers (id) DEFERRABLE INITIALLY DEFERRED,
    display_name text,
    username     text,
    phone        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, external_id)
);
CREATE INDEX customer_identities_customer ON customer_identities (customer_id);
CREATE INDEX customer_identities_phone ON customer_identities (phone) WHERE phone IS NOT NULL;

CREATE TABLE interactions (
    id             uuid PRIMARY KEY,
    account_id     uuid NOT NULL REFERENCES accounts (id),
    customer_id    uuid NOT NULL REFERENCES customers (id),
    -- the identity (platform user id) the customer wrote from
    external_id    text NOT NULL,
    channel        text NOT NULL,
    -- the platform's conversation address replies go to (Telegram chat id, WhatsApp wa_id...)
    chat_id        text NOT NULL,
    state          text NOT NULL CHECK (state IN ('bot', 'queued', 'offered', 'assigned', 'closed')),
    queue          text REFERENCES queues (name),
    agent          text REFERENCES agents (login),
    last_agent     text REFERENCES agents (login),
    fields         jsonb NOT NULL DEFAULT '{}',
    last_event_seq bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz,
    close_reason   text,
    last_customer_message_at timestamptz
);
-- at most one open interaction per customer and account: inbound retries can never fork a chat
CREATE UNIQUE INDEX interactions_one_open ON interactions (account_id, customer_id) WHERE state <> 'closed';
CREATE INDEX interactions_waiting ON interactions (queue, created_at) WHERE state IN ('queued', 'offered');
CREATE INDEX interactions_agent_open ON interactions (agent) WHERE state <> 'closed';
CREATE INDEX interactions_customer ON interactions (customer_id, created_at DESC);
CREATE INDEX interactions_reopen ON interactions (account_id, customer_id, closed_at DESC) WHERE state = 'closed';

-- Supervisors (and extra agents) taking part in an interaction besides its assigned agent.
CREATE TABLE interaction_participants (
    interaction_id uuid NOT NULL REFERENCES interactions (id),
    agent_login    text NOT NULL REFERENCES agents (login),
    mode           text NOT NULL CHECK (mode IN ('monitor', 'participate')),
    joined_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (interaction_id, agent_login)
);
CREATE INDEX interaction_participants_agent ON interaction_participants (agent_login);

CREATE TABLE files (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    mime        text NOT NULL,
    size        bigint NOT NULL CHECK (size >= 0),
    sha256      text NOT NULL,
    storage_key text NOT NULL,
    account_id  uuid REFERENCES accounts (id),
    uploaded_by text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_created ON files (created_at);

CREATE TABLE messages (
    id                  uuid PRIMARY KEY,
    interaction_id      uuid NOT NULL REFERENCES interactions (id),
    account_id          uuid NOT NULL REFERENCES accounts (id),
    direction           text NOT NULL CHECK (direction IN ('in', 'out')),
    author_kind         text NOT NULL CHECK (author_kind IN ('customer', 'agent', 'bot', 'system')),
    author_id           text NOT NULL,
    author_name         text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('text', 'image', 'video', 'audio', 'voice', 'sticker', 'document', 'location', 'contact')),
    text                text,
    location            jsonb,
    contact             jsonb,
    reply_to            uuid REFERENCES messages (id),
    forwarded           jsonb,
    keyboard            jsonb,
    status              text NOT NULL CHECK (status IN ('received', 'queued', 'sent', 'delivered', 'read', 'failed')),
    error               text,
    external_message_id text,
    client_msg_id       text,
    agent_login         text REFERENCES agents (login),
    created_at          timestamptz NOT NULL DEFAULT now(),
    edited_at           timestamptz,
    deleted             boolean NOT NULL DEFAULT false
);
-- a repeated platform update is a no-op
CREATE UNIQUE INDEX messages_inbound_once ON messages (account_id, external_message_id) WHERE direction = 'in';
-- a repeated message.send with the same client_msg_id returns the first message
CREATE UNIQUE INDEX messages_outbound_once ON messages (agent_login, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_interaction ON messages (interaction_id, created_at, id);
CREATE INDEX messages_external ON messages (account_id, external_message_id) WHERE external_message_id IS NOT NULL;

CREATE TABLE message_files (
    message_id uuid NOT NULL REFERENCES messages (id),
    position   integer NOT NULL,
    file_id    uuid NOT NULL REFERENCES files (id),
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_files_file ON message_files (file_id);

-- the original text survives an edit: history keeps every version
CREATE TABLE message_edits (
    id         bigserial PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES messages (id),
    old_text   text,
    new_text   text,
    edited_by  text NOT NULL,
    edited_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_edits_message ON message_edits (message_id, id);

-- Work for the account's leader connector: send, edit or delete a message on the platform.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    message_id    uuid NOT NULL REFERENCES messages (id),
    account_id    uuid NOT NULL REFERENCES accounts (id),
    chat_id       text NOT NULL,
    action        text NOT NULL DEFAULT 'send' CHECK (action IN ('send', 'edit', 'delete')),
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    -- fencing token of the connector leader that last attempted it
    fencing_token bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_pending ON outbox (account_id, id) WHERE state = 'pending';
CREATE INDEX outbox_message ON outbox (message_id);

-- Event logs. seq is per interaction / per agent, gap-free: it is taken from the owning row's
-- counter under its row lock, inside the transaction that writes the event.
CREATE TABLE interaction_events (
    interaction_id uuid NOT NULL REFERENCES interactions (id),
    seq            bigint NOT NULL,
    kind           text NOT NULL,
    actor          text,
    data           jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (interaction_id, seq)
);

CREATE TABLE agent_events (
    agent_login text NOT NULL REFERENCES agents (login),
    seq         bigint NOT NULL,
    event       text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_login, seq)
);
CREATE INDEX agent_events_created ON agent_events (created_at);

-- A customer's history across every channel and interaction, newest last: messages and
-- state changes, in the order they were committed.
CREATE TABLE history (
    id             bigserial PRIMARY KEY,
    customer_id    uuid NOT NULL REFERENCES customers (id),
    interaction_id uuid NOT NULL REFERENCES interactions (id),
    channel        text NOT NULL,
    entry          text NOT NULL CHECK (entry IN ('message', 'event')),
    message_id     uuid REFERENCES messages (id),
    event          jsonb,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_customer ON history (customer_id, id DESC);
CREATE INDEX history_interaction ON history (interaction_id, id DESC);

-- Fencing tokens: the highest token seen per resource (e.g. "connector/<account>").
-- A write carrying a lower token than this comes from a deposed leader and is refused.
CREATE TABLE fencing_tokens (
    key        text PRIMARY KEY,
    token      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
