//! The rejects file: one CSV line per refused row, with the row number, the column, the
//! (masked) value and the reason, so a compliance analyst can fix the source and re-run.
//! The values are the input's own cells, so they go through the spreadsheet-safe writer
//! (`kyc_schemas::safe_csv`), and the file is readable by its owner only (it names rows of
//! people).

use std::path::Path;

use kyc_schemas::safe_csv::{Cell, SafeCsvWriter};

use crate::validate::Reject;

#[derive(Debug)]
pub struct RejectsWriter {
    out: Option<SafeCsvWriter<std::fs::File>>,
    path: std::path::PathBuf,
    count: u64,
}

impl RejectsWriter {
    /// The file is only created when the first reject arrives: a clean run leaves nothing.
    pub fn new(path: &Path) -> Self {
        Self {
            out: None,
            path: path.to_path_buf(),
            count: 0,
        }
    }

    pub fn write(&mut self, r: &Reject) -> std::io::Result<()> {
        if self.out.is_none() {
            let file = kyc_objects::private_file::create(&self.path)?;
            // The csv writer buffers by itself.
            let mut w = SafeCsvWriter::new(file);
            w.write_header(&["row", "column", "value", "reason"])?;
            self.out = Some(w);
        }
        let w = self.out.as_mut().expect("opened above");
        w.write_row([
            Cell::from(r.row),
            Cell::from(&r.column),
            Cell::from(&r.value),
            Cell::from(&r.reason),
        ])?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
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
