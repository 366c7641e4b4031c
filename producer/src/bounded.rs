//! A guard in front of the CSV parser: it follows CSV quoting byte by byte and fails the read
//! as soon as one record grows past a bound, before the parser has buffered it. Without it, a
//! single 10 GB line, or a stray `"` at the start of a cell that swallows the rest of the file
//! into one record, is read into memory whole before any check can run.
//!
//! The failure is an `io::Error` carrying a [`TooLong`], so the reader's caller can tell it
//! from a real I/O error and name the line where the record began.

use std::io::{self, Read};

/// Default bound on one record: far above any real row (a row is a few hundred bytes; a cell
/// is capped at 64 KiB by validation), far below what would hurt memory.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 512 * 1024;

/// Why reading stopped: a record longer than the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLong {
    #[error("the record starting on line {line} is longer than {limit} bytes")]
    Record { line: u64, limit: usize },
    #[error(
        "the opening quote on line {line} is not closed within {limit} bytes (a stray `\"` at the start of a cell?)"
    )]
    OpenQuote { line: u64, limit: usize },
    #[error(
        "the opening quote on line {line} is never closed: the rest of the file would be one cell (a stray `\"` at the start of a cell?)"
    )]
    Unclosed { line: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: the next byte says whether it was an escaped quote.
    QuoteInQuoted,
}

/// Passes bytes through while tracking records; see the module docs.
#[derive(Debug)]
pub struct RecordBounds<R> {
    inner: R,
    limit: usize,
    state: State,
    /// 1-based line of the byte about to be read.
    line: u64,
    /// Line where the current record began, and its length so far.
    record_line: u64,
    record_len: usize,
    /// Line of the quote that opened the current quoted field.
    quote_line: u64,
    failed: Option<TooLong>,
}

impl<R: Read> RecordBounds<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            state: State::FieldStart,
            line: 1,
            record_line: 1,
            record_len: 0,
            quote_line: 1,
            failed: None,
        }
    }

    fn end_record(&mut self) {
        self.record_len = 0;
        self.record_line = self.line;
        self.state = State::FieldStart;
    }

    /// Follows one byte; `Err` once the record is over the bound.
    fn step(&mut self, b: u8) -> Result<(), TooLong> {
        self.record_len += 1;
        if b == b'\n' {
            self.line += 1;
        }
        self.state = match (self.state, b) {
            (State::FieldStart, b'"') => {
                self.quote_line = self.line;
                State::Quoted
            }
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b',') => State::FieldStart,
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\n') => {
                self.end_record();
                return Ok(());
            }
            (State::FieldStart | State::Unquoted, _) => State::Unquoted,
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::QuoteInQuoted, _) => State::Unquoted,
        };
        if self.record_len > self.limit {
            return Err(if self.state == State::Quoted {
                TooLong::OpenQuote {
                    line: self.quote_line,
                    limit: self.limit,
                }
            } else {
                TooLong::Record {
                    line: self.record_line,
                    limit: self.limit,
                }
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for RecordBounds<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = self.inner.read(buf)?;
        // At the end, a quote still open across lines has swallowed rows: refuse, do not let
        // the parser hand them over as one bad record. (A last line cut inside a quote, with
        // no newline after it, stays a single rejected row.)
        if n == 0 && !buf.is_empty() && self.state == State::Quoted && self.line > self.quote_line {
            let e = TooLong::Unclosed {
                line: self.quote_line,
            };
            self.failed = Some(e.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            if let Err(e) = self.step(b) {
                self.failed = Some(e.clone());
                // Hand over what came before the offending byte; the next read fails.
                if i > 0 {
                    return Ok(i);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        Ok(n)
    }
}

/// The bound violation inside an I/O error, if that is what it is.
pub fn too_long(e: &io::Error) -> Option<&TooLong> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<TooLong>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, limit: usize) -> Result<Vec<u8>, TooLong> {
        let mut out = Vec::new();
        RecordBounds::new(text.as_bytes(), limit)
            .read_to_end(&mut out)
            .map_err(|e| too_long(&e).cloned().expect("a bound error"))?;
        Ok(out)
    }

    #[test]
    fn ordinary_rows_pass_through_unchanged() {
        let text = "a,b\n\"x,\"\"y\"\"\nz\",2\nplain,3\n";
        assert_eq!(read_all(text, 16).unwrap(), text.as_bytes());
    }

    #[test]
    fn a_long_line_is_refused_naming_the_line_it_began_on() {
        let text = format!("a,b\n1,2\n{}\n3,4\n", "x".repeat(100));
        assert_eq!(
            read_all(&text, 50),
            Err(TooLong::Record { line: 3, limit: 50 })
        );
    }

    #[test]
    fn a_stray_quote_is_named_as_an_open_quote() {
        let mut text = String::from("name,id\n\"Zhang,1\n");
        for i in 0..100 {
            text.push_str(&format!("row{i},2\n"));
        }
        assert_eq!(
            read_all(&text, 200),
            Err(TooLong::OpenQuote {
                line: 2,
                limit: 200
            })
        );
    }

    #[test]
    fn a_quote_open_at_the_end_of_a_short_file_is_named() {
        let text = "name,id\n\"Zhang,1\nLi,2\nWang,3\n";
        assert_eq!(read_all(text, 1 << 20), Err(TooLong::Unclosed { line: 2 }));
        // A last line cut inside its quote is one bad row, not a refused file.
        let cut = "name,id\nLi,2\n\"Zhang,1";
        assert_eq!(read_all(cut, 1 << 20).unwrap(), cut.as_bytes());
    }

    #[test]
    fn a_quote_inside_an_unquoted_cell_is_literal() {
        let text = "a\"b,c\nd,e\n";
        assert_eq!(read_all(text, 8).unwrap(), text.as_bytes());
    }
}
