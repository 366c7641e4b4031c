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
        ["aliyun", "2", "1", "0", "1", "0", "4"],
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
            "KYC_ALIYUN_ENDPOINT",
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
