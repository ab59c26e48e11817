-- One export per span (contract.md, "Exported spans"). The outbox holds at
-- most one row per span, stamped with the time of the delivery that last
-- changed it; the export task sends a row once it has stayed unchanged for
-- the settle delay (--export-delay). `span_exports` remembers the end and
-- outcome the backend last received, so a later change that moves neither
-- is not sent again, and one that does is counted as a re-export.

ALTER TABLE outbox ADD COLUMN changed_at BIGINT NOT NULL DEFAULT 0;   -- UTC nanoseconds
CREATE INDEX outbox_by_span ON outbox (span_key);

CREATE TABLE span_exports (
    span_key TEXT PRIMARY KEY,
    end_ns BIGINT NOT NULL,
    outcome TEXT,
    exports BIGINT NOT NULL                -- how many times it was sent
);

-- Closed spans with nothing waiting were exported before this migration (or
-- export was off): they count as sent once, as they are now.
INSERT INTO span_exports (span_key, end_ns, outcome, exports)
SELECT key, end_ns, outcome, 1 FROM spans
WHERE state = 'closed' AND end_ns IS NOT NULL AND key NOT IN (SELECT span_key FROM outbox);
