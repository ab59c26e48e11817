-- Deliveries as received: the raw input, kept so everything else can be rebuilt.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,            -- "{source}:{sender's delivery id, or SHA-256 of source + body}"
    source TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL,    -- UTC nanoseconds
    status TEXT NOT NULL,           -- accepted | ignored | pong
    headers TEXT NOT NULL,          -- JSON object of the headers kept
    body BYTEA NOT NULL
);

-- Every event a delivery gave for a span; a span is the fold of its events.
CREATE TABLE span_events (
    span_key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,            -- JSON SpanEvent
    PRIMARY KEY (span_key, delivery_id, seq)
);

-- The current state of each span, with its resolved parent and ids.
CREATE TABLE spans (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    repo TEXT,
    project TEXT,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT,
    state TEXT NOT NULL,            -- open | closed
    outcome TEXT,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_key TEXT,
    parent_span_id TEXT,
    attributes TEXT NOT NULL,       -- JSON object
    links TEXT NOT NULL,            -- JSON array of span keys
    trace_refs TEXT NOT NULL,       -- JSON array
    parent_refs TEXT NOT NULL       -- JSON array, best first
);
CREATE INDEX spans_by_trace ON spans (trace_id, start_ns);
CREATE INDEX spans_by_parent ON spans (parent_key);
CREATE INDEX spans_by_start ON spans (start_ns, key);
CREATE INDEX spans_by_end ON spans (end_ns);

-- What each span answers to: its own key and its trace references, lowercase.
CREATE TABLE span_refs (
    ref TEXT NOT NULL,
    span_key TEXT NOT NULL,
    PRIMARY KEY (ref, span_key)
);
CREATE INDEX span_refs_by_key ON span_refs (span_key);

-- Where each span looks for its parent, best first (position), lowercase.
CREATE TABLE span_parent_refs (
    ref TEXT NOT NULL,
    span_key TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (ref, span_key)
);
CREATE INDEX span_parent_refs_by_key ON span_parent_refs (span_key);

-- Finished spans waiting for the exporter; a row is deleted once the backend acknowledged it.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    span_key TEXT NOT NULL,
    payload TEXT NOT NULL,          -- JSON ExportSpan
    enqueued_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
