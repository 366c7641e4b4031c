//! Embeds `migrations/{postgres,sqlite}/*.sql` in the binary as a generated table, the job
//! sqlx's `migrate!()` macro would do. Why not the macro: it is a proc-macro that links both
//! database drivers, TLS and tokio a second time for the host, which made up a fifth of a
//! first build (`cargo build --timings`, see docs/design.md "Build time").
//!
//! The table lists every file whose name has sqlx's form `<version>_<description>.sql`, in
//! version order; `src/migrations.rs` turns it into a `Migrator` with the same versions,
//! descriptions and checksums the macro produced, so databases migrated before keep matching.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for backend in ["postgres", "sqlite"] {
        let dir = Path::new(&manifest).join("../migrations").join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("read a migrations entry").path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?.to_owned();
                let stem = name.strip_suffix(".sql")?;
                let (version, description) = stem.split_once('_')?;
                let version = version
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: the version before '_' is not a number"));
                let path = path.canonicalize().expect("canonical migration path");
                Some((
                    version,
                    description.replace('_', " "),
                    path.display().to_string(),
                ))
            })
            .collect();
        files.sort();
        writeln!(
            code,
            "const {}: &[(i64, &str, &str)] = &[",
            backend.to_uppercase()
        )
        .unwrap();
        for (version, description, path) in files {
            writeln!(
                code,
                "    ({version}, {description:?}, include_str!({path:?})),"
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    std::fs::write(Path::new(&out).join("migrations.rs"), code).expect("write migrations.rs");
}
