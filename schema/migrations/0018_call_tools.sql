-- The tools of the call pages (issue 18): the post-call survey, call links by SMS and to
-- copy, the customer's location.

-- The customer's answers to the survey shown after a video call: one per call (the room), on
-- the call's interaction. `answers` is `[{"id", "question", "answer"}]` as the survey read
-- when the customer answered.
CREATE TABLE call_surveys (
    room_id        uuid PRIMARY KEY REFERENCES video_rooms (id),
    interaction_id uuid NOT NULL REFERENCES interactions (id),
    rating         smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    answers        jsonb NOT NULL DEFAULT '[]',
    submitted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_surveys_interaction ON call_surveys (interaction_id, submitted_at);

-- More customer links to a room than the one of its invitation: the link the agent copies, the
-- link sent by SMS. Each is good for the room's customer like the invitation's, until the
-- room's link expires or it ends. Only the hash is stored.
CREATE TABLE video_links (
    link_hash  bytea PRIMARY KEY,
    room_id    uuid NOT NULL REFERENCES video_rooms (id),
    via        text NOT NULL CHECK (via IN ('copy', 'sms')),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_links_room ON video_links (room_id);

-- A call link sent by SMS, and what the provider says of its delivery.
CREATE TABLE video_sms (
    id          uuid PRIMARY KEY,
    room_id     uuid NOT NULL REFERENCES video_rooms (id),
    link_hash   bytea NOT NULL REFERENCES video_links (link_hash),
    agent_login text NOT NULL,
    -- digits only, with the country code
    phone       text NOT NULL,
    provider    text NOT NULL,
    -- the provider's id of the message, once it took it
    provider_id text,
    state       text NOT NULL CHECK (state IN ('sending', 'sent', 'delivered', 'failed')),
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_sms_room ON video_sms (room_id);

-- The positions a customer shared in a call (the browser's, WGS 84), with the address the
-- geocoder found (null when it was off, down or knew none). At most 20 per call.
CREATE TABLE video_locations (
    id             bigserial PRIMARY KEY,
    room_id        uuid NOT NULL REFERENCES video_rooms (id),
    participant_id uuid NOT NULL REFERENCES video_participants (id),
    lat            double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon            double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    accuracy_m     double precision,
    address        text,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_locations_room ON video_locations (room_id, at);
