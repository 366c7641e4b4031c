//! The producer's main loop: records are validated and gathered into windows; each window's
//! jobs are written to the database (which classifies new, resumed and duplicate rows),
//! published back to back, confirmed by the broker in one wait, then marked published.
//! A crash anywhere leaves the database saying exactly which jobs still need publishing.

use kyc_objects::ObjectStore;
use kyc_queue::{Broker, OutMessage};
use kyc_schemas::JobMessage;
use kyc_store::batches::BatchCounts;
use kyc_store::{JobInsert, NewJob, Store};
use tokio_util::sync::CancellationToken;

use crate::csv_source;
use crate::csv_source::InputFailure;
use crate::rejects::RejectsWriter;
use crate::skipped::{skipped_path, SkippedWriter};
use crate::validate::{check_header, header_lacks, to_job, Columns, Reject};
use crate::ProduceSettings;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Source(#[from] csv_source::SourceError),
    #[error("{0}")]
    Header(String),
    #[error("--images: {0}")]
    Images(#[from] kyc_objects::SourceError),
    #[error("database: {0}")]
    Store(#[from] kyc_store::StoreError),
    #[error("queue: {0}")]
    Queue(#[from] kyc_queue::QueueError),
    #[error("cannot write the skipped file {path}: {source}")]
    Skipped {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the rejects file {path}: {source}")]
    Rejects {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Counts for the run (not the batch's lifetime totals: a resumed run starts at zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub batch_id: String,
    pub rows_read: u64,
    pub published: u64,
    pub rejected: u64,
    /// Rows already published by an earlier run of the same batch.
    pub skipped: u64,
    /// Rows not published because the person passed the same operation within the
    /// re-verification window (each would have cost at least one billable call).
    pub verified_recently: u64,
    /// The encoding the input was read in.
    pub encoding: &'static str,
    /// Stopped before the end of the input (the rest needs a re-run with the same batch id).
    pub interrupted: bool,
    /// The input could not be read to its end: what was read before is published, the
    /// batch is not marked finished, and the caller must fail loudly.
    pub failure: Option<InputFailure>,
}

/// Reads, validates and publishes until the input ends or `stop` is cancelled. On `stop`
/// the current window is still published, confirmed and recorded before returning, so an
/// interrupted run leaves nothing in doubt and a re-run publishes exactly the remaining rows.
pub async fn produce(
    settings: &ProduceSettings,
    objects: Option<&ObjectStore>,
    store: &Store,
    broker: &Broker,
    stop: &CancellationToken,
    mut on_progress: impl FnMut(&Summary),
) -> Result<Summary, ProduceError> {
    // The `--images` prefix is always a source: keys joined to it must be readable.
    let sources = settings
        .material_sources
        .clone()
        .with_images(settings.images.as_deref())?;
    let mut source = csv_source::open(
        &settings.input,
        objects,
        settings.encoding,
        settings.max_record_bytes,
    )
    .await?;
    let cols = Columns::new(&source.columns);
    check_header(&cols, settings.default_operation).map_err(ProduceError::Header)?;
    // With one operation for the whole file, its columns are checked before any row.
    if let (false, Some(op)) = (cols.has("operation"), settings.default_operation) {
        if let Some(missing) = header_lacks(op, &cols) {
            return Err(ProduceError::Header(format!(
                "the header has no {missing} column, which {op} needs"
            )));
        }
    }
    // Operations whose columns the header was checked for (at their first row).
    let mut header_checked: Vec<kyc_schemas::Operation> = Vec::new();
    let mut rejects = RejectsWriter::new(&settings.rejects_path);
    let mut skipped = SkippedWriter::new(skipped_path(&settings.rejects_path));
    let mut summary = Summary {
        batch_id: settings.batch_id.clone(),
        encoding: source.encoding,
        ..Default::default()
    };
    let publisher = if settings.dry_run {
        None
    } else {
        store
            .ensure_batch(&settings.batch_id, &settings.input)
            .await?;
        broker.declare().await?;
        Some(broker.publisher().await?)
    };
    let window = settings.window.max(1);
    let mut chunk: Vec<NewJob> = Vec::with_capacity(window);
    let mut in_flight: Option<InFlight> = None;
    // What the batch row has been told so far: each update adds the difference.
    let mut reported = summary.clone();
    loop {
        let record = tokio::select! {
            // Biased: a pending stop wins over more input.
            biased;
            _ = stop.cancelled() => {
                summary.interrupted = true;
                None
            }
            r = source.records.recv() => r,
        };
        let mut done = record.is_none();
        if done && !summary.interrupted {
            // The reader stops early only on a failure, which it reports before closing.
            summary.failure = source.failure.try_recv().ok();
        }
        // A row of an operation the header cannot serve stops the run: every such row
        // would be refused for the same reason.
        if let Some(rec) = &record {
            if let Ok(fields) = &rec.fields {
                if let Some(op) = cols.operation_of(fields, settings.default_operation) {
                    if !header_checked.contains(&op) {
                        header_checked.push(op);
                        if let Some(missing) = header_lacks(op, &cols) {
                            summary.failure = Some(InputFailure::MissingColumns {
                                line: rec.row,
                                operation: op.to_string(),
                                missing: missing.into(),
                            });
                            done = true;
                        }
                    }
                }
            }
        }
        let record = if done { None } else { record };
        if let Some(rec) = record {
            summary.rows_read += 1;
            let result = rec
                .fields
                .map_err(|reason| Reject {
                    row: rec.row,
                    column: String::new(),
                    value: String::new(),
                    reason,
                })
                .and_then(|f| {
                    to_job(
                        &settings.keys.index,
                        &settings.batch_id,
                        rec.row,
                        &f,
                        &cols,
                        settings.default_operation,
                        settings.images.as_deref(),
                        &sources,
                    )
                });
            match result {
                Ok(job) => chunk.push(job),
                Err(r) => write_reject(&mut rejects, &r, &mut summary)?,
            }
        }
        if chunk.len() >= window || (done && !chunk.is_empty()) {
            if let Some(within) = settings.skip_verified_within {
                skip_verified(
                    settings,
                    store,
                    within,
                    &mut chunk,
                    &mut skipped,
                    &mut summary,
                )
                .await?;
            }
            match &publisher {
                Some(p) => {
                    let previous = in_flight.take();
                    in_flight = Some(
                        publish_chunk(
                            settings,
                            store,
                            p,
                            &chunk,
                            previous,
                            &mut rejects,
                            &mut summary,
                        )
                        .await?,
                    );
                }
                None => summary.published += chunk.len() as u64, // dry run: would publish
            }
            chunk.clear();
            if !settings.dry_run {
                report_counts(store, &settings.batch_id, &summary, &mut reported).await?;
            }
            on_progress(&summary);
        }
        if done {
            break;
        }
    }
    if let Some(last) = in_flight.take() {
        last.settle(store, &mut summary).await?;
    }
    if !settings.dry_run {
        // The last window's confirms, and rows refused after it.
        report_counts(store, &settings.batch_id, &summary, &mut reported).await?;
    }
    if !settings.dry_run && !summary.interrupted && summary.failure.is_none() {
        store.finish_batch(&settings.batch_id).await?;
    }
    let skipped_file = skipped.path().display().to_string();
    skipped.finish().map_err(|source| ProduceError::Skipped {
        path: skipped_file,
        source,
    })?;
    rejects.finish().map_err(|source| ProduceError::Rejects {
        path: settings.rejects_path.display().to_string(),
        source,
    })?;
    on_progress(&summary);
    Ok(summary)
}

/// Adds what happened since the last report to the batch row.
async fn report_counts(
    store: &Store,
    batch_id: &str,
    now: &Summary,
    reported: &mut Summary,
) -> Result<(), ProduceError> {
    store
        .add_batch_counts(
            batch_id,
            BatchCounts {
                read: (now.rows_read - reported.rows_read) as i64,
                published: (now.published - reported.published) as i64,
                rejected: (now.rejected - reported.rejected) as i64,
                skipped: (now.skipped - reported.skipped) as i64,
                verified_recently: (now.verified_recently - reported.verified_recently) as i64,
            },
        )
        .await?;
    *reported = now.clone();
    Ok(())
}

/// The re-verification policy: takes out of `chunk` every row whose person passed the same
/// operation in another batch within `within`, and lists it in the skipped file. Done before
/// the rows are written, so a skipped row is never a job (nothing to publish, nothing owed).
async fn skip_verified(
    settings: &ProduceSettings,
    store: &Store,
    within: std::time::Duration,
    chunk: &mut Vec<NewJob>,
    skipped: &mut SkippedWriter,
    summary: &mut Summary,
) -> Result<(), ProduceError> {
    let since = std::time::SystemTime::now()
        .checked_sub(within)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let keys: Vec<&str> = chunk.iter().map(|nj| nj.dedup_key.as_str()).collect();
    let passes = store
        .recent_passes(&settings.batch_id, &keys, since)
        .await?;
    if passes.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(chunk.len());
    for nj in chunk.drain(..) {
        match passes.get(&nj.dedup_key) {
            Some(pass) => {
                skipped
                    .write(
                        nj.job.source_row,
                        nj.job.customer_ref.as_deref(),
                        nj.job.operation.as_str(),
                        pass,
                    )
                    .map_err(|source| ProduceError::Skipped {
                        path: skipped.path().display().to_string(),
                        source,
                    })?;
                summary.verified_recently += 1;
            }
            None => kept.push(nj),
        }
    }
    *chunk = kept;
    Ok(())
}

fn write_reject(
    rejects: &mut RejectsWriter,
    r: &Reject,
    summary: &mut Summary,
) -> Result<(), ProduceError> {
    summary.rejected += 1;
    rejects.write(r).map_err(|source| ProduceError::Rejects {
        path: rejects.path().display().to_string(),
        source,
    })
}

/// A window the broker has not confirmed yet.
struct InFlight {
    pending: kyc_queue::Pending,
    ids: Vec<kyc_schemas::JobId>,
}

impl InFlight {
    /// Waits for the broker's confirms, then records them. Only after this may a re-run skip
    /// these jobs; a crash before it means they are published again (at-least-once), which
    /// the worker's outcome check makes harmless.
    async fn settle(self, store: &Store, summary: &mut Summary) -> Result<(), ProduceError> {
        self.pending.confirmed().await?;
        store.mark_published(&self.ids).await?;
        summary.published += self.ids.len() as u64;
        Ok(())
    }
}

/// Writes a window's jobs and publishes the new ones. While this window's rows are written,
/// the previous window's confirms are awaited and recorded, so the database and the broker
/// work at the same time; at most two windows are ever unconfirmed.
async fn publish_chunk(
    settings: &ProduceSettings,
    store: &Store,
    publisher: &kyc_queue::Publisher,
    chunk: &[NewJob],
    previous: Option<InFlight>,
    rejects: &mut RejectsWriter,
    summary: &mut Summary,
) -> Result<InFlight, ProduceError> {
    let settle_previous = async {
        match previous {
            Some(p) => {
                let mut s = Summary::default();
                p.settle(store, &mut s).await.map(|()| s.published)
            }
            None => Ok(0),
        }
    };
    let (classified, settled) = tokio::join!(
        store.insert_jobs(&settings.batch_id, chunk, &settings.keys.data),
        settle_previous
    );
    summary.published += settled?;
    let classified = classified?;
    let mut messages = Vec::new();
    let mut ids = Vec::new();
    for (nj, class) in chunk.iter().zip(classified) {
        match class {
            JobInsert::New | JobInsert::Unconfirmed => {
                messages.push(OutMessage {
                    vendor: nj.job.vendor(),
                    message_id: nj.job.job_id.to_string(),
                    // Sealed: the message at rest in the broker, and any dead-letter copy,
                    // holds no name, ID number, mobile or material URI in clear.
                    payload: JobMessage::seal(&nj.job, &settings.keys.data).to_bytes(),
                });
                ids.push(nj.job.job_id.clone());
            }
            JobInsert::AlreadyPublished => summary.skipped += 1,
            JobInsert::Duplicate { first_row } => write_reject(
                rejects,
                &Reject {
                    row: nj.job.source_row,
                    column: "id_number".into(),
                    value: nj
                        .job
                        .subject
                        .id_number
                        .as_ref()
                        .map(|i| i.masked())
                        .unwrap_or_default(),
                    reason: format!(
                        "duplicate of row {first_row}: same person and operation in this batch"
                    ),
                },
                summary,
            )?,
        }
    }
    let pending = publisher.publish(&messages).await?;
    Ok(InFlight { pending, ids })
}
