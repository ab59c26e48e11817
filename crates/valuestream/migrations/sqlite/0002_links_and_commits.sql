-- Span links (a deploy links to every pull request it ships) and the commits
-- that reached default branches (the raw material of lead time).

ALTER TABLE spans ADD COLUMN link_refs TEXT NOT NULL DEFAULT '[]';

-- Where each span looks for the spans it links to (every match counts), lowercase.
CREATE TABLE span_link_refs (
    ref TEXT NOT NULL,
    span_key TEXT NOT NULL,
    PRIMARY KEY (ref, span_key)
);
CREATE INDEX span_link_refs_by_key ON span_link_refs (span_key);

-- One push to a default branch; `before_sha` → `after_sha` chains pushes in branch order.
CREATE TABLE pushes (
    source TEXT NOT NULL,
    repo TEXT NOT NULL,
    after_sha TEXT NOT NULL,
    before_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    delivery_id TEXT NOT NULL,
    PRIMARY KEY (source, repo, after_sha)
);
CREATE INDEX pushes_by_before ON pushes (source, repo, before_sha);

-- Commits in the order they reached the branch: their push, then `position` in it.
CREATE TABLE commits (
    source TEXT NOT NULL,
    repo TEXT NOT NULL,
    sha TEXT NOT NULL,
    push_after TEXT NOT NULL,
    position BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    pull_request TEXT,
    PRIMARY KEY (source, repo, sha)
);
CREATE INDEX commits_by_push ON commits (source, repo, push_after, position);
