-- +goose Up
-- Where a retention round stopped in writing the tombstones of an
-- audit_log partition (internal/retention, docs/design.md "Retention",
-- "The audit log"): a round spends at most its budget on them and the
-- next one goes on from here, so a partition of billions of keys does not
-- hold the rounds' lock for days. One row per partition being dropped:
-- the last event key (source, event_id) whose tombstone the broker
-- acknowledged, then the next page of the request-id pass; done once every
-- tombstone is written. The row goes with the partition.
CREATE TABLE audit_tombstone_progress (
    partition_name text    PRIMARY KEY,
    source         text    NOT NULL DEFAULT '',
    event_id       text    NOT NULL DEFAULT '',
    next_page      bigint  NOT NULL DEFAULT -1, -- -1: the event keys' pass is not over
    done           boolean NOT NULL DEFAULT false
);

-- +goose Down
DROP TABLE audit_tombstone_progress;
