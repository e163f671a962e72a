-- Channel modules: what the matrix lets agents send, platform receipts, the agent's face on
-- platforms that show it, and dead letters.

-- An outbound sticker by the platform's own id (a sticker from a file uses message_files), and
-- a forward of an earlier message of the same interaction.
ALTER TABLE messages ADD COLUMN sticker_id text;
ALTER TABLE messages ADD COLUMN forward_of uuid REFERENCES messages (id);

-- Platform receipts name an outbound message by the platform id of any of its parts.
CREATE INDEX messages_outbound_parts ON messages USING gin (external_parts) WHERE direction = 'out';

-- The avatar platforms show beside the agent's name (Viber shows both on every message).
ALTER TABLE agents ADD COLUMN avatar_url text;

-- A platform update that can never be stored (a permanent error, or too many failed tries) is
-- parked here with its raw payload and the error, and the account's inbound moves on. An admin
-- can replay it after a fix: `state` becomes 'replay', the account's leader feeds the payload
-- back through the channel module and records the outcome.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id),
    -- the platform's id of the update (update_id, message token, event id), for the log
    update_key  text NOT NULL,
    payload     bytea NOT NULL,
    error       text NOT NULL,
    attempts    integer NOT NULL DEFAULT 1,
    state       text NOT NULL DEFAULT 'parked' CHECK (state IN ('parked', 'replay', 'replayed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_account ON dead_letters (account_id, id);
CREATE INDEX dead_letters_to_replay ON dead_letters (account_id, id) WHERE state = 'replay';

-- A receipt can overtake the outcome it is about: the platform answers the send, reports the
-- message delivered, and only then does the connector commit the message's platform id. Such a
-- receipt waits here and is applied when the outcome is stored.
CREATE TABLE early_receipts (
    account_id  uuid NOT NULL REFERENCES accounts (id),
    external_id text NOT NULL,
    status      text NOT NULL CHECK (status IN ('delivered', 'read', 'failed')),
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, external_id)
);
