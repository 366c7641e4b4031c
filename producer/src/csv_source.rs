//! Reads CSV records from a local file or an S3 object as a stream. Parsing runs on a
//! blocking thread (the csv crate is synchronous) and hands records over a bounded channel,
//! so memory stays flat whatever the file size and a slow broker slows the reader down.
//!
//! Encodings: a BOM decides (UTF-8, UTF-16); otherwise `auto` reads the first megabyte and
//! takes UTF-8 if it is valid UTF-8, else GB18030 (a superset of GBK, what Excel writes on
//! Chinese Windows). Everything is decoded to UTF-8 before the CSV parser sees it.

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

/// Why the input could not be read to its end: the run must stop, and the batch is left
/// unfinished (a re-run with the same batch id resumes it). Never a rejected row: a damaged
/// file is not a bad row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputFailure {
    /// The file or object could not be read (a connection reset mid-object, a disk error).
    /// Only the error's kind is kept: an S3 error's text can carry a presigned URL.
    #[error("reading the input failed after line {line}: {kind}")]
    Io { line: u64, kind: String },
    /// One record is over the bound, or a quote never closes.
    #[error(transparent)]
    TooLong(#[from] crate::bounded::TooLong),
    /// The header lacks what an operation in the file needs (checked at the first row of
    /// each operation, so a million rows give one error, not a million rejects).
    #[error("the header has no {missing} column, which {operation} needs (first asked for on line {line})")]
    MissingColumns {
        line: u64,
        operation: String,
        missing: String,
    },
}

/// The header's column names (trimmed, lower-case) and a receiver of records.
#[derive(Debug)]
pub struct Source {
    pub columns: Vec<String>,
    /// Records until the input ends or fails; after it closes, [`Source::failure`] says which.
    pub records: mpsc::Receiver<Record>,
    /// Filled before `records` closes when the input could not be read to its end.
    pub failure: tokio::sync::oneshot::Receiver<InputFailure>,
    /// The encoding the input was read in, for the summary.
    pub encoding: &'static str,
}

/// The input encoding asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    Auto,
    Utf8,
    Gb18030,
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Encoding::Auto),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "gb18030" | "gbk" | "gb2312" => Ok(Encoding::Gb18030),
            other => Err(format!(
                "unknown encoding {other:?} (auto, utf-8 or gb18030)"
            )),
        }
    }
}

/// How much of the input `auto` looks at before deciding.
const SNIFF_BYTES: usize = 1024 * 1024;

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
    /// The input failed while its start was read (a connection reset): retrying may help.
    #[error("reading the input failed before its header was read: {0}")]
    Read(String),
    #[error("header row is not valid CSV: {0}")]
    BadHeader(String),
}

/// Opens `input` (a path, or `s3://bucket/key` read through `objects`). No record longer than
/// `max_record_bytes` is ever buffered (see [`crate::bounded`]).
pub async fn open(
    input: &str,
    objects: Option<&ObjectStore>,
    encoding: Encoding,
    max_record_bytes: usize,
) -> Result<Source, SourceError> {
    let reader: Box<dyn Read + Send> = if input.starts_with("s3://") {
        let objects = objects.ok_or_else(|| SourceError::Open {
            uri: input.into(),
            source: kyc_objects::ObjectError::NoS3 {
                at: kyc_objects::origin(input),
            },
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
    let (failure_tx, failure) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        read_blocking(
            reader,
            encoding,
            max_record_bytes,
            header_tx,
            tx,
            failure_tx,
        )
    });
    let (columns, encoding) = header_rx.await.map_err(|_| SourceError::NoHeader)??;
    Ok(Source {
        columns,
        records: rx,
        failure,
        encoding,
    })
}

/// Reads the start of the input and returns a UTF-8 reader over all of it, and its encoding.
fn decoded(
    mut reader: Box<dyn Read + Send>,
    asked: Encoding,
) -> std::io::Result<(Box<dyn Read + Send>, &'static str)> {
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut reader)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    let bom = encoding_rs::Encoding::for_bom(&head).map(|(e, _)| e);
    let chosen = match (bom, asked) {
        (Some(e), _) => e,
        (None, Encoding::Utf8) => encoding_rs::UTF_8,
        (None, Encoding::Gb18030) => encoding_rs::GB18030,
        (None, Encoding::Auto) => sniff(&head),
    };
    let whole = std::io::Cursor::new(head).chain(reader);
    if chosen == encoding_rs::UTF_8 {
        // Passed through as bytes: invalid sequences are then reported per row, not replaced.
        return Ok((
            Box::new(whole),
            if bom.is_some() {
                "UTF-8 (BOM)"
            } else {
                "UTF-8"
            },
        ));
    }
    let name = chosen.name();
    let decoder = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(chosen))
        .build(whole);
    Ok((Box::new(decoder), name))
}

/// UTF-8 unless the bytes are clearly not: a UTF-8 export with a few corrupt bytes must stay
/// UTF-8 (its bad rows are then refused one by one), because decoding it as GB18030 would
/// turn every name into plausible-looking wrong characters.
fn sniff(head: &[u8]) -> &'static encoding_rs::Encoding {
    let (mut multibyte, mut invalid) = (0usize, 0usize);
    for chunk in head.utf8_chunks() {
        multibyte += chunk.valid().chars().filter(|c| c.len_utf8() > 1).count();
        invalid += usize::from(!chunk.invalid().is_empty());
    }
    // A character cut at the sniffing limit is not an error.
    let cut_at_end = std::str::from_utf8(head).is_err_and(|e| e.error_len().is_none());
    let invalid = invalid - usize::from(cut_at_end && invalid > 0);
    if invalid == 0 || multibyte >= 10 * invalid {
        return encoding_rs::UTF_8;
    }
    // The head may end inside a multi-byte character: leave up to three bytes out.
    let whole = head.len() < SNIFF_BYTES;
    let checked = if whole {
        head
    } else {
        &head[..head.len().saturating_sub(3)]
    };
    match encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(checked) {
        Some(_) => encoding_rs::GB18030,
        None => encoding_rs::UTF_8,
    }
}

type Header = Result<(Vec<String>, &'static str), SourceError>;

fn read_blocking(
    reader: Box<dyn Read + Send>,
    asked: Encoding,
    max_record_bytes: usize,
    header_tx: tokio::sync::oneshot::Sender<Header>,
    tx: mpsc::Sender<Record>,
    failure_tx: tokio::sync::oneshot::Sender<InputFailure>,
) {
    let (reader, encoding) = match decoded(reader, asked) {
        Ok(r) => r,
        Err(e) => {
            let _ = header_tx.send(Err(SourceError::Read(e.kind().to_string())));
            return;
        }
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        // Rows with the wrong number of fields are reported per row, not fatal.
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(
            64 * 1024,
            crate::bounded::RecordBounds::new(reader, max_record_bytes),
        ));
    let mut record = csv::ByteRecord::new();
    let header = match csv.read_byte_record(&mut record) {
        Ok(true) => record
            .iter()
            .map(|f| {
                decode(f).map(|s| s.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|cols| (cols, encoding))
            .map_err(SourceError::BadHeader),
        Ok(false) => Err(SourceError::NoHeader),
        Err(e) => Err(match e.kind() {
            csv::ErrorKind::Io(io) => match crate::bounded::too_long(io) {
                Some(t) => SourceError::BadHeader(t.to_string()),
                None => SourceError::Read(io.kind().to_string()),
            },
            _ => SourceError::BadHeader(e.to_string()),
        }),
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
                if let csv::ErrorKind::Io(io) = e.kind() {
                    // The input itself failed: stop here, loudly, instead of calling it a
                    // bad row and carrying on as if the file had ended.
                    let failure = match crate::bounded::too_long(io) {
                        Some(t) => InputFailure::TooLong(t.clone()),
                        None => InputFailure::Io {
                            line: next_min.saturating_sub(1),
                            kind: io.kind().to_string(),
                        },
                    };
                    let _ = failure_tx.send(failure);
                    return;
                }
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
        let mut s = open(p.to_str().unwrap(), None, Encoding::Auto, 1 << 20)
            .await
            .unwrap();
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
    async fn gb18030_input_is_detected_and_decoded() {
        let (utf8_text, _, _) = encoding_rs::GB18030.encode("name,id\n张三,1\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gbk.csv");
        std::fs::write(&p, &utf8_text).unwrap();
        let mut s = open(p.to_str().unwrap(), None, Encoding::Auto, 1 << 20)
            .await
            .unwrap();
        assert_eq!(s.encoding, "gb18030");
        let r = s.records.recv().await.unwrap();
        assert_eq!(r.fields.unwrap()[0], "张三");
    }

    #[test]
    fn a_utf8_file_with_a_few_bad_bytes_stays_utf8() {
        let mut text = "name\n".to_string() + &"张三\n".repeat(20);
        text.push('x');
        let mut bytes = text.into_bytes();
        bytes.push(0xC3); // a stray byte, then more text
        bytes.extend_from_slice("\n李四\n".as_bytes());
        assert_eq!(sniff(&bytes), encoding_rs::UTF_8);
        let (gbk, _, _) = encoding_rs::GB18030.encode("name\n张三\n李四\n");
        assert_eq!(sniff(&gbk), encoding_rs::GB18030);
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
