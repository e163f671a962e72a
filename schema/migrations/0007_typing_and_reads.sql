-- Typing indicators and read marks shown in a web chat widget.
--
-- One row per web chat customer (account, external id): who of the agents is typing (an
-- ephemeral hint: shown until typing_at + a few seconds, never part of any history), and a
-- version bumped by every change a widget must show besides new messages (an agent typing or
-- stopping, an agent marking the customer's messages read). After a `webchat/<account>`
-- wake-up, a process holding customer sockets reads the versions of its own customers and
-- rings only the sockets whose version moved; the sockets then re-read their transcript and
-- this row (a wake-up is never the data). A message the typing agent sends into the interaction
-- after typing_at ends the hint.
CREATE TABLE webchat_signals (
    account_id   uuid NOT NULL REFERENCES accounts (id),
    external_id  text NOT NULL,
    version      bigint NOT NULL DEFAULT 1,
    typing_agent text,
    typing_interaction uuid,
    typing_name  text,
    typing_at    timestamptz,
    PRIMARY KEY (account_id, external_id)
);
