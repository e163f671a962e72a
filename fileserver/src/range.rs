//! The `Range` request header (RFC 9110 §14), for one range of bytes. Pure.

use std::ops::Range;

/// What to send for a `Range` header and a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// The whole file (no header, one that is not `bytes=`, a malformed one, or several ranges:
    /// the RFC lets a server ignore those).
    Full,
    /// `206 Partial Content` with these bytes (end exclusive).
    Partial(Range<u64>),
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

/// Interprets `header` for a file of `size` bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
pub fn resolve(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return Ranged::Full;
    };
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Full;
    };
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return Ranged::Full;
    };
    match (first, last) {
        (None, None) => Ranged::Full,
        // the last n bytes
        (None, Some(0)) => Ranged::Unsatisfiable,
        (None, Some(_)) if size == 0 => Ranged::Unsatisfiable,
        (None, Some(n)) => Ranged::Partial(size.saturating_sub(n)..size),
        (Some(start), _) if start >= size => Ranged::Unsatisfiable,
        (Some(start), None) => Ranged::Partial(start..size),
        (Some(start), Some(end)) if end < start => Ranged::Full,
        (Some(start), Some(end)) => Ranged::Partial(start..end.min(size - 1) + 1),
    }
}

/// The `Content-Range` value of a partial answer.
pub fn content_range(range: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", range.start, range.end - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(resolve(Some("bytes=0-99"), 1000), Ranged::Partial(0..100));
        assert_eq!(resolve(Some("bytes=900-"), 1000), Ranged::Partial(900..1000));
        assert_eq!(resolve(Some("bytes=-100"), 1000), Ranged::Partial(900..1000));
        assert_eq!(resolve(Some("bytes=-5000"), 1000), Ranged::Partial(0..1000));
        assert_eq!(resolve(Some("bytes=990-5000"), 1000), Ranged::Partial(990..1000));
        assert_eq!(resolve(Some("bytes=999-999"), 1000), Ranged::Partial(999..1000));
        assert_eq!(content_range(&(0..100), 1000), "bytes 0-99/1000");
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(resolve(Some("bytes=1000-"), 1000), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=5000-6000"), 1000), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-0"), 1000), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=0-"), 0), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-1"), 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn ignored_headers_mean_the_whole_file() {
        for header in
            [None, Some("items=0-1"), Some("bytes=a-b"), Some("bytes=5-1"), Some("bytes=0-1,5-6"), Some("bytes=-")]
        {
            assert_eq!(resolve(header, 1000), Ranged::Full, "{header:?}");
        }
    }
}
