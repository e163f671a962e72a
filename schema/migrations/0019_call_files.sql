-- Files and screenshots sent in a video call (issue 18): each is a file of the file server,
-- carried by a message of the call's interaction (so it is kept with the interaction and shown
-- in its history), and sent by one participant of one call. The call pages show a call's files
-- to that call's participants only.
CREATE TABLE video_files (
    file_id        uuid PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    room_id        uuid NOT NULL REFERENCES video_rooms (id),
    interaction_id uuid NOT NULL REFERENCES interactions (id),
    message_id     uuid NOT NULL REFERENCES messages (id),
    participant_id uuid,
    role           text NOT NULL CHECK (role IN ('agent', 'customer', 'supervisor')),
    sender_name    text NOT NULL,
    -- a screenshot of the call's video (a JPEG), as opposed to any file
    screenshot     boolean NOT NULL DEFAULT false,
    -- the customer's position the hub wrote into the screenshot's EXIF, when there was one
    gps_lat        double precision,
    gps_lon        double precision,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_files_room ON video_files (room_id, created_at);
