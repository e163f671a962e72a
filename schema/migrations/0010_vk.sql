-- VK community bots: where the Bots Long Poll stopped, and whether a customer lets the
-- community write to them.

-- The Bots Long Poll position (`ts`) of an account, written by the leader only after every
-- update of a batch is committed (or parked), so a new leader continues where the old one
-- stopped: at worst it reads again what the old one stored and had not confirmed here, which the
-- unique keys absorb. VK's `ts` is a number that may come as a string: kept as VK sent it.
CREATE TABLE vk_long_poll (
    account_id uuid PRIMARY KEY REFERENCES accounts (id),
    ts         text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A customer's answer to "may this community write to you?": `message_allow` (allowed) and
-- `message_deny` (not), beside the customer's identity on the account (same key as
-- `customer_identities`; no foreign key, because VK can report a refusal from someone who never
-- wrote, and an agent-started conversation must still see it). A message to someone who denied
-- fails at once with the reason, without asking VK. Writing to the community allows it again.
CREATE TABLE vk_message_permissions (
    account_id  uuid NOT NULL REFERENCES accounts (id),
    external_id text NOT NULL,
    allowed     boolean NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, external_id)
);
