-- Video calls: recording, call records and statistics (issue 17); file kinds with their own
-- quotas and retention.

-- A file is what a message carries (`chat`) or a call's recording (`recording`). Quotas and
-- deletion by age are per kind.
ALTER TABLE files ADD COLUMN kind text NOT NULL DEFAULT 'chat' CHECK (kind IN ('chat', 'recording'));
CREATE INDEX files_kind_created ON files (kind, created_at);

-- What each kind holds (kept by the trigger below, so the quota check and the admin API never
-- sum the table), the file server's settings for it (written at its start, for the admin API)
-- and the uploads refused over its quota.
CREATE TABLE file_usage (
    kind            text PRIMARY KEY CHECK (kind IN ('chat', 'recording')),
    files           bigint NOT NULL DEFAULT 0,
    bytes           bigint NOT NULL DEFAULT 0,
    -- null: no quota
    quota_bytes     bigint CHECK (quota_bytes > 0),
    -- null: kept forever
    retention_days  integer CHECK (retention_days > 0),
    settings_at     timestamptz,
    refused         bigint NOT NULL DEFAULT 0,
    last_refused_at timestamptz
);
INSERT INTO file_usage (kind, files, bytes) SELECT 'chat', count(*), coalesce(sum(size), 0) FROM files;
INSERT INTO file_usage (kind) VALUES ('recording');

CREATE FUNCTION files_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE file_usage SET files = files + 1, bytes = bytes + NEW.size WHERE kind = NEW.kind;
    ELSE
        UPDATE file_usage SET files = files - 1, bytes = bytes - OLD.size WHERE kind = OLD.kind;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER files_usage AFTER INSERT OR DELETE ON files FOR EACH ROW EXECUTE FUNCTION files_usage();

-- Whether a room is recorded: set when it is started, from the call's own choice or its
-- queue's setting. Recording also needs the customer's consent (video_participants).
ALTER TABLE video_rooms ADD COLUMN record boolean NOT NULL DEFAULT false;
-- the call-records period query pages by (created_at, id): this index replaces 0014's on
-- created_at alone (the statistics' calls read it just as well)
DROP INDEX IF EXISTS video_rooms_created;
CREATE INDEX video_rooms_created ON video_rooms (created_at, id);

-- Per queue: whether its video calls are recorded when the call does not say.
CREATE TABLE video_queue_settings (
    queue      text PRIMARY KEY REFERENCES queues (name),
    record     boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Who was in a call: one row per join (a reconnect is a new row), with what the browser and
-- the SFU told about it.
CREATE TABLE video_participants (
    id                uuid PRIMARY KEY,
    room_id           uuid NOT NULL REFERENCES video_rooms (id),
    role              text NOT NULL CHECK (role IN ('agent', 'customer', 'supervisor')),
    -- the agent's or supervisor's login; null for the customer
    login             text,
    name              text NOT NULL,
    joined_at         timestamptz NOT NULL DEFAULT now(),
    -- when media first flowed (ICE and DTLS up)
    connected_at      timestamptz,
    left_at           timestamptz,
    -- left, ended, replaced, disconnected (socket lost), timeout (heartbeat), shutdown
    left_reason       text,
    user_agent        text,
    browser           text,
    os                text,
    device            text CHECK (device IN ('desktop', 'mobile', 'tablet')),
    camera            boolean,
    microphone        boolean,
    -- how the media reached the SFU: straight, or through a TURN relay
    ice_path          text CHECK (ice_path IN ('direct', 'relay')),
    -- the customer's answer to the recording notice, what it said, and when
    recording_consent boolean,
    consent_text      text,
    consented_at      timestamptz
);
CREATE INDEX video_participants_room ON video_participants (room_id, joined_at);

-- The SFU's own view of each participant's connection, sampled during the call.
CREATE TABLE video_quality_samples (
    participant_id   uuid NOT NULL REFERENCES video_participants (id),
    at               timestamptz NOT NULL,
    level            text NOT NULL CHECK (level IN ('good', 'fair', 'poor')),
    -- of what the SFU received from the participant over the sample's interval
    loss_pct         real NOT NULL,
    jitter_ms        real NOT NULL,
    -- from the participant's receiver reports; null before the first
    rtt_ms           real,
    bitrate_in_kbps  real NOT NULL,
    bitrate_out_kbps real NOT NULL,
    PRIMARY KEY (participant_id, at)
);

-- The chat of a call (the data channel's `chat` messages, as relayed).
CREATE TABLE video_chat (
    id             bigserial PRIMARY KEY,
    room_id        uuid NOT NULL REFERENCES video_rooms (id),
    participant_id uuid NOT NULL,
    role           text NOT NULL,
    name           text NOT NULL,
    text           text NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX video_chat_room ON video_chat (room_id, id);

-- A call's recording: spooled on its node while the call runs, then processed into one file
-- of the file server (kind `recording`).
CREATE TABLE video_recordings (
    id             uuid PRIMARY KEY,
    room_id        uuid NOT NULL UNIQUE REFERENCES video_rooms (id),
    interaction_id uuid NOT NULL REFERENCES interactions (id),
    state          text NOT NULL DEFAULT 'recording'
                   CHECK (state IN ('recording', 'processing', 'ready', 'failed', 'deleted')),
    -- the video node that spools it
    node           text NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    duration_ms    bigint,
    file_id        uuid REFERENCES files (id) ON DELETE SET NULL,
    size           bigint,
    video_codec    text,
    -- why it failed (`quota_exceeded: ...`, `processing: ...`)
    error          text,
    processing_ms  bigint,
    ready_at       timestamptz,
    deleted_at     timestamptz
);
CREATE INDEX video_recordings_interaction ON video_recordings (interaction_id);
CREATE INDEX video_recordings_file ON video_recordings (file_id) WHERE file_id IS NOT NULL;
CREATE INDEX video_recordings_unfinished ON video_recordings (node) WHERE state IN ('recording', 'processing');
