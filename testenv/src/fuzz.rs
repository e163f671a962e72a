//! Generated inputs for the parsers that take outside input: a seeded generator (the same
//! inputs on every run, so a failure reproduces with its seed and index) biased towards what
//! breaks parsers (NUL, control characters, lone surrogate escapes, huge numbers, deep nesting,
//! truncation, the grammar's own delimiters), and [`run`], which drives a target for a number
//! of inputs and reports how fast it went.
//!
//! The suite runs every target briefly (`FUZZ_INPUTS` unset: the target's own short count);
//! the long runs are `#[ignore]`d tests run by hand with `FUZZ_INPUTS=<n>`, e.g.
//! `FUZZ_INPUTS=1000000 cargo test -p fileserver --test fuzz -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// The seed every generator starts from unless `FUZZ_SEED` says otherwise.
pub const SEED: u64 = 0x5b0a_2d21;

/// Inputs of a long run: `FUZZ_INPUTS`, else `default`.
pub fn inputs(default: u64) -> u64 {
    std::env::var("FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A seeded generator of hostile inputs.
pub struct Gen {
    rng: StdRng,
}

/// Pieces that mean something to one parser or another.
const TOKENS: &[&str] = &[
    "",
    " ",
    ",",
    ";",
    "=",
    "-",
    "/",
    ":",
    "\"",
    "'",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "%",
    "%00",
    "%zz",
    "&",
    "?",
    "#",
    "\0",
    "\u{1}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "é",
    "я",
    "😀",
    "\r\n",
    "\n",
    "\t",
    "null",
    "true",
    "-0",
    "1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "0x10",
    "NaN",
    "bytes",
    "bytes=",
    "*",
    "..",
    "../",
    "C:\\",
    "\\\\?\\",
    "a=",
    "m=",
    "c=IN IP4 ",
    "\\u0000",
    "\\ud800",
    "0",
    "1",
    "-1",
    "4294967296",
];

impl Gen {
    pub fn new(salt: u64) -> Gen {
        let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(SEED);
        Gen { rng: StdRng::seed_from_u64(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.random_range(0..n) }
    }

    pub fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A number as text: small, edge, huge or malformed.
    pub fn number_text(&mut self) -> String {
        match self.below(6) {
            0 => self.below(10).to_string(),
            1 => self.rng.random::<u64>().to_string(),
            2 => format!("-{}", self.rng.random::<u32>()),
            3 => self
                .pick(&["0", "-0", "00", "1e3", "1.5", "18446744073709551616", "99999999999999999999999"])
                .to_owned(),
            4 => self.rng.random::<u16>().to_string(),
            _ => self.string(4),
        }
    }

    /// A string of up to about `max` characters: tokens, printable ASCII, any Unicode scalar,
    /// control characters; sometimes very long.
    pub fn string(&mut self, max: usize) -> String {
        if self.chance(2) {
            // very long: a few pieces, then filler
            let mut out = self.string(8);
            out.push_str(&"x".repeat(10_000 + self.below(5_000)));
            out.push_str(&self.string(8));
            return out;
        }
        let len = self.below(max + 1);
        let mut out = String::new();
        let mut count = 0;
        while count < len {
            count += 1;
            match self.below(10) {
                0..=2 => out.push_str(self.pick(TOKENS)),
                3..=6 => out.push(self.rng.random_range(0x20u8..0x7f) as char),
                7 => out.push(char::from_u32(self.rng.random_range(0..0x11_0000)).unwrap_or('\u{fffd}')),
                8 => out.push(char::from(self.rng.random_range(0u8..0x20))),
                _ => out.push_str(&self.number_text()),
            }
        }
        out
    }

    /// A string built from `alphabet` pieces and random bits: for grammars (Range, SDP lines).
    pub fn from_pieces(&mut self, pieces: &[&str], max_pieces: usize) -> String {
        let n = self.below(max_pieces + 1);
        let mut out = String::new();
        for _ in 0..n {
            if self.chance(85) {
                out.push_str(self.pick(pieces));
            } else if self.chance(50) {
                out.push_str(&self.number_text());
            } else {
                out.push_str(&self.string(6));
            }
        }
        out
    }

    /// Any JSON value, `depth` levels at most; objects take their keys from `keys` mostly.
    pub fn json(&mut self, keys: &[&str], depth: usize) -> Value {
        let leaf = depth == 0 || self.chance(45);
        if leaf {
            return match self.below(8) {
                0 => Value::Null,
                1 => Value::Bool(self.chance(50)),
                2 => json!(self.rng.random::<i64>()),
                3 => json!(self.rng.random::<f64>() * 1e6),
                4 => json!(self.below(5)),
                _ => Value::String(self.string(24)),
            };
        }
        if self.chance(35) {
            let n = self.below(4);
            return Value::Array((0..n).map(|_| self.json(keys, depth - 1)).collect());
        }
        let mut map = Map::new();
        for _ in 0..self.below(5) {
            let key = if !keys.is_empty() && self.chance(80) { self.pick(keys).to_owned() } else { self.string(8) };
            let value = self.json(keys, depth - 1);
            map.insert(key, value);
        }
        Value::Object(map)
    }

    /// Replaces, inserts, deletes or duplicates a few pieces of `text` (a valid input to start
    /// from, so the mutants get past the first checks).
    pub fn mutate(&mut self, text: &str) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for _ in 0..=self.below(4) {
            let at = self.below(chars.len() + 1);
            match self.below(6) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 => {
                    let piece: Vec<char> = self.pick(TOKENS).chars().collect();
                    chars.splice(at..at, piece);
                }
                2 if at < chars.len() => {
                    let end = (at + self.below(64)).min(chars.len());
                    let copy: Vec<char> = chars[at..end].to_vec();
                    chars.splice(at..at, copy);
                }
                3 => chars.truncate(at),
                4 if at < chars.len() => chars[at] = char::from(self.rng.random_range(0u8..0x80)),
                _ => {
                    let piece: Vec<char> = self.number_text().chars().collect();
                    chars.splice(at..at, piece);
                }
            }
        }
        chars.into_iter().collect()
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub inputs: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} inputs in {:.2?} ({:.0} inputs/s)", self.inputs, self.elapsed, self.per_second())
    }
}

/// Feeds `count` generated inputs to `target` (which asserts what must hold, and panics
/// otherwise) and prints the figures as `fuzz <name>: ...`.
pub fn run(name: &str, count: u64, mut target: impl FnMut(&mut Gen, u64)) -> Report {
    let mut generator = Gen::new(name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let started = Instant::now();
    for i in 0..count {
        target(&mut generator, i);
    }
    let report = Report { inputs: count, elapsed: started.elapsed() };
    eprintln!("fuzz {name}: {report}");
    report
}

/// [`run`] for async targets.
pub async fn run_async<F>(name: &str, count: u64, mut target: impl FnMut(&mut Gen, u64) -> F) -> Report
where
    F: std::future::Future<Output = ()>,
{
    let mut generator = Gen::new(name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let started = Instant::now();
    for i in 0..count {
        target(&mut generator, i).await;
    }
    let report = Report { inputs: count, elapsed: started.elapsed() };
    eprintln!("fuzz {name}: {report}");
    report
}
