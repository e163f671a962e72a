-- Scheduled video calls (issue 18): an agent books a call with the customer of an interaction
-- for a time. The room and its link are made at once (the link valid until the call's time plus
-- `video.link_ttl_s`); one reminder goes to the customer (through the interaction's channel or
-- by SMS) and to the agents of the interaction `remind_before_s` before the call.

CREATE TABLE scheduled_calls (
    id              uuid PRIMARY KEY,
    interaction_id  uuid NOT NULL REFERENCES interactions (id),
    -- the call's room, opened when the call was scheduled
    room_id         uuid NOT NULL UNIQUE REFERENCES video_rooms (id),
    -- who scheduled it
    agent_login     text NOT NULL REFERENCES agents (login),
    at              timestamptz NOT NULL,
    remind_before_s integer NOT NULL CHECK (remind_before_s BETWEEN 60 AND 604800),
    -- how the customer gets the link and the reminder
    via             text NOT NULL CHECK (via IN ('channel', 'sms')),
    -- digits only, with the country code; set when `via` is `sms`
    phone           text CHECK ((via = 'sms') = (phone IS NOT NULL)),
    state           text NOT NULL DEFAULT 'scheduled' CHECK (state IN ('scheduled', 'cancelled')),
    -- `pending` until the reminder is claimed; `sent` once (in the claiming transaction);
    -- `missed` when the call's time passed, or its room ended, before it could go
    reminder        text NOT NULL DEFAULT 'pending' CHECK (reminder IN ('pending', 'sent', 'missed')),
    reminded_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    cancelled_by    text
);
-- what the reminder workers read: pending reminders by time
CREATE INDEX scheduled_calls_pending ON scheduled_calls (at) WHERE state = 'scheduled' AND reminder = 'pending';
CREATE INDEX scheduled_calls_interaction ON scheduled_calls (interaction_id);
CREATE INDEX scheduled_calls_at ON scheduled_calls (at, id);

-- the reminder sent by SMS carries a link of its own, like the one the agent sends
ALTER TABLE video_links DROP CONSTRAINT video_links_via_check;
ALTER TABLE video_links ADD CONSTRAINT video_links_via_check CHECK (via IN ('copy', 'sms', 'schedule'));
