//! The last line of defence for text that leaves the process: vendor and storage error
//! messages, dead-letter reasons, log lines. Each source already avoids personal data and
//! secrets (errors are built from kinds, URLs never carried), but a vendor may echo what we
//! sent (Alibaba's `SignatureDoesNotMatch` quotes every parameter) and a library may print a
//! URL with its query (reqwest's `Display`). [`scrub`] removes what such echoes carry:
//! URL query strings (tokens, signatures, personal parameters), `user:password@` in URLs, and
//! anything shaped like a resident ID number. Names cannot be recognised in free text, which is
//! why every producer of such text must still avoid them; this only catches the shapes above.
//!
//! [`Secret`] and [`redact_url`] keep secrets out of `Debug` output.

use std::fmt;

/// Longest text kept by [`scrub`]: enough for any vendor message, too short for a body dump.
pub const MAX_SCRUBBED_CHARS: usize = 300;

/// Removes URL query strings, URL credentials and ID-number-shaped runs from `text`, and
/// cuts it to [`MAX_SCRUBBED_CHARS`] characters.
pub fn scrub(text: &str) -> String {
    let mut out = scrub_unbounded(text);
    if out.chars().count() > MAX_SCRUBBED_CHARS {
        out = out.chars().take(MAX_SCRUBBED_CHARS).collect();
        out.push('…');
    }
    out
}

/// [`scrub`] without the length cut: for log lines, which must stay whole.
pub fn scrub_unbounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_url = false;
    // The current run of ASCII letters and digits: judged whole, so that a hex job id or a
    // hash with a long stretch of digits is not taken for an ID number.
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if is_id_shaped(word) {
            out.push_str("[id]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>' {
            in_url = false;
        }
        // `scheme://`: from here to the next space the text is a URL.
        if c == ':'
            && chars.peek() == Some(&'/')
            && out.ends_with(|p: char| p.is_ascii_alphabetic())
        {
            in_url = true;
            out.push(c);
            // Drop `user:password@` right after `://`.
            let rest: String = chars.clone().take(512).collect();
            if let Some(after) = rest.strip_prefix("//") {
                let authority_end = after
                    .find(|ch: char| ch == '/' || ch == '?' || ch == '#' || ch.is_whitespace())
                    .unwrap_or(after.len());
                if let Some(at) = after[..authority_end].rfind('@') {
                    out.push_str("//");
                    let skip = 2 + after[..=at].chars().count();
                    for _ in 0..skip {
                        chars.next();
                    }
                }
            }
            continue;
        }
        // A query string: `?k=v…` in a URL, or any `?name=` anywhere (a bare query echoed
        // without its URL). Everything up to the next space or quote goes.
        if c == '?' && (in_url || looks_like_query(chars.clone())) {
            out.push_str("?…");
            while let Some(&n) = chars.peek() {
                if n.is_whitespace() || n == '"' || n == '\'' || n == ')' || n == '>' {
                    break;
                }
                chars.next();
            }
            in_url = false;
            continue;
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    out
}

/// 18 characters, 17 digits and a digit or X (GB 11643), or 15 digits (the first generation).
fn is_id_shaped(word: &str) -> bool {
    let b = word.as_bytes();
    match b.len() {
        15 => b.iter().all(u8::is_ascii_digit),
        18 => {
            b[..17].iter().all(u8::is_ascii_digit)
                && (b[17].is_ascii_digit() || b[17] == b'X' || b[17] == b'x')
        }
        _ => false,
    }
}

/// `name=` right after a `?`: a query string even without a URL in front of it.
fn looks_like_query(rest: impl Iterator<Item = char>) -> bool {
    for (len, c) in rest.enumerate() {
        if c == '=' {
            return len > 0;
        }
        if !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return false;
        }
    }
    false
}

/// A URL as it may be shown: no password, no query. Text that is not a URL is shown as
/// `<redacted>` (it could be a connection string in another syntax).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:<redacted>@{host}")
        }
        None => authority.to_string(),
    };
    format!("{scheme}://{host}{path}")
}

/// A secret string: `Debug` and `Display` never show it; [`Secret::expose`] is the one way in,
/// easy to find in a review.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_removed_from_urls() {
        let s = scrub("error sending request for url (http://127.0.0.1:9/oauth/2.0/token?grant_type=client_credentials&client_id=k&client_secret=S3CR3TVALUE)");
        assert!(!s.contains("S3CR3TVALUE"), "{s}");
        assert!(!s.contains("client_id"), "{s}");
        assert!(s.contains("http://127.0.0.1:9/oauth/2.0/token?…)"), "{s}");
    }

    #[test]
    fn bare_query_strings_are_removed() {
        let s = scrub("server string to sign is:POST&%2F&?Name=张三&IdCardNumber=x done");
        assert!(!s.contains("张三"), "{s}");
        let s = scrub("what? yes");
        assert_eq!(s, "what? yes");
    }

    #[test]
    fn id_number_shapes_are_masked() {
        assert_eq!(scrub("id 11010519491231002X here"), "id [id] here");
        assert_eq!(scrub("id 110105194912310021"), "id [id]");
        assert_eq!(scrub("legacy 110105491231002"), "legacy [id]");
        assert_eq!(scrub("HTTP 503 after 12 calls"), "HTTP 503 after 12 calls");
        assert_eq!(scrub("code 0x1F"), "code 0x1F");
        assert_eq!(
            scrub("身份证号110105194912310021不匹配"),
            "身份证号[id]不匹配"
        );
        // A hex id with a long run of digits is not an ID number.
        let job = "a110105194912310021f";
        assert_eq!(scrub(job), job);
    }

    #[test]
    fn url_credentials_are_removed() {
        let s = scrub("connect amqp://guest:hunter2@broker:5672/%2f failed");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("amqp://broker:5672/%2f"), "{s}");
    }

    #[test]
    fn long_text_is_cut() {
        let s = scrub(&"a".repeat(1000));
        assert_eq!(s.chars().count(), MAX_SCRUBBED_CHARS + 1);
    }

    #[test]
    fn redacted_urls_keep_host_and_path_only() {
        assert_eq!(
            redact_url("postgres://kyc:pw@db:5432/kyc?sslmode=require"),
            "postgres://kyc:<redacted>@db:5432/kyc"
        );
        assert_eq!(redact_url("sqlite://kyc.db"), "sqlite://kyc.db");
        assert_eq!(redact_url("host=db password=x"), "<redacted>");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
