//! Reads CSV records from a local file or an S3 object as a stream. Parsing runs on a
//! blocking thread (the csv crate is synchronous) and hands records over a bounded channel,
//! so memory stays flat whatever the file size and a slow broker slows the reader down.

use std::io::Read;

use kyc_objects::ObjectStore;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

/// One data record: its 1-based line number in the file (the header is row 1) and its
/// fields, or the reason it could not be read.
#[derive(Debug)]
pub struct Record {
    pub row: u64,
    pub fields: Result<Vec<String>, String>,
}

/// The header's column names (trimmed, lower-case) and a receiver of records.
#[derive(Debug)]
pub struct Source {
    pub columns: Vec<String>,
    pub records: mpsc::Receiver<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open input {uri}: {source}")]
    Open {
        uri: String,
        #[source]
        source: kyc_objects::ObjectError,
    },
    #[error("cannot open input {uri}: {source}")]
    OpenFile {
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("input has no header row")]
    NoHeader,
    #[error("header row is not valid CSV: {0}")]
    BadHeader(String),
}

/// Opens `input` (a path, or `s3://bucket/key` read through `objects`).
pub async fn open(input: &str, objects: Option<&ObjectStore>) -> Result<Source, SourceError> {
    let reader: Box<dyn Read + Send> = if input.starts_with("s3://") {
        let objects = objects.ok_or_else(|| SourceError::Open {
            uri: input.into(),
            source: kyc_objects::ObjectError::NoS3(input.into()),
        })?;
        let stream = objects
            .reader(input)
            .await
            .map_err(|source| SourceError::Open {
                uri: input.into(),
                source,
            })?;
        Box::new(SyncIoBridge::new(stream))
    } else {
        Box::new(
            std::fs::File::open(input).map_err(|source| SourceError::OpenFile {
                uri: input.into(),
                source,
            })?,
        )
    };
    let (header_tx, header_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = mpsc::channel(1024);
    tokio::task::spawn_blocking(move || read_blocking(reader, header_tx, tx));
    let columns = header_rx.await.map_err(|_| SourceError::NoHeader)??;
    Ok(Source {
        columns,
        records: rx,
    })
}

fn read_blocking(
    reader: Box<dyn Read + Send>,
    header_tx: tokio::sync::oneshot::Sender<Result<Vec<String>, SourceError>>,
    tx: mpsc::Sender<Record>,
) {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        // Rows with the wrong number of fields are reported per row, not fatal.
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(64 * 1024, reader));
    let mut record = csv::ByteRecord::new();
    let header = match csv.read_byte_record(&mut record) {
        Ok(true) => record
            .iter()
            .map(|f| {
                decode(f).map(|s| s.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(SourceError::BadHeader),
        Ok(false) => Err(SourceError::NoHeader),
        Err(e) => Err(SourceError::BadHeader(e.to_string())),
    };
    let ok = header.is_ok();
    if header_tx.send(header).is_err() || !ok {
        return;
    }
    // csv's own positions lag by a line after a CRLF terminator, so the start line is also
    // derived from the previous record: its start, plus the newlines inside its quoted
    // fields, plus one. The larger of the two is right for LF, CRLF and multi-line fields.
    let mut next_min: u64 = 2;
    loop {
        let row;
        let fields = match csv.read_byte_record(&mut record) {
            Ok(false) => return,
            Ok(true) => {
                row = record
                    .position()
                    .map_or(next_min, |p| p.line())
                    .max(next_min);
                let inner_newlines = record
                    .iter()
                    .map(|f| f.iter().filter(|b| **b == b'\n').count() as u64)
                    .sum::<u64>();
                next_min = row + inner_newlines + 1;
                record.iter().map(decode).collect::<Result<Vec<_>, _>>()
            }
            Err(e) => {
                row = e.position().map_or(next_min, |p| p.line()).max(next_min);
                next_min = row + 1;
                Err(format!("unreadable CSV record: {}", e.kind_description()))
            }
        };
        if tx.blocking_send(Record { row, fields }).is_err() {
            return; // the consumer stopped
        }
    }
}

fn decode(field: &[u8]) -> Result<String, String> {
    if field.contains(&0) {
        return Err("field contains a NUL byte".into());
    }
    String::from_utf8(field.to_vec()).map_err(|_| "field is not valid UTF-8".into())
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for csv::Error {
    /// The error kind without field contents.
    fn kind_description(&self) -> String {
        match self.kind() {
            csv::ErrorKind::Io(e) => format!("I/O error: {e}"),
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => {
                format!("expected {expected_len} fields, found {len}")
            }
            _ => "malformed record".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(text: &[u8]) -> (Vec<String>, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.csv");
        std::fs::write(&p, text).unwrap();
        let mut s = open(p.to_str().unwrap(), None).await.unwrap();
        let mut out = Vec::new();
        while let Some(r) = s.records.recv().await {
            out.push(r);
        }
        (s.columns, out)
    }

    #[tokio::test]
    async fn header_is_normalized_and_a_bom_removed() {
        let (cols, rows) = read_all(b"\xEF\xBB\xBF Name ,ID_Number\r\na,b\r\n").await;
        assert_eq!(cols, vec!["name", "id_number"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].row, 2);
    }

    #[tokio::test]
    async fn quoted_newlines_keep_row_numbers_honest() {
        let (_, rows) = read_all(b"a,b\n\"x\ny\",1\nz,2\n").await;
        assert_eq!(rows[0].fields.as_ref().unwrap()[0], "x\ny");
        assert_eq!(rows[1].row, 4);
    }

    #[tokio::test]
    async fn crlf_files_number_rows_like_lf_files() {
        let (_, rows) = read_all(b"a,b\r\nx,1\r\n\"p\r\nq\",2\r\nz,3\r\n").await;
        let lines: Vec<u64> = rows.iter().map(|r| r.row).collect();
        assert_eq!(lines, vec![2, 3, 5]);
    }

    #[tokio::test]
    async fn bad_bytes_are_reported_per_row() {
        let (_, rows) = read_all(b"a,b\n\xff\xfe,1\nok,\x002\n").await;
        assert_eq!(
            rows[0].fields.as_ref().unwrap_err(),
            "field is not valid UTF-8"
        );
        assert_eq!(
            rows[1].fields.as_ref().unwrap_err(),
            "field contains a NUL byte"
        );
    }
}
