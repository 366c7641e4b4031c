//! `kyc produce` as a nightly Kubernetes Job runs it: the same input run twice publishes
//! nothing the second time (a retried Job bills nothing twice), and a damaged input (an I/O
//! error mid-object, a stray quote, a huge line, a header without a needed column) stops the
//! run with its own exit code and a message naming the line, leaving the batch unfinished.

use std::time::Duration;

use sqlx::Row;

use crate::helpers::{batch_of, output_text as text, service, spawn_app, TestApp};

async fn finished(app: &TestApp, batch: &str) -> Option<bool> {
    let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
    let row = sqlx::query("SELECT finished_at_ms IS NOT NULL FROM batches WHERE batch_id = $1")
        .bind(batch)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.map(|r| r.get::<bool, _>(0))
}

async fn queued(app: &TestApp) -> u32 {
    app.work_queue_state(kyc_schemas::Vendor::Huawei).await.0
}

/// `n` distinct people (from `offset`), all verifiable by the simulator.
fn rows(n: usize, offset: usize) -> String {
    let mut text = String::from("customer_ref,operation,name,id_number\n");
    for i in offset..offset + n {
        let id = kyc_schemas::IdNumber::with_checksum(&format!(
            "{}19850101{:03}",
            110_000 + i / 800,
            100 + i % 800
        ))
        .unwrap();
        text.push_str(&format!(
            "C{i},huawei.idcard_extension,王芳,{}\n",
            id.as_str()
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_run_of_the_same_input_publishes_and_bills_nothing_twice() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nightly.csv");
    // Five good rows and one the producer refuses: exit 3, which a CronJob would retry.
    let mut csv = rows(5, 0);
    csv.push_str("BAD,huawei.idcard_extension,王芳,110105194912310020\n");
    std::fs::write(&input, &csv).unwrap();
    let input = input.to_str().unwrap();

    let first = app.produce_child(&["--input", input], None);
    assert_eq!(first.status.code(), Some(3), "{}", text(&first));
    let batch = batch_of(&first);
    assert!(batch.starts_with("in-"), "derived from the input: {batch}");
    assert!(text(&first).contains("5 published"), "{}", text(&first));

    // The Job's retry: same input, no --batch-id.
    let second = app.produce_child(&["--input", input], None);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert_eq!(batch_of(&second), batch);
    assert!(
        text(&second).contains("0 published, 5 skipped"),
        "{}",
        text(&second)
    );
    assert_eq!(queued(&app).await, 5, "each job is on the queue once");

    // Worked off: one billable call per job at the vendor.
    let (stop, handle) = app.spawn_worker().await;
    app.wait_for_outcomes(&batch, 5, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    handle.await.unwrap();
    let billed = app
        .sim
        .ledger()
        .entries
        .iter()
        .filter(|e| e.billable)
        .count();
    assert_eq!(billed, 5);

    // A changed file is a new batch.
    std::fs::write(dir.path().join("nightly.csv"), rows(2, 50)).unwrap();
    let third = app.produce_child(&["--input", input], None);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert_ne!(batch_of(&third), batch);
    app.cleanup().await;
}

/// Runs `kyc produce` on `csv` and checks the run failed as an unusable input: exit 6, the
/// message contains `expect`, and no batch was marked finished.
async fn assert_refused_input(app: &TestApp, csv: &str, extra: &[&str], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, csv).unwrap();
    let out = app.produce_child(
        &[&["--input", input.to_str().unwrap()], extra].concat(),
        None,
    );
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    assert!(
        text(&out).contains(expect),
        "{expect:?} not in: {}",
        text(&out)
    );
    let batch = kyc_producer::default_batch_id(input.to_str().unwrap(), None)
        .await
        .unwrap();
    assert_ne!(
        finished(app, &batch).await,
        Some(true),
        "batch marked finished"
    );
    // Nothing was refused row by row: one clear error instead.
    let rejects = dir.path().join("in.rejects.csv");
    let lines = std::fs::read_to_string(&rejects)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    assert!(lines <= 1, "{lines} lines of rejects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_inputs_stop_the_run_naming_the_line() {
    let app = spawn_app().await;

    // A stray quote at the start of a cell on line 2 of a 1,000-row file.
    let mut csv = rows(1000, 100);
    let second_line = csv.find('\n').unwrap() + 1;
    csv.insert(second_line, '"');
    assert_refused_input(&app, &csv, &[], "opening quote on line 2 is never closed").await;

    // One line far over the bound, after a few good rows.
    let mut csv = rows(3, 2000);
    csv.push_str(&format!(
        "HUGE,huawei.idcard_extension,{},x\n",
        "王".repeat(400_000)
    ));
    assert_refused_input(&app, &csv, &[], "record starting on line 5").await;

    // A header without id_number: one error, not a reject per row.
    let csv = rows(1000, 3000).replacen("id_number", "id_no", 1);
    assert_refused_input(&app, &csv, &[], "no id_number column").await;
    // … also when the operation comes from the command line, before any row is read.
    let csv = "name,id_no\n王芳,1\n";
    assert_refused_input(
        &app,
        csv,
        &["--operation", "huawei.idcard_extension"],
        "no id_number column",
    )
    .await;
    app.cleanup().await;
}

/// A loopback TCP proxy to the S3 server that resets every connection once `cut` bytes of
/// the server's answer have passed: an S3 read that dies mid-object.
async fn cutting_proxy(upstream: String, cut: usize) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut passed = 0usize;
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = n.min(cut - passed);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    passed += n;
                    if passed >= cut {
                        break;
                    }
                }
                // The body ends early with a FIN, in order: everything passed reaches the
                // client, which then finds the response short (plain HTTP: fewer bytes than
                // Content-Length; TLS: no close_notify either). A reset instead would make the
                // client's kernel drop what it had received but not yet read, so how much
                // arrives would depend on timing. The socket stays open until the client
                // closes it, for the same reason.
                let _ = cw.shutdown().await;
                let _ = tokio::time::timeout(Duration::from_secs(30), up).await;
                drop(cw);
            });
        }
    });
    (port, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_read_that_fails_midway_stops_the_run_and_leaves_the_batch_unfinished() {
    let app = spawn_app().await;
    // Larger than the 1 MiB the encoding sniffer reads first, cut well after it: the read
    // fails in the middle of the rows.
    let csv = rows(40_000, 10_000);
    assert!(csv.len() > 2_000_000);
    let uri = format!("s3://{}/input/nightly.csv", app.bucket);
    app.objects.put(&uri, csv.into()).await.unwrap();

    let endpoint = service("KYC_TEST_S3_ENDPOINT");
    let (scheme, hostport) = endpoint.split_once("://").unwrap();
    let (port, proxy) = cutting_proxy(hostport.trim_end_matches('/').to_string(), 1_600_000).await;
    let through_proxy = format!("{scheme}://127.0.0.1:{port}");
    let out = app.produce_child(&["--input", &uri], Some(&through_proxy));
    proxy.abort();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        text(&out).contains("reading the input failed"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("is NOT finished"), "{}", text(&out));
    let batch = batch_of(&out);
    assert_eq!(finished(&app, &batch).await, Some(false));

    // The same input again, readable this time: the same batch, resumed and finished.
    let again = app.produce_child(&["--input", &uri], Some(&endpoint));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(batch_of(&again), batch);
    assert_eq!(finished(&app, &batch).await, Some(true));
    assert_eq!(queued(&app).await, 40_000, "every row once");
    app.cleanup().await;
}
