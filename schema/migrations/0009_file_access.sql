-- File access follows interaction access (store::agent_may_read_file): a customer's avatar is
-- readable by the agents who see the customer's interactions, found by its URL.
CREATE INDEX customers_avatar ON customers (avatar_url) WHERE avatar_url IS NOT NULL;
