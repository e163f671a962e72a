-- OK (Odnoklassniki) group bots: where the long poll stopped, and the webhook deliveries
-- committed before they are answered.

-- The long-poll marker of an account (`graph.user.updates`), written by the leader only after
-- every update read before it is committed (or parked), so a new leader continues where the old
-- one stopped; what the old one stored after it is read again and absorbed by the unique keys.
-- OK's marker is opaque: kept as OK sent it.
CREATE TABLE ok_long_poll (
    account_id uuid PRIMARY KEY REFERENCES accounts (id),
    marker     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Webhook deliveries as OK posted them (after the path token and the source address were
-- checked), committed before the 200 that OK must have within 5 seconds; the account's leader
-- then stores each one (fetching its media, which can take longer than OK waits) and deletes it.
-- A leader that dies leaves its rows to the next one; a row stored twice is absorbed by the
-- unique key on the platform's message id.
CREATE TABLE ok_inbox (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id),
    payload     bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ok_inbox_account ON ok_inbox (account_id, id);
