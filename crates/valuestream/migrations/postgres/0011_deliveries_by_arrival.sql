-- `valuestream rebuild` reads the stored deliveries in the order they
-- arrived, a page at a time: this index makes each page a range scan.
CREATE INDEX deliveries_by_arrival ON deliveries (received_at, id);
