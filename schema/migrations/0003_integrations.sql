-- What integrators use (the interaction-loader): the indexes of the period query, API keys,
-- the audit log of admin changes, and the webhook outbox.

-- The period query: "the interactions whose customer wrote between from and to". The first
-- index walks inbound messages in time order; the second answers "did this interaction's
-- customer write earlier in the period?" for each of them (see store::reports).
CREATE INDEX messages_inbound_time ON messages (created_at, interaction_id, id) WHERE direction = 'in';
CREATE INDEX messages_inbound_interaction ON messages (interaction_id, created_at, id) WHERE direction = 'in';
-- customer lookup by platform id across accounts
CREATE INDEX customer_identities_external ON customer_identities (external_id);

-- Integrators' API keys. The key itself (`sk_...`) is shown once, at creation; only its
-- SHA-256 is kept, so a leaked table does not leak usable keys.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- the first characters of the key, to tell keys apart in listings
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Every change made through the admin and webhook APIs: who, when, what. Secrets never enter
-- `details` (credentials are recorded by key name only).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target_kind text NOT NULL,
    target_id   text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at, id);

CREATE TABLE webhook_subscriptions (
    id          uuid PRIMARY KEY,
    url         text NOT NULL,
    -- event types (`interaction.closed`, `message.new`...), or '*' for all
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    -- the HMAC-SHA256 key deliveries are signed with; returned once, at creation
    secret      text NOT NULL,
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one row per (subscription, event), written by the trigger below in the same
-- transaction as the event, so an event that committed has its deliveries and one that rolled
-- back has none. The payload is the immutable interaction_events row, read at send time.
--
-- A worker claims due rows with FOR UPDATE SKIP LOCKED and moves `next_attempt_at` past the
-- request's deadline (a lease): several loader nodes never send the same attempt twice, and
-- a worker that dies mid-request leaves the row to be retried when the lease runs out.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    interaction_id  uuid NOT NULL,
    seq             bigint NOT NULL,
    event_type      text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    -- attempts started; also the fence of the attempt in flight
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- retries stop once they have gone on for the configured window from here (a manual
    -- redelivery starts a new window)
    retry_from      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    FOREIGN KEY (interaction_id, seq) REFERENCES interaction_events (interaction_id, seq),
    UNIQUE (subscription_id, interaction_id, seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

CREATE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (subscription_id, interaction_id, seq, event_type)
    SELECT s.id, NEW.interaction_id, NEW.seq, NEW.kind
    FROM webhook_subscriptions s
    WHERE s.enabled AND (NEW.kind = ANY (s.events) OR '*' = ANY (s.events));
    RETURN NULL;
END
$$;

CREATE TRIGGER interaction_events_webhooks AFTER INSERT ON interaction_events
    FOR EACH ROW EXECUTE FUNCTION webhook_enqueue();
