//! Splitting a text longer than a platform's maximum into several messages, at word
//! boundaries.
//!
//! Lengths are counted in UTF-16 code units, as Telegram counts them: an emoji outside the Basic
//! Multilingual Plane counts two. That is never less than the count in characters, so a part
//! that fits here fits a platform that counts characters too.

/// The length of `text` as the platforms count it.
pub fn text_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Splits `text` into parts of at most `max` units each: at the last whitespace that keeps a
/// part within the limit (the whitespace itself is dropped), or, in a word longer than the
/// limit, at the last character boundary that fits. Parts are never empty; a text within the
/// limit comes back whole.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(2); // room for one character of any width
    let mut parts = Vec::new();
    let mut rest = text;
    while text_len(rest) > max {
        // the longest prefix that fits, ending on a character boundary
        let mut units = 0;
        let mut fit = 0;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > max {
                break;
            }
            units += c.len_utf16();
            fit = i + c.len_utf8();
        }
        let prefix = &rest[..fit];
        // the next character, if whitespace, is a boundary too: "word word| next"
        let next_is_space = rest[fit..].chars().next().is_some_and(char::is_whitespace);
        let cut = if next_is_space {
            Some(fit)
        } else {
            prefix.char_indices().rev().find(|(_, c)| c.is_whitespace()).map(|(i, _)| i)
        };
        let (part, tail) = match cut {
            Some(at) if !prefix[..at].trim_end().is_empty() => (prefix[..at].trim_end(), &rest[at..]),
            _ => (prefix, &rest[fit..]),
        };
        parts.push(part.to_owned());
        rest = tail.trim_start();
    }
    let last = rest.trim_end();
    if !last.is_empty() || parts.is_empty() {
        parts.push(if parts.is_empty() { rest.to_owned() } else { last.to_owned() });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part_unchanged() {
        assert_eq!(split_text("hello world", 4096), vec!["hello world"]);
        assert_eq!(split_text("  padded  ", 4096), vec!["  padded  "]);
        assert_eq!(split_text("", 10), vec![""]);
    }

    #[test]
    fn splits_at_the_last_space_that_fits() {
        assert_eq!(split_text("aaa bbb ccc ddd", 8), vec!["aaa bbb", "ccc ddd"]);
        assert_eq!(split_text("aaa bbb ccc ddd", 7), vec!["aaa bbb", "ccc ddd"]);
        assert_eq!(split_text("aaa bbb ccc ddd", 6), vec!["aaa", "bbb", "ccc", "ddd"]);
        assert_eq!(split_text("one two\nthree four", 12), vec!["one two", "three four"]);
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut() {
        assert_eq!(split_text("abcdefghij xy", 4), vec!["abcd", "efgh", "ij", "xy"]);
    }

    #[test]
    fn every_part_fits_and_no_word_is_lost() {
        let words: Vec<String> = (0..2000).map(|i| format!("w{i}-{}", "x".repeat(i % 13))).collect();
        let text = words.join(" ");
        let parts = split_text(&text, 4096);
        assert!(parts.len() > 3);
        assert!(parts.iter().all(|p| text_len(p) <= 4096 && !p.is_empty()));
        assert_eq!(parts.join(" "), text, "joining the parts with the dropped spaces gives the text back");
    }

    #[test]
    fn counts_utf16_units_and_never_splits_a_character() {
        let text = "😀".repeat(5); // 2 units each
        assert_eq!(text_len(&text), 10);
        let parts = split_text(&text, 4);
        assert_eq!(parts, vec!["😀😀", "😀😀", "😀"]);
        let cyrillic = "Привет мир как дела";
        assert_eq!(split_text(cyrillic, 10), vec!["Привет мир", "как дела"]);
    }
}
