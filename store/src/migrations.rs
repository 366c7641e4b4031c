//! The migrations built into this binary, per backend, as a sqlx `Migrator`.
//!
//! `build.rs` embeds the SQL files; this turns them into migrations exactly as sqlx's own
//! directory reader does (version, description with `_` as spaces, SHA-384 checksum of the
//! text, `-- no-transaction` opt-out), so a database migrated by an older build matches.

use std::sync::OnceLock;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr as _;

use crate::Backend;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The migrator for `backend`, built once.
pub(crate) fn migrator(backend: Backend) -> &'static Migrator {
    static PG: OnceLock<Migrator> = OnceLock::new();
    static LITE: OnceLock<Migrator> = OnceLock::new();
    let (cell, table) = match backend {
        Backend::Postgres => (&PG, POSTGRES),
        Backend::Sqlite => (&LITE, SQLITE),
    };
    cell.get_or_init(|| {
        Migrator::with_migrations(
            table
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        description.into(),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        sql.starts_with("-- no-transaction"),
                    )
                })
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_version_order() {
        for (backend, dir) in [(Backend::Postgres, "postgres"), (Backend::Sqlite, "sqlite")] {
            let on_disk = std::fs::read_dir(
                // Where the package is now: a test binary from another checkout of the same
                // sources is reused as is.
                std::path::PathBuf::from(
                    std::env::var_os("CARGO_MANIFEST_DIR")
                        .unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
                )
                .join("../migrations")
                .join(dir),
            )
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sql")
            })
            .count();
            let versions: Vec<i64> = migrator(backend).iter().map(|m| m.version).collect();
            assert_eq!(versions.len(), on_disk, "{dir}");
            assert!(
                versions.windows(2).all(|w| w[0] < w[1]),
                "{dir}: {versions:?}"
            );
        }
    }

    #[test]
    fn descriptions_and_checksums_are_the_ones_sqlx_derives_from_the_files() {
        // The first migration: "20261123000001_initial.sql" → description "initial", checksum
        // SHA-384 of the file's text (what `migrate!()` stored in `_sqlx_migrations`).
        let first = &migrator(Backend::Postgres).migrations[0];
        assert_eq!(
            (first.version, &*first.description),
            (20261123000001, "initial")
        );
        let text = include_str!("../../migrations/postgres/20261123000001_initial.sql");
        let expected = Migration::new(
            0,
            "".into(),
            MigrationType::Simple,
            text.into_sql_str(),
            false,
        );
        assert_eq!(first.checksum, expected.checksum);
    }

    #[test]
    fn every_table_the_migrations_create_is_described_in_the_migrations_readme() {
        let readme = include_str!("../../migrations/README.md");
        for m in migrator(Backend::Postgres).iter() {
            for line in m.sql.as_str().lines() {
                let line = line.trim_start();
                let Some(rest) = line.strip_prefix("CREATE TABLE ") else {
                    continue;
                };
                let name = rest
                    .trim_start_matches("IF NOT EXISTS ")
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap();
                assert!(
                    readme.contains(&format!("| `{name}` |")),
                    "table {name} (migration {}) is missing from migrations/README.md",
                    m.version
                );
            }
        }
    }
}
