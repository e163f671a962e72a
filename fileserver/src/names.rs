//! File names and MIME types as clients give them, and the `Content-Disposition` they come
//! back with. Pure.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The longest name kept, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// The longest MIME type kept, in bytes.
pub const MAX_MIME_LEN: usize = 255;
/// The type of a file whose client named none.
pub const DEFAULT_MIME: &str = "application/octet-stream";

/// A client's file name made safe to store and to send back: the last path segment (clients
/// sometimes send `C:\Users\...\scan.pdf`), no control characters, trimmed, at most
/// [`MAX_NAME_CHARS`]. `None` when nothing is left.
pub fn clean_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty() && cleaned != "." && cleaned != "..").then(|| cleaned.to_owned())
}

/// A MIME type `type/subtype[; params]` as given, with type and subtype lower-cased; `None` if
/// it is not one.
pub fn clean_mime(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_MIME_LEN || raw.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return None;
    }
    let (essence, params) = match raw.split_once(';') {
        Some((essence, params)) => (essence.trim(), Some(params.trim())),
        None => (raw, None),
    };
    let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c));
    let (kind, subtype) = essence.split_once('/')?;
    if !token(kind) || !token(subtype) {
        return None;
    }
    let essence = essence.to_ascii_lowercase();
    Some(match params {
        Some(p) if !p.is_empty() => format!("{essence}; {p}"),
        _ => essence,
    })
}

/// RFC 5987 `attr-char`s stay as they are; everything else is percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="..."`, plus `filename*=UTF-8''...` (RFC 5987/6266) when the name is
/// not plain ASCII: old clients read the ASCII fallback (non-ASCII characters as `_`), others
/// the exact name.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' { c } else { '_' })
        .collect();
    if fallback == name {
        format!("attachment; filename=\"{name}\"")
    } else {
        format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
            utf8_percent_encode(name, ATTR_CHAR_ESCAPES)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(clean_name("C:\\Users\\olga\\scan 1.pdf").as_deref(), Some("scan 1.pdf"));
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("a\u{0}b\nc.txt").as_deref(), Some("abc.txt"));
        assert_eq!(clean_name("  Счёт.pdf ").as_deref(), Some("Счёт.pdf"));
        for bad in ["", "   ", "dir/", "..", "\n"] {
            assert_eq!(clean_name(bad), None, "{bad:?}");
        }
        assert_eq!(clean_name(&"я".repeat(300)).unwrap().chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn mime_types() {
        assert_eq!(clean_mime("image/JPEG").as_deref(), Some("image/jpeg"));
        assert_eq!(clean_mime("text/plain;charset=utf-8").as_deref(), Some("text/plain; charset=utf-8"));
        assert_eq!(
            clean_mime("application/vnd.openxmlformats-officedocument.wordprocessingml.document").as_deref(),
            Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        );
        for bad in ["", "image", "/png", "image/", "text/html\r\nX-Evil: 1", "ima ge/png"] {
            assert_eq!(clean_mime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn disposition_for_ascii_and_non_ascii_names() {
        assert_eq!(content_disposition("act.pdf"), "attachment; filename=\"act.pdf\"");
        assert_eq!(
            content_disposition("Счёт 5521.pdf"),
            "attachment; filename=\"____ 5521.pdf\"; filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%205521.pdf"
        );
        assert_eq!(
            content_disposition("say \"hi\".txt"),
            "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"
        );
    }
}
