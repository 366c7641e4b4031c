//! The house layout, checked: every simulated vendor is a folder with the same file names
//! (so a reader who knows one knows where to look in the others), and so is every vendor
//! client in the worker.

use std::collections::BTreeSet;
use std::path::Path;

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn vendor_folders(root: &Path) -> Vec<(String, BTreeSet<String>)> {
    ["alibaba", "baidu", "huawei"]
        .into_iter()
        .map(|v| (v.to_string(), files(&root.join(v))))
        .collect()
}

#[test]
fn every_vendor_folder_has_the_same_files_as_its_siblings() {
    // Where the package is now (cargo sets it for the run): a test binary built from another
    // checkout of the same sources is reused as is, and would read that checkout instead.
    let here = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
    );
    let here = here.as_path();
    let sim = vendor_folders(&here.join("src/vendors"));
    let expected: BTreeSet<String> = ["auth.rs", "codes.rs", "mod.rs", "routes.rs", "scenarios.rs"]
        .into_iter()
        .map(String::from)
        .collect();
    for (vendor, got) in &sim {
        assert_eq!(got, &expected, "simulator/src/vendors/{vendor}");
    }
    // The worker's clients: the same six files each (`probe.rs`: the unbilled call
    // `kyc doctor` makes), plus `sign.rs` where the vendor signs requests (Baidu
    // authenticates with an OAuth token kept in its client instead).
    let core: BTreeSet<String> = [
        "client.rs",
        "config.rs",
        "mod.rs",
        "probe.rs",
        "request.rs",
        "response.rs",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for (vendor, got) in vendor_folders(&here.join("../worker/src/vendors")) {
        let extra: Vec<_> = got.difference(&core).collect();
        assert!(core.is_subset(&got), "worker/src/vendors/{vendor}: {got:?}");
        assert!(
            extra.iter().all(|f| *f == "sign.rs"),
            "worker/src/vendors/{vendor}: {extra:?}"
        );
    }
    // One name per vendor: no file or folder under either tree still says `aliyun`.
    for root in [here.join("src"), here.join("../worker/src")] {
        for entry in walk(&root) {
            assert!(!entry.contains("aliyun"), "{entry}");
        }
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}
