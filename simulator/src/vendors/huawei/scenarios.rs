//! What the simulated IVS decides for a subject: the verdict codes a scenario maps to, the
//! crop risk of a large image, and the marker a test image carries to pick its scenario.

use super::*;

/// Above this much base64, `crop=true` may miss the face (tables 4-5, 4-16).
pub(super) const CROP_RISK_B64: usize = 90 * 1024;

/// `verification_result` of a verification code (table 5-1).
pub(super) fn verification_result(row: &CodeRow) -> &'static str {
    match row.code {
        "1000" => "valid",
        "3001" => "nonexistent",
        _ => "invalid",
    }
}

/// The verification codes this simulator answers with (table 5-1).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const VERDICTS: [&str; 6] = ["1000", "2001", "2002", "2003", "2006", "3001"];

/// Simulator convention for ID-card images: a `kycsim:id=<18 chars>;name=<name>` marker
/// anywhere in the bytes (a JPEG comment) says whose card it is.
pub(crate) fn marker(bytes: &[u8]) -> Option<(String, String)> {
    let needle = b"kycsim:id=";
    let pos = bytes.windows(needle.len()).position(|w| w == needle)?;
    let rest = &bytes[pos + needle.len()..];
    let end = rest
        .iter()
        .position(|b| *b == 0 || *b == 0xFF)
        .unwrap_or(rest.len().min(200));
    let text = String::from_utf8_lossy(&rest[..end]).to_string();
    let (id, name) = text.split_once(";name=").unwrap_or((&text, "张三"));
    Some((name.to_string(), id.chars().take(18).collect()))
}
