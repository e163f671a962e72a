-- A recorded call that moves to another video node (its node died, or it was re-pinned) goes on
-- being recorded there: a room's recording is made of parts, one per node run that recorded it
-- (docs/video.md, "Recording", "A call that moves").

-- The part of the call's recording: 1 for the first node, 2 for the node the call moved to, ...
ALTER TABLE video_recordings ADD COLUMN part integer NOT NULL DEFAULT 1 CHECK (part >= 1);
ALTER TABLE video_recordings DROP CONSTRAINT video_recordings_room_id_key;
ALTER TABLE video_recordings ADD CONSTRAINT video_recordings_room_part UNIQUE (room_id, part);

-- Who finishes (processes and uploads) the part: the node that spooled it when the call ended
-- there, or whichever node claimed the spool a dead node left (null while it records). Every
-- claim bumps `claims`, compared and set, so two nodes racing for the same spool cannot both
-- finish it.
ALTER TABLE video_recordings ADD COLUMN processor text;
ALTER TABLE video_recordings ADD COLUMN claims integer NOT NULL DEFAULT 0;
UPDATE video_recordings SET processor = node WHERE state <> 'recording';

DROP INDEX IF EXISTS video_recordings_unfinished;
CREATE INDEX video_recordings_unfinished ON video_recordings (state) WHERE state IN ('recording', 'processing');
