-- What the metrics read, kept narrow so a year of spans aggregates quickly
-- (docs/benchmarks.md): each span's metrics group as one integer, the commit
-- a span is about, a pull request's first review, whether a span is rework
-- (a revert or a hotfix), and each deploy's change set as rows. The writer
-- keeps them (store/columns.rs, store/apply.rs).

-- One row per distinct (source, kind, repo, project, environment, outcome);
-- `id` is a hash of the six values, so every writer computes the same one.
CREATE TABLE span_groups (
    id BIGINT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    repo TEXT,
    project TEXT,
    environment TEXT,
    outcome TEXT
);

ALTER TABLE spans ADD COLUMN group_id BIGINT;
ALTER TABLE spans ADD COLUMN revision TEXT;
ALTER TABLE spans ADD COLUMN reviewed_ns BIGINT;
ALTER TABLE spans ADD COLUMN rework BIGINT NOT NULL DEFAULT 0;

-- The summary reads each group's closed spans by end time, and its open ones,
-- from this index alone.
CREATE INDEX spans_by_group ON spans (group_id, end_ns, start_ns);
-- The few rework spans, for DORA's rework rate.
CREATE INDEX spans_rework ON spans (key) WHERE rework = 1;

-- A successful deploy whose sha is among the recorded commits has a change
-- set (possibly empty); a deploy without a row shipped nothing we can measure.
CREATE TABLE change_sets (
    deploy_key TEXT PRIMARY KEY,
    changes BIGINT NOT NULL
);

-- The changes (commits) of each change set.
CREATE TABLE change_set_commits (
    deploy_key TEXT NOT NULL,
    sha TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    pull_request_key TEXT,          -- the span key of the pull request the commit came from
    revert BIGINT NOT NULL,         -- 1 when the commit message starts with `Revert "`
    PRIMARY KEY (deploy_key, sha)
);

-- Work done once in Rust after the SQL migrations (Store::migrate): fill the
-- new columns and change sets of spans stored before this migration.
CREATE TABLE pending_tasks (name TEXT PRIMARY KEY);
INSERT INTO pending_tasks (name) VALUES ('backfill_metrics_columns');
