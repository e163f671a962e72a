-- The survey after a closed chat (schema/src/survey.rs, docs/interaction-loader.md "Survey
-- after a closed chat"). Its answers are kept where the post-call survey's are: a survey row
-- without a room is a chat's. `source` says which; a call's row has its room, a chat's none.
ALTER TABLE call_surveys DROP CONSTRAINT call_surveys_pkey;
ALTER TABLE call_surveys ALTER COLUMN room_id DROP NOT NULL;
ALTER TABLE call_surveys ADD CONSTRAINT call_surveys_room_key UNIQUE (room_id);
ALTER TABLE call_surveys ADD COLUMN source text NOT NULL DEFAULT 'video_call'
    CHECK (source IN ('video_call', 'chat'));
ALTER TABLE call_surveys ADD CONSTRAINT call_surveys_source_room
    CHECK ((source = 'video_call') = (room_id IS NOT NULL));

-- A chat survey waiting for the customer's answer: one per closed interaction, deleted when it
-- is answered, ends, or is found expired. `state` is the survey and what was answered so far
-- (schema::survey::ChatSurveyState).
CREATE TABLE chat_surveys (
    interaction_id uuid PRIMARY KEY REFERENCES interactions (id),
    account_id     uuid NOT NULL REFERENCES accounts (id),
    customer_id    uuid NOT NULL REFERENCES customers (id),
    state          jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_surveys_customer ON chat_surveys (account_id, customer_id);

-- Interaction fields the admin defines (schema/src/fields.rs): agents set their values on the
-- interactions they own (`interaction.set_field`); the values live in `interactions.fields`.
CREATE TABLE interaction_field_defs (
    key        text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    label      text NOT NULL,
    type       text NOT NULL CHECK (type IN ('text', 'number', 'choice', 'bool')),
    choices    jsonb NOT NULL DEFAULT '[]',
    required   boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
