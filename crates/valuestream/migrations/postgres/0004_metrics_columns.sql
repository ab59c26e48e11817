-- What the metrics read, kept narrow so a year of spans aggregates quickly
-- (docs/benchmarks.md): each span's metrics group as one integer, the commit
-- a span is about (built, deployed, or an incident's root cause), a pull
-- request's first review, the rework spans (reverts and hotfixes), each
-- span's links and each deploy's change set as rows. The writer
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

-- The summary reads each group's closed spans by end time, and its open ones,
-- from this index alone.
CREATE INDEX spans_by_group ON spans (group_id, end_ns, start_ns);
-- Deploys in a window, and a repository's deploys in time order (recovery,
-- incident attribution), and incidents, each from a small index of its kind
-- alone. They replace 0003's index on (kind, end_ns), which the planner
-- preferred for its ordering and then read a table row per deploy.
DROP INDEX spans_by_kind_end;
CREATE INDEX spans_deploys_by_end ON spans (end_ns, environment, outcome, repo, source, project, key, trace_id, kind)
    WHERE kind = 'deploy';
CREATE INDEX spans_deploys_by_repo ON spans (repo, outcome, end_ns, environment, source, project, key, revision, kind)
    WHERE kind = 'deploy';
CREATE INDEX spans_incidents ON spans (end_ns, start_ns, repo, project, trace_id, revision, key, kind)
    WHERE kind = 'incident';

-- The rework spans (metrics.md: pull requests titled `Revert "…"` or labelled `hotfix`).
CREATE TABLE rework_spans (span_key TEXT PRIMARY KEY);

-- Each span's links (what `spans.links` lists), as rows.
CREATE TABLE span_links (
    span_key TEXT NOT NULL,
    linked_key TEXT NOT NULL,
    PRIMARY KEY (span_key, linked_key)
);
CREATE INDEX span_links_by_linked ON span_links (linked_key, span_key);

-- A successful deploy whose sha is among the recorded commits has a change
-- set (possibly empty); a deploy without a row shipped nothing we can measure.
CREATE TABLE change_sets (
    deploy_key TEXT PRIMARY KEY,
    changes BIGINT NOT NULL,
    reverts BIGINT NOT NULL         -- changes whose message starts with `Revert "`
);

-- The changes (commits) of each change set.
CREATE TABLE change_set_commits (
    deploy_key TEXT NOT NULL,
    sha TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    pull_request_key TEXT,          -- the span key of the pull request the commit came from
    revert BIGINT NOT NULL,         -- 1 when the commit message starts with `Revert "`
    -- That pull request's creation, first review and merge, copied from its
    -- span and kept current by the writer (NULL while it is not stored).
    pr_opened_ns BIGINT,
    pr_reviewed_ns BIGINT,
    pr_merged_ns BIGINT,
    PRIMARY KEY (deploy_key, sha)
);
CREATE INDEX change_set_commits_by_pull_request ON change_set_commits (pull_request_key);
-- Lead times read a deploy's changes from this index alone.
CREATE INDEX change_set_commits_times
    ON change_set_commits (deploy_key, committed_at, pr_opened_ns, pr_reviewed_ns, pr_merged_ns);

-- Work done once in Rust after the SQL migrations (Store::migrate): fill the
-- new columns and change sets of spans stored before this migration.
CREATE TABLE pending_tasks (name TEXT PRIMARY KEY);
INSERT INTO pending_tasks (name) VALUES ('backfill_metrics_columns');
