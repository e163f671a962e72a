-- Connector runtime: what an outbound message became on the platform.

-- A long outbound text is split into several platform messages: their ids in order. The
-- message's external_message_id is the first of them (the one replies and edits refer to);
-- a delete removes them all.
ALTER TABLE messages ADD COLUMN external_parts text[];

-- The leader connector reads its backlog in id order, per account, including rows waiting for
-- a retry; outbox_pending (account_id, id) WHERE state = 'pending' already serves it.
