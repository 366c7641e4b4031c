//! A hostile CSV corpus through the real producer (SQLite and the in-process queue): every
//! refused row is named with its reason, nothing panics, and every valid row is published.

use std::collections::BTreeMap;
use std::path::Path;

use kyc_producer::{produce, Encoding, ProduceSettings, Summary};
use kyc_queue::Broker;
use kyc_schemas::{IdNumber, Job, JobMessage, Keyring, Vendor};
use kyc_store::Store;

fn id(seq: u32) -> String {
    IdNumber::with_checksum(&format!("44030419900101{seq:03}"))
        .unwrap()
        .as_str()
        .to_string()
}

/// An ID number whose check character is `X`.
fn id_ending_x() -> String {
    (100..999).map(id).find(|s| s.ends_with('X')).unwrap()
}

fn keys() -> &'static Keyring {
    static KEYS: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keyring::generate("corpus").unwrap())
}

struct Run {
    summary: Summary,
    rejects: BTreeMap<u64, (String, String)>,
    jobs: Vec<Job>,
}

async fn run(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    batch: &str,
) -> Result<Run, kyc_producer::ProduceError> {
    let input = dir.join(name);
    std::fs::write(&input, bytes).unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        2,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let broker = Broker::memory();
    let rejects_path = dir.join(format!("{name}.rejects.csv"));
    let settings = ProduceSettings {
        batch_id: batch.into(),
        input: input.display().to_string(),
        images: Some("s3://faces/".into()),
        material_sources: Default::default(),
        default_operation: None,
        rejects_path: rejects_path.clone(),
        dry_run: false,
        window: 4,
        encoding: Encoding::Auto,
        // Above the corpus's 1 MB cell: that row tests the per-cell rule (a reject), not
        // the record bound (which stops the run; see tests/pipeline/input_integrity.rs).
        max_record_bytes: 4 << 20,
        // One keyring for every run: job ids are keyed, and runs are compared.
        keys: keys().clone(),
        skip_verified_within: None,
    };
    let summary = produce(
        &settings,
        None,
        &store,
        &broker,
        &kyc_producer::CancellationToken::new(),
        |_| {},
    )
    .await?;
    let mut rejects = BTreeMap::new();
    if rejects_path.exists() {
        let mut r = csv::Reader::from_path(&rejects_path).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            rejects.insert(
                rec[0].parse().unwrap(),
                (rec[1].to_string(), rec[3].to_string()),
            );
        }
    }
    let Broker::Memory(m) = &broker else {
        unreachable!()
    };
    let n = m.len(Vendor::Huawei);
    let mut consumer = broker.consume(Vendor::Huawei, 1).await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..n {
        let d = consumer.next().await.unwrap().unwrap();
        let message: JobMessage = serde_json::from_slice(&d.payload).unwrap();
        jobs.push(message.open(&settings.keys.data).unwrap());
    }
    Ok(Run {
        summary,
        rejects,
        jobs,
    })
}

#[tokio::test]
async fn a_hostile_file_yields_precise_rejects_and_publishes_every_valid_row() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(1024 * 1024);
    let rows = [
        "operation,customer_ref,name,id_number,mobile,face_image,video,actions".to_string(),
        format!("huawei.standard,C2,\"  王伟  \",{},,f/1.jpg,,", id(101)), // 2: padded quoted name
        format!(
            "huawei.standard,\"ref, with comma\nand newline\",李娜,{},,f/2.jpg,,",
            id(102)
        ), // 3-4
        format!(
            "huawei.standard,C5,张敏,{},,f/3.jpg,,",
            id_ending_x().to_lowercase()
        ), // 5: lower-case x
        "huawei.standard,C6,刘洋,440304900101123,,f/4.jpg,,".to_string(),  // 6: 15 digits
        format!("huawei.standard,C7,陈静,{},,,,", id(104)),                // 7: no face
        format!("huawei.standard,C8,王伟,{},,f/1.jpg,,", id(101)),         // 8: duplicate of 2
        format!("huawei.standard,C9,王伟,{}", id(105)),                    // 9: too few fields
        format!("huawei.standard,C10,王\u{0}伟,{},,f/1.jpg,,", id(106)),   // 10: NUL
        format!("huawei.standard,{big},赵六,{},,f/1.jpg,,", id(107)),      // 11: 1 MB cell
        format!("huawei.standard,C12,孙七,{},12345,f/1.jpg,,", id(108)),   // 12: bad mobile
        format!("huawei.standard,C13,周八,{},,,v/1.mp4,", id(109)),        // 13: video, no actions
        format!("huawei.idcard_extension,C14,吴九,{},,,,", id(111)),       // 14: valid two-factor
        format!("huawei.idcard_extension,C15,郑十,{},,,,", id(112)), // 15: last line, no newline
    ];
    let text = rows.join("\r\n");
    let r = run(dir.path(), "hostile.csv", text.as_bytes(), "b1")
        .await
        .unwrap();

    let want: BTreeMap<u64, &str> = BTreeMap::from([
        (6, "id_number"),
        (7, "face_image"),
        (8, "id_number"),
        (9, ""),
        (10, ""),
        (11, "customer_ref"),
        (12, "mobile"),
        (13, "actions"),
    ]);
    let got: BTreeMap<u64, &str> = r
        .rejects
        .iter()
        .map(|(k, (c, _))| (*k, c.as_str()))
        .collect();
    assert_eq!(got, want, "{:#?}", r.rejects);
    assert!(r.rejects[&6].1.contains("15-digit"));
    assert!(r.rejects[&8].1.contains("duplicate of row 2"));
    assert!(r.rejects[&9].1.contains("expected 8 fields"));
    assert!(r.rejects[&10].1.contains("NUL"));
    assert!(r.rejects[&11].1.contains("longer than"));

    let mut published: Vec<u64> = r.jobs.iter().map(|j| j.source_row).collect();
    published.sort();
    assert_eq!(published, vec![2, 3, 5, 14, 15]);
    assert_eq!(
        (r.summary.rows_read, r.summary.published, r.summary.rejected),
        (13, 5, 8)
    );
    let by_row: BTreeMap<u64, &Job> = r.jobs.iter().map(|j| (j.source_row, j)).collect();
    assert_eq!(by_row[&2].subject.name.as_ref().unwrap().as_str(), "王伟");
    assert_eq!(
        by_row[&3].customer_ref.as_deref(),
        Some("ref, with comma\nand newline")
    );
    assert_eq!(
        by_row[&5].subject.id_number.as_ref().unwrap().as_str(),
        id_ending_x()
    );
    assert_eq!(
        by_row[&2].materials.face_image.as_deref(),
        Some("s3://faces/f/1.jpg")
    );
}

#[tokio::test]
async fn an_unterminated_quote_at_the_end_is_handled_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("operation,name,id_number\nhuawei.idcard_extension,王伟,{}\nhuawei.idcard_extension,\"李娜,{}", id(101), id(102));
    let r = run(dir.path(), "cut.csv", text.as_bytes(), "b2")
        .await
        .unwrap();
    // The cut row is read as far as it goes and refused (one field), the first is published.
    assert_eq!(r.summary.published + r.summary.rejected, 2);
    assert_eq!(r.jobs.len(), 1);
    assert_eq!(r.jobs[0].source_row, 2);
}

#[tokio::test]
async fn a_header_without_the_needed_columns_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let err = match run(
        dir.path(),
        "nohead.csv",
        b"name,id_number\n\xe7\x8e\x8b\xe4\xbc\x9f,1\n",
        "b3",
    )
    .await
    {
        Err(e) => e,
        Ok(_) => panic!("a file without an operation column was accepted"),
    };
    assert!(err.to_string().contains("operation"), "{err}");
}

#[tokio::test]
async fn a_gb18030_file_gives_the_same_jobs_as_its_utf8_twin() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "operation,customer_ref,name,id_number\r\nhuawei.idcard_extension,C1,欧阳娜娜,{}\r\nhuawei.idcard_extension,C2,阿依古丽·买买提,{}\r\n",
        id(101),
        id(102)
    );
    let (gb, _, _) = encoding_rs::GB18030.encode(&text);
    let utf8 = run(dir.path(), "utf8.csv", text.as_bytes(), "twin")
        .await
        .unwrap();
    let gbk = run(dir.path(), "gbk.csv", &gb, "twin").await.unwrap();
    assert_eq!(utf8.summary.encoding, "UTF-8");
    assert_eq!(gbk.summary.encoding, "gb18030");
    assert_eq!(utf8.jobs.len(), 2);
    assert_eq!(utf8.jobs, gbk.jobs);

    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(text.as_bytes());
    let with_bom = run(dir.path(), "bom.csv", &bom, "twin").await.unwrap();
    assert_eq!(with_bom.summary.encoding, "UTF-8 (BOM)");
    assert_eq!(with_bom.jobs, utf8.jobs);
}

#[tokio::test]
async fn identical_lines_are_published_once_and_the_copies_refused() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("huawei.idcard_extension,C1,王伟,{}", id(101));
    let mut rows = vec![
        "operation,customer_ref,name,id_number".to_string(),
        line.clone(),
        line.clone(),
    ];
    for i in 0..5 {
        rows.push(format!("huawei.idcard_extension,C{i},李娜,{}", id(200 + i)));
    }
    rows.push(line); // line 9: a later window (the window is 4 rows)
    let r = run(dir.path(), "dups.csv", rows.join("\n").as_bytes(), "b4")
        .await
        .unwrap();
    assert_eq!(r.jobs.len(), 6);
    assert_eq!(r.jobs.iter().filter(|j| j.source_row == 2).count(), 1);
    let dups: Vec<u64> = r
        .rejects
        .iter()
        .filter(|(_, (_, why))| why.contains("duplicate of row 2"))
        .map(|(row, _)| *row)
        .collect();
    assert_eq!(dups, vec![3, 9], "{:?}", r.rejects);
}
