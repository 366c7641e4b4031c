//! `kyc bench memory`: peak worker RSS with the material budget against without it.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::*;

use super::fleet::{padded_face, scratch_bucket, Fleet};

/// `kyc bench memory`: the same jobs twice, each time in a fresh fleet with one worker
/// process that may hold all of them at once (concurrency = jobs): once with the budget
/// under test, once with a budget too large to matter. Each job carries four materials of
/// `material_mib` (ID-card front and back, face, video) on the S3 server; by name-less
/// ivs-standard rules the request carries three of them (front, back, face) and the worker
/// reads only those. The figure is each run's peak worker RSS (`VmHWM`), so the ratio is
/// measured in one run on one machine; nothing else shares the worker process.
pub(super) async fn memory(
    conn: Conn,
    jobs: usize,
    material_mib: usize,
    budget: u64,
) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(false, "warn,sqlx=error,lapin=off");
    let mut peaks = Vec::new();
    for (label, b) in [
        ("with the budget", budget),
        ("without (64 GiB)", 64u64 << 30),
    ] {
        let fleet = Fleet::start(&conn, kyc_simulator::FaultConfig::default()).await?;
        let (objects, bucket) = scratch_bucket(&conn).await?;
        // A JPEG header followed by filler: large, and a valid start for the vendor's check.
        let big = padded_face(material_mib << 20);
        for name in ["front", "back", "face", "video"] {
            objects
                .put(&format!("s3://{bucket}/{name}.jpg"), big.clone())
                .await?;
        }
        let mut csv =
            b"operation,customer_ref,id_card_front,id_card_back,face_image,video\n".to_vec();
        for i in 0..jobs {
            writeln!(
                csv,
                "huawei.standard,M{i},s3://{bucket}/front.jpg,s3://{bucket}/back.jpg,s3://{bucket}/face.jpg,s3://{bucket}/video.jpg"
            )?;
        }
        let sources = format!("s3://{bucket}/");
        fleet.produce_csv(&csv, &sources).await?;
        let mut children = fleet.spawn_workers(
            1,
            "huawei.ivs-standard=100000/1000",
            Some(jobs),
            &sources,
            &[("KYC_MATERIAL_BUDGET", b.to_string())],
        )?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while (fleet.store.outcome_count("bench").await? as usize) < jobs {
            super::ensure_workers_running(&mut children)?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "the worker did not finish {jobs} jobs within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let peak = children
            .iter()
            .filter_map(|c| peak_rss_of(c.id()))
            .fold(0.0, f64::max);
        fleet.stop(children).await?;
        println!("{label}: peak worker RSS {peak:.0} MB");
        peaks.push(peak);
    }
    let budget_mb = budget as f64 / (1u64 << 20) as f64;
    let demand = (jobs * 3 * material_mib) as f64 * kyc_objects::budget::BODY_FACTOR;
    println!(
        "{jobs} jobs × 3 materials read × {material_mib} MiB (4 present): would hold ≈ {demand:.0} MiB at once; budget {budget_mb:.0} MiB"
    );
    println!(
        "peak RSS with the budget: {:.0} MB ({:.2} × the budget); without: {:.0} MB ({:.2} × with)",
        peaks[0],
        peaks[0] / budget_mb,
        peaks[1],
        peaks[1] / peaks[0].max(1.0)
    );
    Ok(ExitCode::SUCCESS)
}
