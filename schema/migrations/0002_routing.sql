-- Routing state: who has been idle longest, when an offer was made, who declined.

ALTER TABLE agents ADD COLUMN idle_since timestamptz NOT NULL DEFAULT now();

ALTER TABLE interactions
    ADD COLUMN offered_at  timestamptz,
    ADD COLUMN assigned_at timestamptz,
    -- agents who declined or let an offer of this interaction expire; cleared on assignment
    ADD COLUMN declined_by text[] NOT NULL DEFAULT '{}';

CREATE INDEX interactions_offered ON interactions (offered_at) WHERE state = 'offered';
