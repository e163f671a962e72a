-- External bots and re-entry (docs/bots.md).
--
-- An external bot is an agent with the role 'bot' connected to the agent WebSocket: it owns the
-- interactions in state 'bot' of the queues it serves that no flow runs (an account's
-- `settings.external_bot`), receives their events and writes through the outbox like an agent.
-- Its messages are `author_kind` 'bot', so the fence of migration 0017 cancels the unsent ones
-- when a person comes to own the conversation.
--
-- A run may start at a chosen node instead of its flow's start: the re-entry of a conversation
-- an agent closed (an account's `settings.reentry`, {"flow", "node"}). NULL: the flow's start.
ALTER TABLE bot_runs ADD COLUMN start_node text;

-- The flow a campaign's recipient continues in when answering: the reply's interaction (opened
-- or waiting in its queue) goes to state 'bot' with a run of the flow's newest version.
ALTER TABLE campaigns ADD COLUMN flow text CHECK (flow ~ '^[a-z0-9][a-z0-9_.-]{0,63}$');

-- A campaign's own events (`campaign.started`, `campaign.finished` with its counts), written in
-- the transaction that changed the campaign, and delivered to webhooks like interaction events:
-- a delivery is of an interaction's event or of a campaign's.
CREATE TABLE campaign_events (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, seq)
);

ALTER TABLE webhook_deliveries ALTER COLUMN interaction_id DROP NOT NULL;
ALTER TABLE webhook_deliveries ADD COLUMN campaign_id uuid;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_one_subject
    CHECK ((interaction_id IS NULL) <> (campaign_id IS NULL));
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_campaign_event
    FOREIGN KEY (campaign_id, seq) REFERENCES campaign_events (campaign_id, seq);
CREATE UNIQUE INDEX webhook_deliveries_campaign_once ON webhook_deliveries (subscription_id, campaign_id, seq)
    WHERE campaign_id IS NOT NULL;

CREATE FUNCTION webhook_enqueue_campaign() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (subscription_id, campaign_id, seq, event_type)
    SELECT s.id, NEW.campaign_id, NEW.seq, NEW.kind
    FROM webhook_subscriptions s
    WHERE s.enabled AND (NEW.kind = ANY (s.events) OR '*' = ANY (s.events));
    RETURN NULL;
END $$;
CREATE TRIGGER campaign_events_webhooks AFTER INSERT ON campaign_events
    FOR EACH ROW EXECUTE FUNCTION webhook_enqueue_campaign();
