//! The committed JSON Schemas in `schemas/json/` must equal what the types generate.
//! Paths come from `CARGO_MANIFEST_DIR` at run time, not compile time: a cached test binary
//! built in another checkout must still read this checkout's files.
//! Run with `UPDATE_SCHEMAS=1` to rewrite the files after an intended change.

use std::path::PathBuf;

#[test]
fn committed_json_schemas_match_the_types() {
    let dir = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("json");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    for (file, schema) in kyc_schemas::json_schemas() {
        let path = dir.join(file);
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if update {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}); run with UPDATE_SCHEMAS=1",
                path.display()
            )
        });
        assert!(
            committed == generated,
            "{} has drifted from the Rust types; run `UPDATE_SCHEMAS=1 cargo test -p kyc-schemas` and commit the result",
            path.display()
        );
    }
}
