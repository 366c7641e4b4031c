//! The vendors' codes, one table per vendor: code → (status, reason, retry class, source).
//!
//! These tables are the single source of truth. The worker's `response.rs` files classify
//! answers by looking codes up here, the simulator draws every code it emits from here (a
//! lookup at compile time, [`get`]), and `docs/outcomes.md` is generated from here
//! ([`markdown`]; a test in `schemas/tests/outcomes_doc.rs` fails on any difference).
//! `source` names the seed file and section, or the vendor page, a row comes from; rows with
//! no source say so ([`NO_SOURCE`]) in the code and in the document.

pub mod alibaba;
pub mod baidu;
pub mod huawei;

use crate::{Reason, Status};

/// What the worker does with an answer (`docs/outcomes.md`, "Retry classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A final answer for this input.
    None,
    /// Transient or throttled: back off and try again.
    Retryable,
    /// Fetch a new token, resend once.
    RefreshAuth,
    /// A client, credential or account problem: no retry.
    Permanent,
}

impl Retry {
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::None => "none",
            Retry::Retryable => "retryable",
            Retry::RefreshAuth => "refresh_auth",
            Retry::Permanent => "permanent",
        }
    }
}

/// Marks a row no seed or vendor page backs (a local failure, an undocumented behaviour, a
/// code seen only in third-party material).
pub const NO_SOURCE: &str = "no source";

/// One vendor code and what it means for a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodeRow {
    /// Where the code appears: `verification_code`, `error_code`, `VerifyStatus`, …
    pub field: &'static str,
    /// The code as the vendor writes it; `other` = any code of this field not listed.
    pub code: &'static str,
    /// The row applies only when the vendor's message contains this text.
    pub when: Option<&'static str>,
    /// The HTTP status the code comes with, where documented.
    pub http: Option<u16>,
    /// The vendor's message (what the simulator sends; `%s` = a detail the vendor fills in).
    pub message: &'static str,
    /// What it means, in a few words.
    pub meaning: &'static str,
    pub status: Status,
    pub reason: Reason,
    pub retry: Retry,
    /// Seed file and section, or vendor page; [`NO_SOURCE`] when there is none.
    pub source: &'static str,
}

impl CodeRow {
    pub fn has_source(&self) -> bool {
        !self.source.starts_with(NO_SOURCE)
    }
}

/// Shorthand for the tables.
#[allow(clippy::too_many_arguments)]
pub(crate) const fn row(
    field: &'static str,
    code: &'static str,
    http: Option<u16>,
    message: &'static str,
    meaning: &'static str,
    status: Status,
    reason: Reason,
    retry: Retry,
    source: &'static str,
) -> CodeRow {
    CodeRow {
        field,
        code,
        when: None,
        http,
        message,
        meaning,
        status,
        reason,
        retry,
        source,
    }
}

impl CodeRow {
    /// The same row, applying only when the message contains `text`.
    pub(crate) const fn when(mut self, text: &'static str) -> Self {
        self.when = Some(text);
        self
    }
}

/// The row for `code` in `field`, given the vendor's message: first a row with a message rule
/// that matches (for this code, or for any code: `*`), then the code's plain row, then the
/// field's `other` row.
pub fn find(
    table: &'static [CodeRow],
    field: &str,
    code: &str,
    message: &str,
) -> Option<&'static CodeRow> {
    let in_field = || table.iter().filter(move |r| r.field == field);
    in_field()
        .find(|r| (r.code == code || r.code == "*") && r.when.is_some_and(|w| message.contains(w)))
        .or_else(|| in_field().find(|r| r.code == code && r.when.is_none()))
        .or_else(|| in_field().find(|r| r.code == "other"))
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The first row for `code` in `field`, at compile time: a simulator constant naming a code
/// that is not in the table does not build.
pub const fn get(table: &'static [CodeRow], field: &str, code: &str) -> &'static CodeRow {
    let mut i = 0;
    while i < table.len() {
        if same(table[i].field, field) && same(table[i].code, code) {
            return &table[i];
        }
        i += 1;
    }
    panic!("code not in the vendor's table")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The table as the Markdown `docs/outcomes.md` carries.
pub fn markdown(table: &[CodeRow]) -> String {
    let mut out = String::from(
        "| Field | Code | HTTP | Vendor meaning | Status | Reason | Retry | Source |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in table {
        let code = match r.when {
            Some(w) => format!("{} (message contains \"{}\")", r.code, w),
            None => r.code.to_string(),
        };
        let source = if r.has_source() {
            r.source.to_string()
        } else {
            format!("**{}**", r.source)
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |\n",
            cell(r.field),
            cell(&code),
            r.http.map_or("—".to_string(), |h| h.to_string()),
            cell(r.meaning),
            r.status.as_str(),
            r.reason.as_str(),
            r.retry.as_str(),
            cell(&source),
        ));
    }
    out
}

/// Failures to reach a vendor at all, common to the three (`VendorError::from_reqwest`).
pub const TRANSPORT: &[CodeRow] = &[
    row(
        "transport",
        "timeout",
        None,
        "",
        "no answer within the request timeout (the vendor may have answered and billed)",
        Status::Error,
        Reason::Timeout,
        Retry::Retryable,
        "no source (local: the HTTP client's timeout)",
    ),
    row(
        "transport",
        "connect",
        None,
        "",
        "connection refused or failed before the request was sent",
        Status::Error,
        Reason::VendorInternal,
        Retry::Retryable,
        "no source (local: the HTTP client's connect error)",
    ),
    row(
        "transport",
        "network",
        None,
        "",
        "connection reset or body cut off after sending",
        Status::Error,
        Reason::VendorInternal,
        Retry::Retryable,
        "no source (local: the HTTP client's I/O error)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_prefers_the_exact_code_then_a_message_rule_then_other() {
        let t = huawei::TABLE;
        assert_eq!(
            find(t, "error_code", "IVS.0009", "x").unwrap().code,
            "IVS.0009"
        );
        let token = find(t, "error_code", "APIG.0301", "token expires").unwrap();
        assert_eq!(token.retry, Retry::RefreshAuth);
        let aksk = find(t, "error_code", "APIG.0301", "verify aksk signature fail").unwrap();
        assert_eq!(aksk.retry, Retry::Permanent);
        assert_eq!(find(t, "error_code", "IVS.9999", "").unwrap().code, "other");
        assert!(find(t, "no such field", "1", "").is_none());
    }

    #[test]
    fn every_row_names_a_source_or_says_it_has_none() {
        for t in [huawei::TABLE, alibaba::TABLE, baidu::TABLE, TRANSPORT] {
            for r in t {
                assert!(!r.source.trim().is_empty(), "{} {}", r.field, r.code);
                assert!(
                    r.has_source() || r.source.starts_with(NO_SOURCE),
                    "{} {}",
                    r.field,
                    r.code
                );
            }
        }
    }
}
