-- `valuestream rebuild` reads the stored deliveries in the order they
-- arrived, a page at a time: this index makes each page a range scan.
CREATE INDEX deliveries_by_arrival ON deliveries (received_at, id);
-- The latest delivery of each source (`GET /api/v1/meta`), one seek each.
CREATE INDEX deliveries_by_source ON deliveries (source, received_at);
