//! `kyc run` over the shipped sample: the real binary, its summary and its report.

use std::process::Command;

#[test]
fn kyc_run_over_the_sample_prints_a_summary_and_writes_a_masked_report() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    );
    let report = dir.path().join("report.csv");
    let rejects = dir.path().join("rejects.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_kyc"))
        .current_dir(dir.path())
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("BAIDU_API_KEY")
        .args(["run", "--quiet", "--database"])
        .arg(format!("sqlite://{}", dir.path().join("kyc.db").display()))
        .arg("--report")
        .arg(&report)
        .arg("--rejects")
        .arg(&rejects)
        .arg(root.join("examples/jobs.csv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kyc run failed:\n{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains("built-in vendor simulator"),
        "{stdout}"
    );
    assert!(
        stdout.contains("54 rows read, 47 jobs, 7 rows rejected"),
        "{stdout}"
    );
    // vendor × status: passed, failed, not found, pending, errors, total. Alibaba's
    // VerifyMaterial downloads the local image through the run's material server.
    for want in [
        ["alibaba", "2", "1", "0", "1", "0", "4"],
        ["baidu", "0", "0", "0", "1", "0", "1"],
        ["huawei", "28", "7", "2", "0", "5", "42"],
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(want[0]))
            .expect("summary row");
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells, want, "{stdout}");
    }

    let report = std::fs::read_to_string(&report).unwrap();
    assert_eq!(report.lines().count(), 48);
    assert!(report.starts_with("job_id,batch_id,source_row,customer_ref,name,id_number,"));
    // No full ID number of the sample appears in the report.
    let sample = std::fs::read_to_string(root.join("examples/jobs.csv")).unwrap();
    for row in sample.lines().skip(1) {
        let id = row.split(',').nth(3).unwrap();
        if id.len() == 18 {
            assert!(!report.contains(id), "unmasked ID number in the report");
        }
    }
    let rejects = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(rejects.lines().count(), 8, "{rejects}");
    assert!(rejects.contains("15-digit legacy"));
    // Logs never carry names or ID numbers (stderr holds the logs).
    for row in sample.lines().skip(1) {
        let id = row.split(',').nth(3).unwrap();
        if !id.is_empty() {
            assert!(!stderr.contains(id), "an ID number reached the logs");
        }
    }
}

/// Every vendor's credential variables, cleared so the machine's own cannot leak in.
const CREDENTIALS: [&str; 9] = [
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
    "KYC_HUAWEI_IAM_USER",
    "KYC_HUAWEI_IAM_PASSWORD",
    "KYC_HUAWEI_IAM_DOMAIN",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "BAIDU_API_KEY",
    "BAIDU_SECRET_KEY",
];

#[test]
fn kyc_run_names_real_and_simulated_vendors_in_its_first_line_for_every_mix() {
    let dir = tempfile::tempdir().unwrap();
    // No valid row: no vendor is called at all, real or simulated. The "real" endpoints are
    // a closed loopback port all the same, so a mistake could never reach a vendor.
    let input = dir.path().join("none.csv");
    std::fs::write(
        &input,
        "operation,customer_ref,name,id_number\nnobody.nothing,C-1,张三,11010519491231002X\n",
    )
    .unwrap();
    let huawei = [("HUAWEICLOUD_SDK_AK", "AK"), ("HUAWEICLOUD_SDK_SK", "SK")];
    let alibaba = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIx"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret"),
    ];
    let baidu = [("BAIDU_API_KEY", "key"), ("BAIDU_SECRET_KEY", "secret")];
    let real = "kyc run: REAL vendors (credentials configured, calls may be billed): ";
    let cases: [(Vec<(&str, &str)>, &str); 4] = [
        (
            huawei.to_vec(),
            "Huawei; no credentials for Alibaba, Baidu; using the built-in vendor simulator at http://127.0.0.1:",
        ),
        (
            [alibaba, baidu].concat(),
            "Alibaba, Baidu; no credentials for Huawei; using the built-in vendor simulator at http://127.0.0.1:",
        ),
        (
            [huawei, alibaba, baidu].concat(),
            "Huawei, Alibaba, Baidu (nothing is simulated)",
        ),
        (
            vec![],
            "no credentials for Huawei, Alibaba, Baidu; using the built-in vendor simulator",
        ),
    ];
    for (i, (vars, want)) in cases.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyc"));
        cmd.current_dir(dir.path());
        for v in CREDENTIALS {
            cmd.env_remove(v);
        }
        for v in [
            "KYC_HUAWEI_ENDPOINT",
            "KYC_HUAWEI_IAM_ENDPOINT",
            "KYC_ALIBABA_ENDPOINT",
            "KYC_BAIDU_ENDPOINT",
        ] {
            cmd.env(v, "http://127.0.0.1:9");
        }
        let out = cmd
            .envs(vars.iter().copied())
            .args(["run", "--quiet", "--database"])
            .arg(format!(
                "sqlite://{}",
                dir.path().join(format!("{i}.db")).display()
            ))
            .arg("--report")
            .arg(dir.path().join(format!("{i}.csv")))
            .arg(&input)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first = stdout.lines().next().unwrap_or_default();
        let want = if vars.is_empty() {
            format!("kyc run: {want}")
        } else {
            format!("{real}{want}")
        };
        assert!(first.starts_with(&want), "case {i}: {first:?}");
        if vars.is_empty() {
            assert!(first.ends_with("(no real vendor is called)"), "{first}");
        }
    }
}

/// `kyc` with the key variables removed (the test process may have them).
fn kyc(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyc"));
    cmd.current_dir(dir)
        .env_remove("KYC_DATA_KEYS")
        .env_remove("KYC_DATA_KEY_ID")
        .env_remove("KYC_INDEX_KEY")
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("HUAWEICLOUD_SDK_SK")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("BAIDU_API_KEY");
    cmd
}

fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[tokio::test]
async fn kyc_run_seals_personal_data_with_a_key_file_it_creates_and_purge_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kyc.db");
    let db_url = format!("sqlite://{}", db.display());
    let names = ["欧阳娜娜", "诸葛孔明", "司马相如"];
    let mut secrets = Vec::new();
    for (batch, name) in ["one", "two"].iter().zip(names) {
        let id = kyc_schemas::IdNumber::with_checksum(&format!(
            "44030419900101{:03}",
            if *batch == "one" { 101 } else { 102 }
        ))
        .unwrap();
        let mobile = format!("1381234{:04}", secrets.len());
        std::fs::write(
            dir.path().join(format!("{batch}.csv")),
            format!("operation,customer_ref,name,id_number,mobile\nhuawei.idcard_extension,R-{batch},{name},{},{mobile}\n", id.as_str()),
        )
        .unwrap();
        secrets.push(id.as_str().to_string());
        secrets.push(name.to_string());
        secrets.push(mobile);
    }
    let run = |batch: &str| {
        run_ok(
            kyc(dir.path())
                .args(["run", "--quiet", "--batch-id", batch, "--database", &db_url])
                .arg(format!("{batch}.csv")),
        )
    };
    let (first, first_err) = run("one");
    let key_file = dir.path().join("kyc.db.keys");
    assert!(
        first.contains(&format!("created {}", key_file.display())) && first.contains("0600"),
        "{first}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The key itself is never printed.
    let keys_text = std::fs::read_to_string(&key_file).unwrap();
    let vars: Vec<(String, String)> = keys_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (_, v) in &vars {
        let material = v.rsplit(':').next().unwrap();
        assert!(!first.contains(material) && !first_err.contains(material));
    }
    // The second run uses the same file (no new key), so both batches open with it.
    let (second, _) = run("two");
    assert!(!second.contains("created"), "{second}");

    // Nowhere in the database file, free pages and journal included.
    let mut raw = std::fs::read(&db).unwrap();
    for suffix in ["-wal", "-journal"] {
        if let Ok(more) = std::fs::read(format!("{}{suffix}", db.display())) {
            raw.extend(more);
        }
    }
    assert!(
        raw.windows(5).any(|w| w == b"R-one"),
        "the file holds the rows"
    );
    for s in &secrets {
        assert!(
            !raw.windows(s.len()).any(|w| w == s.as_bytes()),
            "the SQLite file holds personal data in clear"
        );
    }

    // Masked reports need no key; unmasked ones open both batches with the key file's keys.
    let (masked, _) = run_ok(kyc(dir.path()).args(["report", "outcomes", "--database", &db_url]));
    assert!(
        masked.contains("欧***") && !masked.contains("欧阳娜娜"),
        "{masked}"
    );
    let mut unmasked = kyc(dir.path());
    unmasked.args([
        "report",
        "outcomes",
        "--database",
        &db_url,
        "--unmasked",
        "--requested-by",
        "test",
    ]);
    for (k, v) in &vars {
        unmasked.env(k, v);
    }
    let (unmasked, _) = run_ok(&mut unmasked);
    assert!(
        unmasked.contains("欧阳娜娜") && unmasked.contains("诸葛孔明"),
        "{unmasked}"
    );

    // Purge on SQLite: batch one was decided 200 days ago.
    {
        let store = kyc_store::Store::connect(&db_url, 1).await.unwrap();
        sqlx::query("UPDATE outcomes SET completed_at_ms = $1, vendor_message = 'raw' WHERE batch_id = 'one'")
            .bind(kyc_store::now_ms() - 200 * 86_400_000)
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;
    }
    let purge =
        || run_ok(kyc(dir.path()).args(["purge", "--older-than", "180d", "--database", &db_url])).0;
    let first = purge();
    assert!(
        first.contains("of 1 jobs") && first.contains("of 1 outcomes"),
        "{first}"
    );
    let again = purge();
    assert!(
        again.contains("of 0 jobs") && again.contains("of 0 outcomes"),
        "{again}"
    );
    let (masked, _) = run_ok(kyc(dir.path()).args(["report", "outcomes", "--database", &db_url]));
    assert!(
        !masked.contains("欧***") && masked.contains("诸***"),
        "{masked}"
    );
    assert_eq!(masked.lines().count(), 3, "outcomes are kept: {masked}");
}

#[test]
fn server_mode_commands_refuse_to_start_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), "operation,name,id_number\n").unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("k.db").display());
    for (args, var) in [
        (
            vec!["produce", "--input", "in.csv", "--database", &db_url],
            "KYC_DATA_KEYS",
        ),
        (
            vec![
                "work",
                "--database",
                &db_url,
                "--http-listen",
                "127.0.0.1:0",
            ],
            "KYC_DATA_KEYS",
        ),
        (
            vec![
                "report",
                "outcomes",
                "--database",
                &db_url,
                "--unmasked",
                "--requested-by",
                "t",
            ],
            "KYC_DATA_KEYS",
        ),
    ] {
        let out = kyc(dir.path()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started without keys");
        assert!(
            stderr.contains(&format!("{var} is not set")),
            "{args:?}: {stderr}"
        );
    }
    // With data keys but no index key, the producer names the missing one.
    let out = kyc(dir.path())
        .args(["produce", "--input", "in.csv", "--database", &db_url])
        .env(
            "KYC_DATA_KEYS",
            kyc_schemas::DataKeys::generate("k").unwrap().to_config(),
        )
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("KYC_INDEX_KEY is not set"));
}
