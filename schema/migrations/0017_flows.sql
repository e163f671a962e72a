-- Bot flows (schema/src/flow.rs, schema/src/store/flows.rs): stored and versioned, greeting new
-- interactions of an account or a queue, run by the account's connector leader.

-- Every save of a flow is a new version; runs keep the version they started with.
CREATE TABLE flows (
    name       text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    version    integer NOT NULL CHECK (version >= 1),
    -- the flow as schema::flow::Flow (validated when saved)
    definition jsonb NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- The flow (its newest version) that greets interactions opened in this queue. An account's
-- `settings.greeting_flow` names one for the account and wins over its default queue's.
ALTER TABLE queues ADD COLUMN greeting_flow text CHECK (greeting_flow ~ '^[a-z0-9][a-z0-9_.-]{0,63}$');

-- One run per interaction that started in state 'bot'. `run` is schema::flow::Run as JSON (NULL:
-- not begun); `wake_at` when its timer is due (or its HTTP call must be made again after a
-- failover); `active` false once it handed off, ended, or a person took the conversation.
CREATE TABLE bot_runs (
    interaction_id uuid PRIMARY KEY REFERENCES interactions (id),
    account_id     uuid NOT NULL REFERENCES accounts (id),
    flow_name      text NOT NULL,
    flow_version   integer NOT NULL,
    run            jsonb,
    wake_at        timestamptz,
    active         boolean NOT NULL DEFAULT true,
    -- why the run stopped (handed off with a reason, ended, taken by an agent)
    outcome        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (flow_name, flow_version) REFERENCES flows (name, version)
);
CREATE INDEX bot_runs_due ON bot_runs (account_id, wake_at) WHERE active;

-- The customer's messages a run has not read yet, written in the message's own transaction (so
-- no cursor can pass a message that commits late); the runner deletes them in the transaction
-- that stores what the run did with them.
CREATE TABLE bot_inputs (
    id             bigserial PRIMARY KEY,
    interaction_id uuid NOT NULL REFERENCES bot_runs (interaction_id),
    message_id     uuid NOT NULL REFERENCES messages (id),
    text           text NOT NULL
);
CREATE INDEX bot_inputs_interaction ON bot_inputs (interaction_id, id);

CREATE FUNCTION bot_input() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bot_inputs (interaction_id, message_id, text)
    SELECT r.interaction_id, NEW.id, COALESCE(NEW.text, '')
    FROM bot_runs r WHERE r.interaction_id = NEW.interaction_id AND r.active;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_bot_input AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.direction = 'in') EXECUTE FUNCTION bot_input();

-- The fence between the bot and people, in every transaction that changes an interaction: when
-- it leaves state 'bot' its run stops; when an agent comes to own it (assigned, taken,
-- transferred to someone; an offer is not yet owning) the bot's messages not yet sent are
-- cancelled. A bot's send is
-- refused unless the interaction is in state 'bot' (store::bot_send, under its row lock).
CREATE FUNCTION bot_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'bot' AND NEW.state <> 'bot' THEN
        UPDATE bot_runs SET active = false, wake_at = NULL, updated_at = now(),
            outcome = COALESCE(outcome, 'left state bot: ' || NEW.state)
        WHERE interaction_id = NEW.id AND active;
        DELETE FROM bot_inputs WHERE interaction_id = NEW.id;
    END IF;
    IF NEW.state = 'assigned' AND (OLD.state <> 'assigned' OR NEW.agent IS DISTINCT FROM OLD.agent) THEN
        WITH cancelled AS (
            UPDATE outbox o SET state = 'failed', updated_at = now(),
                last_error = 'cancelled: agent ' || NEW.agent || ' owns the conversation'
            FROM messages m
            WHERE o.message_id = m.id AND m.interaction_id = NEW.id AND m.author_kind = 'bot'
              AND o.state = 'pending'
            RETURNING m.id
        )
        UPDATE messages SET status = 'failed', error = 'cancelled: an agent owns the conversation'
        WHERE id IN (SELECT id FROM cancelled) AND status = 'queued';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER interactions_bot_fence AFTER UPDATE OF state, agent ON interactions
    FOR EACH ROW EXECUTE FUNCTION bot_fence();
