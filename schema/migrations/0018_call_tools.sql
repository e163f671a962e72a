-- The tools of the call pages (issue 18): the post-call survey.

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
