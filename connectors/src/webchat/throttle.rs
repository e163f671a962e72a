//! Per-IP token buckets against abuse of the customer endpoint: a sans-IO core fed the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// What is being counted for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Opening a customer socket.
    Connect,
    /// A message or a file from a customer.
    Message,
}

/// A bucket's shape: `burst` at once, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub burst: u32,
    pub every: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// The buckets of every address seen lately.
#[derive(Debug)]
pub struct Throttle {
    connect: Shape,
    message: Shape,
    buckets: HashMap<(IpAddr, Kind), Bucket>,
}

/// Buckets kept at most before full ones are forgotten.
const KEEP: usize = 4096;

impl Throttle {
    pub fn new(connect: Shape, message: Shape) -> Self {
        Throttle { connect, message, buckets: HashMap::new() }
    }

    fn shape(&self, kind: Kind) -> Shape {
        match kind {
            Kind::Connect => self.connect,
            Kind::Message => self.message,
        }
    }

    /// Takes a token for `ip` at `now`, or says how long until one is free.
    pub fn take(&mut self, now: Duration, ip: IpAddr, kind: Kind) -> Result<(), Duration> {
        let shape = self.shape(kind);
        if self.buckets.len() >= KEEP {
            self.forget_full(now);
        }
        let burst = f64::from(shape.burst.max(1));
        let every = shape.every.as_secs_f64().max(1e-6);
        let bucket = self.buckets.entry((ip, kind)).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed / every).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) * every))
        }
    }

    /// Drops the buckets that have refilled (they would start full anyway).
    fn forget_full(&mut self, now: Duration) {
        let (connect, message) = (self.connect, self.message);
        self.buckets.retain(|(_, kind), b| {
            let shape = if *kind == Kind::Connect { connect } else { message };
            let refilled = b.tokens + now.saturating_sub(b.at).as_secs_f64() / shape.every.as_secs_f64().max(1e-6);
            refilled < f64::from(shape.burst)
        });
    }

    /// Changes the message bucket's shape (accounts may set their own).
    pub fn set_message_shape(&mut self, shape: Shape) {
        self.message = shape;
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(
            Shape { burst: 2, every: Duration::from_secs(10) },
            Shape { burst: 3, every: Duration::from_secs(1) },
        )
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let mut t = throttle();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let s = Duration::from_secs;
        for _ in 0..3 {
            assert_eq!(t.take(s(0), ip, Kind::Message), Ok(()));
        }
        assert_eq!(t.take(s(0), ip, Kind::Message), Err(s(1)));
        assert_eq!(t.take(Duration::from_millis(500), ip, Kind::Message), Err(Duration::from_millis(500)));
        assert_eq!(t.take(s(1), ip, Kind::Message), Ok(()));
        assert!(t.take(s(1), ip, Kind::Message).is_err());
    }

    #[test]
    fn addresses_and_kinds_are_counted_apart() {
        let mut t = throttle();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Duration::ZERO;
        assert!(t.take(now, a, Kind::Connect).is_ok());
        assert!(t.take(now, a, Kind::Connect).is_ok());
        assert!(t.take(now, a, Kind::Connect).is_err());
        assert!(t.take(now, b, Kind::Connect).is_ok(), "another address has its own bucket");
        assert!(t.take(now, a, Kind::Message).is_ok(), "messages are counted apart from connections");
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let mut t = throttle();
        for i in 0..KEEP {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            t.take(Duration::ZERO, ip, Kind::Message).unwrap();
        }
        assert_eq!(t.tracked(), KEEP);
        t.take(Duration::from_secs(60), "10.9.9.9".parse().unwrap(), Kind::Message).unwrap();
        assert_eq!(t.tracked(), 1);
    }
}
