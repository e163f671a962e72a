-- Outbound campaigns (schema/src/store/campaigns.rs): a message to many customers of one account,
-- sent through the account's outbox in the bulk lane, one outbox row per (campaign, recipient).

CREATE TABLE campaigns (
    id             uuid PRIMARY KEY,
    account_id     uuid NOT NULL REFERENCES accounts (id),
    name           text NOT NULL,
    state          text NOT NULL DEFAULT 'draft'
                   CHECK (state IN ('draft', 'running', 'paused', 'cancelled', 'finished')),
    -- the message; {{variable}} placeholders are filled per recipient when the recipient is added
    text           text NOT NULL,
    -- an approved template (WhatsApp), {"name", "language"}; its parameters are the recipients'
    template       jsonb,
    -- messages per second at most (under the account's limit, which always applies)
    rate_per_s     integer CHECK (rate_per_s BETWEEN 1 AND 100000),
    starts_at      timestamptz,
    ends_at        timestamptz,
    -- quiet hours in the recipient's local time, minutes after midnight: nothing is sent in
    -- [quiet_from, quiet_to) (wrapping midnight when quiet_from > quiet_to)
    quiet_from     smallint CHECK (quiet_from BETWEEN 0 AND 1439),
    quiet_to       smallint CHECK (quiet_to BETWEEN 0 AND 1439),
    -- the recipients' UTC offset in minutes when a recipient has none of its own
    utc_offset_min smallint NOT NULL DEFAULT 0 CHECK (utc_offset_min BETWEEN -840 AND 840),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    CHECK ((quiet_from IS NULL) = (quiet_to IS NULL)),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX campaigns_account ON campaigns (account_id, created_at DESC);

CREATE TABLE campaign_recipients (
    id                  bigserial PRIMARY KEY,
    campaign_id         uuid NOT NULL REFERENCES campaigns (id),
    account_id          uuid NOT NULL REFERENCES accounts (id),
    -- where the message goes on the platform (resolved from the customer id or phone when added)
    chat_id             text NOT NULL,
    customer_id         uuid REFERENCES customers (id),
    phone               text,
    variables           jsonb NOT NULL DEFAULT '{}',
    -- the message with the variables filled in
    text                text NOT NULL,
    utc_offset_min      smallint CHECK (utc_offset_min BETWEEN -840 AND 840),
    state               text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'sent', 'delivered', 'read', 'replied', 'failed', 'skipped')),
    -- why it failed (the platform's reason) or was skipped
    reason              text,
    external_message_id text,
    sent_at             timestamptz,
    replied_at          timestamptz,
    -- the interaction a reply opened or continued
    interaction_id      uuid REFERENCES interactions (id),
    UNIQUE (campaign_id, chat_id)
);
CREATE INDEX campaign_recipients_report ON campaign_recipients (campaign_id, id);
-- a platform receipt (delivered, read, failed) for a campaign message
CREATE INDEX campaign_recipients_external ON campaign_recipients (account_id, external_message_id)
    WHERE external_message_id IS NOT NULL;
-- the reply of a recipient: the latest sent campaign message to a chat
CREATE INDEX campaign_recipients_awaiting_reply ON campaign_recipients (account_id, chat_id, sent_at DESC)
    WHERE state IN ('sent', 'delivered', 'read');

-- A campaign's outbox rows carry no message (the recipient row is what is sent and reported);
-- an agent's carry no recipient. The unique key makes a recipient's row exist once, whatever
-- starts the campaign twice.
ALTER TABLE outbox ALTER COLUMN message_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN campaign_id uuid REFERENCES campaigns (id);
ALTER TABLE outbox ADD COLUMN recipient_id bigint REFERENCES campaign_recipients (id);
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject
    CHECK ((message_id IS NULL) <> (recipient_id IS NULL) AND (recipient_id IS NULL) = (campaign_id IS NULL));
CREATE UNIQUE INDEX outbox_recipient_once ON outbox (campaign_id, recipient_id) WHERE recipient_id IS NOT NULL;
-- the live lane's reads (agents' messages) skip the bulk rows, however many wait
CREATE INDEX outbox_pending_live ON outbox (account_id, id) WHERE state = 'pending' AND message_id IS NOT NULL;
-- the bulk lane's reads, and whether a campaign has rows left
CREATE INDEX outbox_pending_bulk ON outbox (account_id, id) WHERE state = 'pending' AND campaign_id IS NOT NULL;
CREATE INDEX outbox_campaign_pending ON outbox (campaign_id) WHERE state = 'pending';

-- Customers who opted out of an account's campaigns (a stop word, an unsubscribe button). They
-- still get every reply to their own conversations.
CREATE TABLE campaign_opt_outs (
    account_id uuid NOT NULL REFERENCES accounts (id),
    chat_id    text NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, chat_id)
);

-- The stop words of an account (NULL: STOP, СТОП, ОТПИСАТЬСЯ), kept upper-case.
ALTER TABLE accounts ADD COLUMN opt_out_words text[];

-- The campaign whose message a customer answered.
ALTER TABLE interactions ADD COLUMN campaign_id uuid REFERENCES campaigns (id);
