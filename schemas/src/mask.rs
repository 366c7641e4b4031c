//! Masking of personal data for the few places that must show some of it (reports, `Debug`).
//! Logs never show even masked values: they carry job ids only.

/// Keeps the first `head` and last `tail` characters and replaces the rest with `*`.
/// Strings too short to hide anything are masked whole.
pub fn mask_middle(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let hidden = chars.len() - head - tail;
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', hidden));
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A name as reports show it by default: the first character, then one `*` per other character.
pub fn mask_name(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middle_masking_keeps_head_and_tail() {
        assert_eq!(mask_middle("13812345678", 3, 4), "138****5678");
        assert_eq!(mask_middle("abc", 3, 4), "***");
    }

    #[test]
    fn names_keep_only_the_first_character() {
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("Li"), "L*");
        assert_eq!(mask_name(""), "");
    }
}
