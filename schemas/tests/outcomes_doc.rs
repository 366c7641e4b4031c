//! `docs/outcomes.md` carries the vendors' code tables as generated from
//! `kyc_schemas::codes`: between each `<!-- codes:VENDOR -->` and `<!-- /codes:VENDOR -->`
//! marker pair, the text must be exactly [`kyc_schemas::codes::markdown`] of that table. Run
//! with `UPDATE_DOCS=1` to rewrite the sections after an intended change to a table.

use std::path::PathBuf;

use kyc_schemas::codes::{self, CodeRow};

fn sections() -> [(&'static str, &'static [CodeRow]); 4] {
    [
        ("huawei", codes::huawei::TABLE),
        ("alibaba", codes::alibaba::TABLE),
        ("baidu", codes::baidu::TABLE),
        ("transport", codes::TRANSPORT),
    ]
}

#[test]
fn the_outcomes_document_carries_exactly_the_code_tables() {
    let path = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../docs/outcomes.md");
    let mut doc = std::fs::read_to_string(&path).expect("docs/outcomes.md");
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let mut drifted = Vec::new();
    for (name, table) in sections() {
        let (open, close) = (
            format!("<!-- codes:{name} -->\n"),
            format!("<!-- /codes:{name} -->"),
        );
        let start = doc
            .find(&open)
            .unwrap_or_else(|| panic!("docs/outcomes.md has no {open:?} marker"))
            + open.len();
        let end = start
            + doc[start..]
                .find(&close)
                .unwrap_or_else(|| panic!("docs/outcomes.md has no {close:?} marker"));
        let generated = codes::markdown(table);
        if doc[start..end] != generated {
            drifted.push(name);
            doc.replace_range(start..end, &generated);
        }
    }
    if update {
        std::fs::write(&path, doc).unwrap();
        return;
    }
    assert!(
        drifted.is_empty(),
        "docs/outcomes.md differs from the code tables for {drifted:?}; run \
         `UPDATE_DOCS=1 cargo test -p kyc-schemas --test outcomes_doc` and commit the result"
    );
}

#[test]
fn rows_without_a_source_are_marked_in_the_document() {
    for (_, table) in sections() {
        let md = codes::markdown(table);
        for r in table.iter().filter(|r| !r.has_source()) {
            assert!(
                md.contains(&format!("**{}**", r.source)),
                "{} {} is not marked",
                r.field,
                r.code
            );
        }
    }
}
