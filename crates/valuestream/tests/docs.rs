//! The repository stands on its own: every relative link in its Markdown
//! (README.md, ARCHITECTURE.md, CONTRIBUTING.md, docs/ and every other `.md`
//! file) resolves to a file or folder inside it, a `#fragment` to a heading of
//! the page it names, and no page points at files a clone does not have.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository's root (this crate is `crates/valuestream`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every `.md` file under `dir`, skipping build output and hidden folders.
fn markdown_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                markdown_files(&path, files);
            }
        } else if name.ends_with(".md") {
            files.push(path);
        }
    }
}

/// The text of a page without its fenced code blocks and inline code, where
/// brackets and parentheses are not links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of `[text](target)`, `![alt](target)` and `[label]: target`.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut found = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        found.push(rest[..end].to_string());
    }
    for line in prose.lines() {
        let line = line.trim_start();
        if let Some(after) = line.strip_prefix('[')
            && let Some((label, target)) = after.split_once("]:")
            && !label.is_empty()
        {
            found.push(target.to_string());
        }
    }
    found
        .into_iter()
        .map(|target| {
            let target = target.trim();
            // `(path "title")`, `(<path>)`
            let target = target.split_once(char::is_whitespace).map_or(target, |(path, _)| path);
            target.trim_start_matches('<').trim_end_matches('>').to_string()
        })
        .filter(|target| !target.is_empty())
        .collect()
}

/// The anchors GitHub gives a page's headings: lowercase, punctuation other
/// than `-` and `_` dropped, spaces as `-`, a repeated one suffixed `-1`, `-2`.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .trim_end_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.push(if *count == 0 { slug.clone() } else { format!("{slug}-{count}") });
        *count += 1;
    }
    anchors
}

#[test]
fn anchors_follow_github() {
    let page = "# Metrics: what every number means\n## The DORA keys (`/api/v1/dora`)\n```\n# not a heading\n```\n## Notes\n## Notes\n### `event start` / `event end`\n";
    assert_eq!(
        anchors(page),
        ["metrics-what-every-number-means", "the-dora-keys-apiv1dora", "notes", "notes-1", "event-start--event-end"]
    );
    assert_eq!(
        links(
            "see [a](docs/a.md#x), `[not](a link)`, ![img](i.png \"title\")\n[ref]: <docs/b.md>\n```\n[no](code.md)\n```"
        ),
        ["docs/a.md#x", "i.png", "docs/b.md"]
    );
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let root = root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    let relative = |path: &Path| path.strip_prefix(&root).unwrap().display().to_string();
    let names: Vec<String> = files.iter().map(|f| relative(f)).collect();
    for required in ["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md", "docs/api.md", "docs/configuration.md"] {
        assert!(names.iter().any(|n| n == required), "{required} is missing: {names:?}");
    }
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            let Ok(resolved) = resolved.canonicalize() else {
                broken.push(format!("{}: {target} does not exist", relative(file)));
                continue;
            };
            if !resolved.starts_with(&root) {
                broken.push(format!("{}: {target} is outside the repository", relative(file)));
                continue;
            }
            if let Some(fragment) = fragment
                && resolved.extension().is_some_and(|e| e == "md")
            {
                let headings = anchors(&std::fs::read_to_string(&resolved).unwrap());
                if !headings.iter().any(|a| a == fragment) {
                    broken.push(format!("{}: {target}: no heading #{fragment} (has {headings:?})", relative(file)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn no_page_points_at_files_a_clone_does_not_have() {
    let root = root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            // Built from parts, so this file does not itself name those places.
            for outside in [concat!("..", "/shared"), concat!("/", "work/")] {
                if line.contains(outside) {
                    found.push(format!("{}:{}: {line}", file.strip_prefix(&root).unwrap().display(), number + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "pages that point outside the repository:\n{}", found.join("\n"));
}
