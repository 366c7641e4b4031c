//! Every operation of every vendor, end to end on the real services: a CSV mixing all eleven
//! operations goes through the producer, RabbitMQ and the worker into PostgreSQL, and each
//! row lands the outcome `docs/simulator.md` predicts from its input. A second, "reconcile"
//! CSV built from the first run's references (Baidu verify_tokens, Alibaba BizIds/TicketIds)
//! reads the verdicts back, and Baidu's per-attempt charges reach the billing tables, equal
//! to the simulator's own ledger.

use std::collections::HashMap;
use std::time::Duration;

use kyc_store::queries::{OutcomeFilter, OutcomeRow};

use crate::helpers::{id_with_seq, spawn_app, TestApp};

/// One CSV row and the (status, reason) it must end with.
struct Row {
    line: String,
    want: (&'static str, &'static str),
}

const HEADER: &str =
    "customer_ref,operation,name,id_number,face_image,id_card_front,biz_id,ticket_id,verify_token,plan_id";

#[allow(clippy::too_many_arguments)]
fn row(
    reference: &str,
    operation: &str,
    id: &str,
    face: &str,
    front: &str,
    biz_id: &str,
    token: &str,
    plan: &str,
    want: (&'static str, &'static str),
) -> Row {
    let name = if id.is_empty() { "" } else { "欧阳娜娜" };
    Row {
        line: format!(
            "{reference},{operation},{name},{id},{face},{front},{biz_id},,{token},{plan}"
        ),
        want,
    }
}

async fn produce(app: &TestApp, batch: &str, rows: &[Row], dir: &std::path::Path) {
    let mut text = format!("{HEADER}\n");
    for r in rows {
        text.push_str(&r.line);
        text.push('\n');
    }
    let published = app.produce_text(batch, &text, dir).await;
    let rejects =
        std::fs::read_to_string(dir.join(format!("{batch}.rejects.csv"))).unwrap_or_default();
    assert_eq!(published as usize, rows.len(), "rejects: {rejects}");
}

async fn outcome_rows(app: &TestApp, batch: &str) -> HashMap<String, OutcomeRow> {
    let mut out = HashMap::new();
    let filter = OutcomeFilter {
        batch_id: Some(batch.into()),
        ..Default::default()
    };
    app.store
        .for_each_outcome(&filter, |r| {
            out.insert(r.customer_ref.clone().unwrap_or_default(), r);
            Ok(())
        })
        .await
        .unwrap();
    out
}

fn check(rows: &[Row], got: &HashMap<String, OutcomeRow>) {
    let mut wrong = Vec::new();
    for r in rows {
        let reference = r.line.split(',').next().unwrap();
        let o = &got[reference];
        if (o.status.as_str(), o.reason.as_str()) != r.want {
            wrong.push(format!(
                "{reference}: want {:?}, got ({}, {}) code {:?} message {:?}",
                r.want, o.status, o.reason, o.vendor_code, o.vendor_message
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "unexpected outcomes:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn a_csv_mixing_all_eleven_operations_lands_the_predicted_outcomes() {
    let app = spawn_app().await;
    app.upload_faces().await;
    let dir = tempfile::tempdir().unwrap();
    let face = format!("s3://{}/faces/face01.jpg", app.bucket);
    let card = format!("s3://{}/faces/face02.jpg", app.bucket);
    let id = |n: usize, seq: &str| id_with_seq(n, seq).as_str().to_string();
    let (p, f, n, e, pe) = ("passed", "failed", "not_found", "error", "pending");
    let mut rows = Vec::new();
    // Alibaba VerifyMaterial: every VerifyStatus, the 435 content error, faults.
    let vm = "alibaba.verify_material";
    for (i, (seq, front, want)) in [
        ("123", false, (p, "verified")),
        ("901", false, (f, "identity_mismatch")),
        ("902", false, (f, "face_mismatch_authority")),
        ("903", false, (f, "image_quality")),
        ("904", true, (f, "id_card_mismatch")),
        ("905", true, (f, "id_expired")),
        ("906", false, (e, "authority_unavailable")),
        ("907", true, (f, "face_mismatch_id_photo")),
        ("908", true, (f, "id_card_invalid")),
        ("909", false, (f, "risk_rejected")),
        ("910", true, (f, "id_card_mismatch")),
        ("912", false, (e, "authority_unavailable")),
        ("930", false, (f, "identity_mismatch")),
        ("951", false, (p, "verified")),
        ("952", false, (p, "verified")),
        ("975", false, (e, "account_blocked")),
        ("976", false, (e, "account_blocked")),
    ]
    .into_iter()
    .enumerate()
    {
        let front = if front { card.as_str() } else { "" };
        rows.push(row(
            &format!("VM{seq}"),
            vm,
            &id(i, seq),
            &face,
            front,
            &format!("biz-vm-{seq}"),
            "",
            "",
            want,
        ));
    }
    // The vendor cannot download the image in its 3 s: retried, then material_unavailable.
    rows.push(row(
        "VMtimeout",
        vm,
        &id(40, "124"),
        "https://sim-timeout.example/f.jpg",
        "",
        "biz-vm-timeout",
        "",
        "",
        (e, "material_unavailable"),
    ));
    // SubmitVerification: StatusCode 1, 2, 0, −1 and its errors.
    let sv = "alibaba.submit_verification";
    for (i, (seq, want)) in [
        ("123", (p, "verified")),
        ("901", (f, "rejected_unspecified")),
        ("940", (pe, "in_review")),
        ("942", (e, "vendor_internal")),
        ("912", (e, "vendor_internal")),
        ("975", (e, "account_blocked")),
    ]
    .into_iter()
    .enumerate()
    {
        rows.push(row(
            &format!("SV{seq}"),
            sv,
            &id(50 + i, seq),
            &face,
            &card,
            "",
            "",
            "",
            want,
        ));
    }
    rows.push(row(
        "DVunknown",
        "alibaba.describe_verify_result",
        "",
        "",
        "",
        "never-submitted",
        "",
        "",
        (pe, "awaiting_user"),
    ));
    // Baidu sessions: all end pending with a verify_token, except the request errors.
    let ss = "baidu.start_session";
    let session_seqs = [
        "123", "901", "902", "903", "906", "909", "913", "930", "940", "941", "945", "951", "961",
        "962",
    ];
    for (i, seq) in session_seqs.iter().enumerate() {
        rows.push(row(
            &format!("SS{seq}"),
            ss,
            &id(60 + i, seq),
            &face,
            "",
            "",
            "",
            "",
            (pe, "awaiting_user"),
        ));
    }
    rows.push(row(
        "SS946",
        ss,
        &id(80, "946"),
        "",
        "",
        "",
        "",
        "sim-ocr",
        (pe, "awaiting_user"),
    ));
    rows.push(row(
        "SS971",
        ss,
        &id(81, "971"),
        "",
        "",
        "",
        "",
        "",
        (e, "quota_exhausted"),
    ));
    rows.push(row(
        "SS975",
        ss,
        &id(82, "975"),
        "",
        "",
        "",
        "",
        "",
        (e, "account_blocked"),
    ));
    rows.push(row(
        "SSbadplan",
        ss,
        &id(83, "123"),
        "",
        "",
        "",
        "",
        "no-such-plan",
        (e, "invalid_request"),
    ));
    for op in [
        "result_detail",
        "result_simple",
        "result_stat",
        "result_media",
        "result_getall",
    ] {
        rows.push(row(
            &format!("R{op}"),
            &format!("baidu.{op}"),
            "",
            "",
            "",
            "",
            "unknowntoken0000",
            "",
            (e, "session_expired"),
        ));
    }
    // Huawei, both APIs.
    rows.push(row(
        "HS123",
        "huawei.standard",
        &id(90, "123"),
        &face,
        "",
        "",
        "",
        "",
        (p, "verified"),
    ));
    rows.push(row(
        "HS902",
        "huawei.standard",
        &id(91, "902"),
        &face,
        "",
        "",
        "",
        "",
        (f, "face_mismatch"),
    ));
    rows.push(row(
        "HE901",
        "huawei.idcard_extension",
        &id(92, "901"),
        "",
        "",
        "",
        "",
        "",
        (f, "identity_mismatch"),
    ));

    let operations: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r.line.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(operations.len(), 11, "{operations:?}");

    produce(&app, "mixed", &rows, dir.path()).await;
    let (stop, worker) = app.spawn_worker().await;
    app.wait_for_outcomes("mixed", rows.len() as i64, Duration::from_secs(120))
        .await;
    let first = outcome_rows(&app, "mixed").await;
    check(&rows, &first);
    // Scores normalized to 0–100; references kept for reconciliation.
    assert_eq!(first["VM123"].similarity, Some(97.0));
    assert_eq!(first["VM902"].similarity, Some(41.0));
    assert_eq!(first["VM123"].vendor_ref.as_deref(), Some("biz-vm-123"));
    assert!(first["VM123"].billed && !first["VM975"].billed);
    assert!(first["SV123"].billed && !first["SV940"].billed);
    assert_eq!(first["SV123"].similarity, Some(93.12));
    assert!(first["VM951"].attempts >= 2, "a throttled call is retried");
    assert!(
        first["SS961"].attempts >= 4,
        "generate, submit refused (110), submit again, upload"
    );

    // The reconcile run: what happened to the sessions and submissions of the first.
    let token = |r: &str| first[r].vendor_ref.clone().expect("verify_token kept");
    let mut again = Vec::new();
    let ga = "baidu.result_getall";
    for (seq, want) in [
        ("123", (p, "verified")),
        ("901", (f, "identity_mismatch")),
        ("902", (f, "face_mismatch_authority")),
        ("903", (f, "image_quality")),
        ("906", (e, "id_photo_missing")),
        ("909", (f, "risk_rejected")),
        ("913", (f, "liveness_failed")),
        ("930", (n, "no_record")),
        ("940", (pe, "awaiting_user")),
        ("941", (pe, "awaiting_user")),
        ("945", (p, "verified")),
        ("946", (p, "verified")),
        ("951", (p, "verified")),
        ("961", (p, "verified")),
        ("962", (p, "verified")),
    ] {
        again.push(row(
            &format!("GA{seq}"),
            ga,
            "",
            "",
            "",
            "",
            &token(&format!("SS{seq}")),
            "",
            want,
        ));
    }
    for (op, seq, want) in [
        ("result_detail", "123", (p, "verified")),
        ("result_detail", "901", (f, "identity_mismatch")),
        ("result_simple", "123", (p, "verified")),
        ("result_simple", "930", (n, "no_record")),
        ("result_stat", "123", (p, "verified")),
        ("result_media", "902", (f, "face_mismatch_authority")),
    ] {
        again.push(row(
            &format!("{op}{seq}"),
            &format!("baidu.{op}"),
            "",
            "",
            "",
            "",
            &token(&format!("SS{seq}")),
            "",
            want,
        ));
    }
    let dv = "alibaba.describe_verify_result";
    for (reference, biz_id, want) in [
        ("DVvm123", "biz-vm-123".to_string(), (p, "verified")),
        (
            "DVvm902",
            "biz-vm-902".to_string(),
            (f, "face_mismatch_authority"),
        ),
        (
            "DVsv123",
            first["SV123"].vendor_ref.clone().unwrap(),
            (p, "verified"),
        ),
        // In review: DescribeVerifyResult says −1 on the first polls.
        (
            "DVsv940",
            first["SV940"].vendor_ref.clone().unwrap(),
            (pe, "awaiting_user"),
        ),
    ] {
        again.push(row(reference, dv, "", "", "", &biz_id, "", "", want));
    }
    produce(&app, "reconcile", &again, dir.path()).await;
    app.wait_for_outcomes("reconcile", again.len() as i64, Duration::from_secs(60))
        .await;
    let second = outcome_rows(&app, "reconcile").await;
    check(&again, &second);
    assert_eq!(second["GA123"].similarity, Some(93.78));

    // Baidu's charges: every attempt the simulated people made, as result/getall reported
    // them, equal to the simulator's bill; counted once although some tokens were read twice.
    let ledger = app.sim.ledger();
    for product in ["faceprint-verify", "faceprint-ocr"] {
        let billed = ledger
            .totals
            .get(&format!("baidu.{product}"))
            .map_or(0, |t| t.billable) as i64;
        let charged: i64 = app
            .store
            .billing_report(None, None, Some("baidu"))
            .await
            .unwrap()
            .iter()
            .filter(|r| r.product == product)
            .filter_map(|r| r.vendor_charged)
            .sum();
        assert!(billed > 0, "{product}: the simulator billed nothing");
        assert_eq!(
            charged, billed,
            "{product}: vendor-reported charges vs the vendor's ledger"
        );
    }
    // Every charge entry of the two-attempt session is kept.
    let entries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM vendor_charge_entries WHERE reference = $1 AND product = 'faceprint-verify' AND charged = 1",
    )
    .bind(token("SS945"))
    .fetch_one(&sqlx::PgPool::connect(&app.db_url).await.unwrap())
    .await
    .unwrap();
    assert_eq!(entries, 2);

    let _ = stop.send(());
    worker.await.unwrap();
    app.cleanup().await;
}
