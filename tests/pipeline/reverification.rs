//! The re-verification policy (`--skip-verified-within`): a person who passed the same
//! operation recently is not published again, is listed in the skipped file with the pass
//! that covers them, and costs no vendor call; failures, not-found and old passes are
//! verified again, and without the flag every row is.

use std::time::Duration;

use crate::helpers::{batch_of, id_with_seq, output_text as text, spawn_app, TestApp};

/// One row per (customer_ref, sequence code): 123 passes, 901 fails, 930 is not found.
fn csv(people: &[(&str, usize, &str)]) -> String {
    let mut t = String::from("customer_ref,operation,name,id_number\n");
    for (cref, n, seq) in people {
        t.push_str(&format!(
            "{cref},huawei.idcard_extension,王芳,{}\n",
            id_with_seq(*n, seq).as_str()
        ));
    }
    t
}

fn billable(app: &TestApp) -> usize {
    app.sim
        .ledger()
        .entries
        .iter()
        .filter(|e| e.billable)
        .count()
}

async fn work_off(app: &TestApp, batch: &str, n: i64) {
    let (stop, handle) = app.spawn_worker().await;
    app.wait_for_outcomes(batch, n, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_passed_recently_are_skipped_listed_and_not_billed_again() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // Night 1: two pass, one fails, one is not found.
    let night1 = [
        ("A", 1, "123"),
        ("B", 2, "123"),
        ("C", 3, "901"),
        ("D", 4, "930"),
    ];
    std::fs::write(path("night1.csv"), csv(&night1)).unwrap();
    let first = app.produce_child(&["--input", &path("night1.csv")], None);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let batch1 = batch_of(&first);
    work_off(&app, &batch1, 4).await;
    assert_eq!(billable(&app), 4);

    // Night 2: the same four and one new person, under the policy.
    let mut night2 = night1.to_vec();
    night2.push(("E", 5, "123"));
    std::fs::write(path("night2.csv"), csv(&night2)).unwrap();
    let second = app.produce_child(
        &[
            "--input",
            &path("night2.csv"),
            "--skip-verified-within",
            "30d",
        ],
        None,
    );
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let out = text(&second);
    assert!(out.contains("3 published"), "{out}");
    assert!(
        out.contains("2 rows not re-verified: passed within 30d (at least 2 billable calls saved"),
        "{out}"
    );
    let batch2 = batch_of(&second);
    assert_ne!(batch2, batch1);

    // The skipped file names the rows and the passes that cover them.
    let skipped = std::fs::read_to_string(path("night2.skipped.csv")).unwrap();
    let lines: Vec<&str> = skipped.lines().collect();
    assert_eq!(
        lines[0],
        "row,customer_ref,operation,passed_job_id,passed_batch_id,passed_at"
    );
    assert_eq!(lines.len(), 3, "{skipped}");
    for (line, cref) in lines[1..].iter().zip(["A", "B"]) {
        assert!(
            line.contains(&format!(",{cref},huawei.idcard_extension,")),
            "{line}"
        );
        assert!(line.contains(&batch1), "{line}");
    }
    // No personal data in it.
    assert!(!skipped.contains(id_with_seq(1, "123").as_str()));

    // Only the three published rows reach the vendor.
    work_off(&app, &batch2, 3).await;
    assert_eq!(billable(&app), 4 + 3);
    let by_row = app.outcomes(&batch2).await;
    let rows: Vec<i64> = {
        let mut r: Vec<i64> = by_row.keys().copied().collect();
        r.sort();
        r
    };
    assert_eq!(rows, vec![4, 5, 6], "C, D and E (lines 4–6) were verified");

    // The batch row counts what was skipped this way.
    let counts = app.store.batch_counts(&batch2).await.unwrap().unwrap();
    assert_eq!((counts.published, counts.verified_recently), (3, 2));

    // A pass older than the window does not count: age A's pass by 40 days.
    let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
    let aged = sqlx::query(
        "UPDATE outcomes SET completed_at_ms = completed_at_ms - $1 \
         WHERE batch_id = $2 AND job_id IN (SELECT job_id FROM jobs WHERE customer_ref = 'A')",
    )
    .bind(40i64 * 86_400_000)
    .bind(&batch1)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(aged.rows_affected(), 1);
    pool.close().await;
    let night3 = [("A", 1, "123"), ("B", 2, "123")];
    std::fs::write(path("night3.csv"), csv(&night3)).unwrap();
    let third = app.produce_child(
        &[
            "--input",
            &path("night3.csv"),
            "--skip-verified-within",
            "30d",
        ],
        None,
    );
    assert!(text(&third).contains("1 published"), "{}", text(&third));
    assert!(
        text(&third).contains("1 rows not re-verified"),
        "{}",
        text(&third)
    );

    // Without the policy every row is published.
    // (New customer references: another file, so another batch.)
    let night4 = [("A4", 1, "123"), ("B4", 2, "123")];
    std::fs::write(path("night4.csv"), csv(&night4)).unwrap();
    let fourth = app.produce_child(&["--input", &path("night4.csv")], None);
    assert!(text(&fourth).contains("2 published"), "{}", text(&fourth));
    assert!(
        !text(&fourth).contains("not re-verified"),
        "{}",
        text(&fourth)
    );
    app.cleanup().await;
}
