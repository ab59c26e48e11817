-- Change sets derived by the pure core (valuestream_core::changes) and kept
-- in branch order; each incident's cause (the deploy it is attributed to,
-- also its parent span); and whether an incident is among a span's
-- ancestors (metrics.md, rework). The writer keeps them current
-- (store/changes.rs, store/apply.rs); the task below derives them once for
-- spans stored before this migration.

ALTER TABLE change_set_commits ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
ALTER TABLE spans ADD COLUMN after_incident BIGINT NOT NULL DEFAULT 0;

CREATE TABLE incident_causes (
    incident_key TEXT PRIMARY KEY,
    deploy_key TEXT NOT NULL
);
CREATE INDEX incident_causes_by_deploy ON incident_causes (deploy_key, incident_key);

-- A repository's merged pull requests and incidents, and its pushes and
-- commits, as the derivation loads them.
CREATE INDEX spans_pull_requests_by_repo ON spans (repo, outcome, end_ns, start_ns, revision, source, key)
    WHERE kind = 'pull_request';
CREATE INDEX spans_incidents_by_repo ON spans (repo, start_ns, revision, key) WHERE kind = 'incident';
CREATE INDEX pushes_by_repo ON pushes (repo);
CREATE INDEX commits_by_repo ON commits (repo);

INSERT INTO pending_tasks (name) VALUES ('derive_change_sets');
