-- Video rooms: one call of an interaction, on the embedded SFU.

CREATE TABLE video_rooms (
    id              uuid PRIMARY KEY,
    interaction_id  uuid NOT NULL REFERENCES interactions (id),
    -- the agent who started it; the only one who joins in the `agent` role
    agent_login     text NOT NULL REFERENCES agents (login),
    mode            text NOT NULL CHECK (mode IN ('two_way', 'one_way')),
    quality         text NOT NULL CHECK (quality IN ('480p', '720p', '1080p', '2160p')),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'ended')),
    -- SHA-256 of the customer's link token; the token itself is never stored
    link_hash       bytea NOT NULL UNIQUE,
    link_expires_at timestamptz NOT NULL,
    -- the video node that hosts the room's media, claimed by the first join
    node            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    end_reason      text
);

-- at most one open room per interaction
CREATE UNIQUE INDEX video_rooms_one_open ON video_rooms (interaction_id) WHERE state = 'open';
CREATE INDEX video_rooms_open_expiry ON video_rooms (link_expires_at) WHERE state = 'open';
