-- Forced pushes (metrics.md, "Changes and change sets"): a push that rewrote
-- the default branch takes commits off it. A push is now known by where it
-- moved the branch from and to, so a reset back to a commit an earlier push
-- reached (the same `after_sha`) is a push of its own, and each push's
-- commits belong to that push alone. Pushes stored before this migration
-- count as not forced (it was not recorded).

CREATE TABLE pushes_v7 (
    source TEXT NOT NULL,
    repo TEXT NOT NULL,
    before_sha TEXT NOT NULL,
    after_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    delivery_id TEXT NOT NULL,
    forced BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source, repo, before_sha, after_sha)
);
INSERT INTO pushes_v7 (source, repo, before_sha, after_sha, branch, pushed_at, delivery_id)
    SELECT source, repo, before_sha, after_sha, branch, pushed_at, delivery_id FROM pushes;

CREATE TABLE push_commits_v7 (
    source TEXT NOT NULL,
    repo TEXT NOT NULL,
    push_before TEXT NOT NULL,
    push_after TEXT NOT NULL,
    position BIGINT NOT NULL,
    sha TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    pull_request TEXT,
    PRIMARY KEY (source, repo, push_before, push_after, position)
);
INSERT INTO push_commits_v7 (source, repo, push_before, push_after, position, sha, committed_at, message, pull_request)
    SELECT c.source, c.repo, p.before_sha, c.push_after, c.position, c.sha, c.committed_at, c.message, c.pull_request
    FROM push_commits c JOIN pushes p ON p.source = c.source AND p.repo = c.repo AND p.after_sha = c.push_after;

DROP TABLE push_commits;
DROP TABLE pushes;
ALTER TABLE pushes_v7 RENAME TO pushes;
ALTER TABLE push_commits_v7 RENAME TO push_commits;
CREATE INDEX pushes_by_before ON pushes (source, repo, before_sha);
CREATE INDEX pushes_by_repo ON pushes (repo);
CREATE INDEX push_commits_by_repo ON push_commits (repo);
