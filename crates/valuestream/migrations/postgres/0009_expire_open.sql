-- Spans that never end (docs/operations.md). An open span still open
-- --expire-open-after after its start is given up for lost: its `state`
-- becomes 'expired' and `expired_ns` holds the end it is shown and exported
-- with, its start plus the age. `end_ns` stays NULL, so no duration, lead
-- time or DORA key counts it; a later close sets `end_ns` and clears
-- `expired_ns` as for any open span (store/expiry.rs, store/apply.rs).
ALTER TABLE spans ADD COLUMN expired_ns BIGINT;   -- UTC nanoseconds

-- The writer's sweep reads open spans by start, and /metrics counts open and
-- expired spans by source and kind, from these small indexes alone.
CREATE INDEX spans_open_by_start ON spans (start_ns, key, source, kind) WHERE state = 'open';
CREATE INDEX spans_expired_by_start ON spans (start_ns, key, source, kind, expired_ns) WHERE state = 'expired';

-- The summary's spans open at `until` leave out those expired by then,
-- still from this index alone.
DROP INDEX spans_by_group;
CREATE INDEX spans_by_group ON spans (group_id, end_ns, start_ns, expired_ns);
