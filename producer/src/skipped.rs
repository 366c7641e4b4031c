//! The skipped file: one CSV line per row the re-verification policy did not publish
//! (`--skip-verified-within`), naming the earlier `passed` outcome that made it unnecessary,
//! so that every input row is accounted for: an outcome, a reject, or a line here. Like the
//! rejects file it goes through the spreadsheet-safe writer and is readable by its owner only.

use std::path::{Path, PathBuf};

use kyc_schemas::safe_csv::{Cell, SafeCsvWriter};
use kyc_store::RecentPass;

#[derive(Debug)]
pub struct SkippedWriter {
    out: Option<SafeCsvWriter<std::fs::File>>,
    path: PathBuf,
    count: u64,
}

/// `x.rejects.csv` → `x.skipped.csv`; any other name gets `.skipped.csv` appended.
pub fn skipped_path(rejects_path: &Path) -> PathBuf {
    let name = rejects_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let skipped = match name.strip_suffix(".rejects.csv") {
        Some(stem) => format!("{stem}.skipped.csv"),
        None => format!("{name}.skipped.csv"),
    };
    rejects_path.with_file_name(skipped)
}

impl SkippedWriter {
    /// Created with the first skipped row: a run without any leaves no file.
    pub fn new(path: PathBuf) -> Self {
        Self {
            out: None,
            path,
            count: 0,
        }
    }

    pub fn write(
        &mut self,
        row: u64,
        customer_ref: Option<&str>,
        operation: &str,
        pass: &RecentPass,
    ) -> std::io::Result<()> {
        if self.out.is_none() {
            let file = kyc_objects::private_file::create(&self.path)?;
            let mut w = SafeCsvWriter::new(file);
            w.write_header(&[
                "row",
                "customer_ref",
                "operation",
                "passed_job_id",
                "passed_batch_id",
                "passed_at",
            ])?;
            self.out = Some(w);
        }
        let at = chrono::DateTime::from_timestamp_millis(pass.completed_at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let w = self.out.as_mut().expect("opened above");
        w.write_row([
            Cell::from(row),
            Cell::from(customer_ref.unwrap_or_default()),
            Cell::from(operation),
            Cell::from(&pass.job_id),
            Cell::from(&pass.batch_id),
            Cell::from(&at),
        ])?;
        self.count += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn finish(mut self) -> std::io::Result<u64> {
        if let Some(w) = self.out.as_mut() {
            w.flush()?;
        }
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skipped_file_sits_next_to_the_rejects_file() {
        assert_eq!(
            skipped_path(Path::new("/d/nightly.rejects.csv")),
            Path::new("/d/nightly.skipped.csv")
        );
        assert_eq!(
            skipped_path(Path::new("out.csv")),
            Path::new("out.csv.skipped.csv")
        );
    }
}
