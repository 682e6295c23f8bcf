-- +goose Up
-- A customer's condition lives here, not in a member's memory: a row exists
-- while a (source, customer) has unfinished older events, and any owner of
-- the partition named in the row continues the work it describes.
--   BLOCKED   its blocker (FAILED) is in backoff until next_attempt_at
--   PARKED    its blocker went DEAD; nothing runs until an operator acts
--   DRAINING  its PARKED events run one by one, oldest first, now
-- While a row exists, the customer's new events are stored PARKED (with
-- their payload) behind the blocker instead of being processed: order holds
-- and the partition goes on with every other customer.
CREATE TABLE customer_blocks (
    source            text        NOT NULL,
    customer_id       text        NOT NULL,
    state             text        NOT NULL CHECK (state IN ('BLOCKED', 'PARKED', 'DRAINING')),
    -- the event that must finish first (BLOCKED, PARKED); NULL while DRAINING
    blocking_event_id text,
    -- whose owner drives the row: the partition of the customer's events
    kafka_partition   integer     NOT NULL,
    -- when the row is due (BLOCKED: the retry; DRAINING: now); NULL when PARKED
    next_attempt_at   timestamptz,
    -- start of the blocker's retry window (RetryPolicy.MaxElapsed)
    window_start      timestamptz NOT NULL DEFAULT now(),
    since             timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, customer_id),
    CHECK ((state = 'DRAINING') = (blocking_event_id IS NULL)),
    CHECK ((state = 'PARKED') = (next_attempt_at IS NULL))
);
CREATE INDEX customer_blocks_due_idx ON customer_blocks (kafka_partition, next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;

-- A drain takes a customer's oldest PARKED event.
CREATE INDEX events_parked_idx ON events (source, customer_id, kafka_partition, kafka_offset)
    WHERE status = 'PARKED';

-- Parked customers carry over, keyed by their blocker's source.
INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition, since)
SELECT p.source, p.customer_id, 'PARKED', p.blocking_event_id, coalesce(e.kafka_partition, 0), p.since
FROM parked_customers p
LEFT JOIN events e ON e.source = p.source AND e.event_id = p.blocking_event_id;
-- A FAILED event was retried by the member that held it in memory; it is now
-- a BLOCKED row, due at once, that any owner of its partition retries.
INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition, next_attempt_at)
SELECT DISTINCT ON (e.source, e.customer_id) e.source, e.customer_id, 'BLOCKED', e.event_id, coalesce(e.kafka_partition, 0), now()
FROM events e
WHERE e.status = 'FAILED'
ORDER BY e.source, e.customer_id, e.kafka_partition, e.kafka_offset
ON CONFLICT DO NOTHING;
DROP TABLE parked_customers;

-- Fencing: a member takes a partition by raising its owner_epoch, and every
-- transaction that writes for the partition checks the epoch it took (under
-- a share lock the next owner's raise waits for). A member that lost the
-- partition cannot commit effects, outcomes or a position. next_offset -1:
-- no position stored yet.
ALTER TABLE consumer_offsets ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE consumer_offsets DROP COLUMN owner_epoch;
CREATE TABLE parked_customers (
    customer_id       text        PRIMARY KEY,
    source            text        NOT NULL,
    blocking_event_id text        NOT NULL,
    since             timestamptz NOT NULL DEFAULT now()
);
INSERT INTO parked_customers (customer_id, source, blocking_event_id, since)
SELECT DISTINCT ON (customer_id) customer_id, source, blocking_event_id, since
FROM customer_blocks WHERE state = 'PARKED' ORDER BY customer_id, since;
DROP INDEX events_parked_idx;
DROP TABLE customer_blocks;
