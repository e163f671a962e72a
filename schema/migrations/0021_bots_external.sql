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
