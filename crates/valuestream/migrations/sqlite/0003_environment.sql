-- The deploy environment as a column, so metrics can group and filter by it.
ALTER TABLE spans ADD COLUMN environment TEXT;
CREATE INDEX spans_by_kind_end ON spans (kind, end_ns);
