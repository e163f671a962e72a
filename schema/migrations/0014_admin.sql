-- Statistics for the admin panel (schema/src/store/stats.rs): the reports read the routing
-- events of a period and the agents' status changes, which no index served by time before.

-- the routing events of a period, by time (message events, the bulk of the log, left out)
CREATE INDEX interaction_events_routing_time ON interaction_events (created_at)
    WHERE kind IN ('interaction.created', 'interaction.reopened', 'interaction.assigned',
                   'interaction.transferred', 'interaction.closed', 'video.room');

-- an agent's status changes (its status before a period, and during it), without walking its
-- whole event stream
CREATE INDEX agent_events_status ON agent_events (agent_login, created_at) WHERE event = 'agent.status';

-- the calls of a period
CREATE INDEX video_rooms_created ON video_rooms (created_at);
