-- Change sets derived by the pure core (valuestream_core::changes) and kept
-- in branch order; each incident's cause (the deploy it is attributed to,
-- also its parent span); and whether an incident is among a span's
-- ancestors (metrics.md, rework). The writer keeps them current
-- (store/changes.rs, store/apply.rs); the task below derives them once for
-- spans stored before this migration.

ALTER TABLE change_set_commits ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
-- A pull request's first commit (from pushes to its head branch), copied
-- like its other times: coding time, and the change time of what it ships.
ALTER TABLE change_set_commits ADD COLUMN pr_first_commit_ns BIGINT;
ALTER TABLE spans ADD COLUMN first_commit_ns BIGINT;
-- 1 when the change's pull request is rework on its own (a revert title, a
-- hotfix label) or has an incident among its ancestors: a deploy shipping it
-- is rework (metrics.md). Kept current by the writer.
ALTER TABLE change_set_commits ADD COLUMN pr_rework BIGINT NOT NULL DEFAULT 0;

-- Commits pushed to branches other than the default one (they date pull
-- requests' first commits; they are not changes).
CREATE TABLE branch_commits (
    source TEXT NOT NULL,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (source, repo, branch, sha)
);
CREATE INDEX branch_commits_by_time ON branch_commits (source, repo, branch, committed_at);
ALTER TABLE spans ADD COLUMN after_incident BIGINT NOT NULL DEFAULT 0;

CREATE TABLE incident_causes (
    incident_key TEXT PRIMARY KEY,
    deploy_key TEXT NOT NULL
);
CREATE INDEX incident_causes_by_deploy ON incident_causes (deploy_key, incident_key);

-- DORA reads deploys, their changes and their rework from indexes alone
-- (0004's versions, plus the new columns).
DROP INDEX spans_deploys_by_end;
CREATE INDEX spans_deploys_by_end
    ON spans (end_ns, environment, outcome, repo, source, project, key, trace_id, after_incident, kind)
    WHERE kind = 'deploy';
DROP INDEX change_set_commits_times;
CREATE INDEX change_set_commits_times
    ON change_set_commits (deploy_key, committed_at, pr_opened_ns, pr_reviewed_ns, pr_merged_ns, pr_first_commit_ns);
CREATE INDEX change_set_commits_rework ON change_set_commits (deploy_key, revert, pr_rework);

-- A repository's merged pull requests and incidents, and its pushes and
-- commits, as the derivation loads them.
CREATE INDEX spans_pull_requests_by_repo ON spans (repo, outcome, end_ns, start_ns, revision, source, key)
    WHERE kind = 'pull_request';
CREATE INDEX spans_incidents_by_repo ON spans (repo, start_ns, revision, key) WHERE kind = 'incident';
CREATE INDEX pushes_by_repo ON pushes (repo);

-- Commits belong to their push: a sha two pushes carry (a push repeating its
-- predecessor's head) is kept with both, so branch order does not depend on
-- which push arrived first. Replaces `commits`, keyed by sha alone.
CREATE TABLE push_commits (
    source TEXT NOT NULL,
    repo TEXT NOT NULL,
    push_after TEXT NOT NULL,
    position BIGINT NOT NULL,
    sha TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    pull_request TEXT,
    PRIMARY KEY (source, repo, push_after, position)
);
CREATE INDEX push_commits_by_repo ON push_commits (repo);
INSERT INTO push_commits (source, repo, push_after, position, sha, committed_at, message, pull_request)
    SELECT source, repo, push_after, position, sha, committed_at, message, pull_request FROM commits;
DROP TABLE commits;

INSERT INTO pending_tasks (name) VALUES ('derive_change_sets');
