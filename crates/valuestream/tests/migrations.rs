//! The SQLite and PostgreSQL migration trees cannot drift: the same files,
//! the same statements, apart from the few words where the dialects differ.
//! (A migration that has landed is never edited: sqlx checksums it.)

use std::collections::BTreeSet;
use std::path::Path;

/// SQLite's spelling → PostgreSQL's, the only differences allowed.
const DIALECT: &[(&str, &str)] = &[("BLOB", "BYTEA"), ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")];

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect()
}

#[test]
fn the_sqlite_and_postgres_migrations_are_the_same_but_for_dialect_words() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let (sqlite, postgres) = (root.join("sqlite"), root.join("postgres"));
    assert_eq!(files(&sqlite), files(&postgres), "the same migration files in both trees");
    for name in files(&sqlite) {
        let mut translated = std::fs::read_to_string(sqlite.join(&name)).unwrap();
        for (ours, theirs) in DIALECT {
            translated = translated.replace(ours, theirs);
        }
        let theirs = std::fs::read_to_string(postgres.join(&name)).unwrap();
        for (number, (a, b)) in translated.lines().zip(theirs.lines()).enumerate() {
            assert_eq!(a, b, "{name}, line {}: SQLite's (translated) and PostgreSQL's differ", number + 1);
        }
        assert_eq!(translated.lines().count(), theirs.lines().count(), "{name}: as many lines in both");
    }
}
