//! Generated inputs for the file server's parsers of outside input: file names and MIME types
//! as clients send them (and the `Content-Disposition` they come back in), and `Range` headers.
//! A short run is part of the suite; the long runs are `#[ignore]`d (see `testenv::fuzz`).

use axum::http::HeaderValue;
use fileserver::names::{MAX_NAME_CHARS, clean_mime, clean_name, content_disposition};
use fileserver::range::{Ranged, content_range, resolve};
use testenv::fuzz::{self, Gen};

fn names(g: &mut Gen, _: u64) {
    let raw = if g.chance(30) {
        let start = g.pick(&SAMPLES);
        g.mutate(start)
    } else {
        g.string(40)
    };
    if let Some(name) = clean_name(&raw) {
        assert!(!name.is_empty() && name.trim() == name, "{raw:?} -> {name:?}");
        assert!(name.chars().count() <= MAX_NAME_CHARS, "{raw:?}");
        assert!(!name.chars().any(|c| c.is_control() || c == '/' || c == '\\'), "{raw:?} -> {name:?}");
        assert!(name != "." && name != "..", "{raw:?}");
        let header = content_disposition(&name);
        assert!(HeaderValue::from_str(&header).is_ok(), "{name:?} gives no header: {header:?}");
    }
    if let Some(mime) = clean_mime(&raw) {
        assert!(mime.is_ascii() && !mime.chars().any(|c| c.is_control()), "{raw:?} -> {mime:?}");
        assert!(mime.contains('/'), "{raw:?} -> {mime:?}");
        assert!(HeaderValue::from_str(&mime).is_ok(), "{mime:?}");
    }
}

/// Valid names and types the mutants start from.
const SAMPLES: [&str; 6] =
    ["report.pdf", "C:\\Users\\olga\\scan 1.pdf", "../../etc/passwd", "Счёт.pdf", "image/jpeg; q=1", "a.tar.gz"];

const RANGE_PIECES: &[&str] = &[
    "bytes=",
    "bytes",
    "=",
    "-",
    ",",
    " ",
    "0",
    "1",
    "499",
    "500",
    "999",
    "-0",
    "18446744073709551615",
    "\t",
    "items=",
];

fn ranges(g: &mut Gen, _: u64) {
    let header = g.from_pieces(RANGE_PIECES, 6);
    let size = g.pick(&[0u64, 1, 2, 500, 1000, u64::MAX / 2]);
    match resolve(Some(&header), size) {
        Ranged::Partial(r) => {
            assert!(r.start < r.end && r.end <= size, "{header:?} on {size} bytes gives {r:?}");
            assert!(HeaderValue::from_str(&content_range(&r, size)).is_ok());
        }
        Ranged::Full | Ranged::Unsatisfiable => {}
    }
}

#[test]
fn generated_file_names_and_mime_types() {
    fuzz::run("file names", 50_000, names);
}

#[test]
fn generated_range_headers() {
    fuzz::run("range headers", 200_000, ranges);
}

#[test]
#[ignore = "long run: FUZZ_INPUTS=<n> cargo test -p fileserver --test fuzz -- --ignored --nocapture"]
fn long_run_file_names_and_ranges() {
    fuzz::run("file names (long)", fuzz::inputs(2_000_000), names);
    fuzz::run("range headers (long)", fuzz::inputs(2_000_000), ranges);
}
