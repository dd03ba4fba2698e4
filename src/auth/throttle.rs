//! Failed logins, slowed down per address (the email or username tried, as a fixed-size
//! digest): the first `FREE_FAILURES` failures cost nothing; each one after makes the address
//! wait twice as long as the last before its next try (1 s, 2 s, 4 s, ... at most
//! `MAX_WAIT`), and a try during the wait is refused without checking the password. An
//! address is forgotten `FORGET_AFTER` after its last failure, and on a successful login.
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures an address may have before it waits.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long an address's failures are remembered after its last.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The most addresses remembered (about 150 bytes each: 15 MB at most); beyond it, the one
/// whose last failure is oldest is forgotten first, so that a client trying endless addresses
/// cannot exhaust memory. Failures are counted only for tries whose password was checked,
/// one at a time on one thread (tens of milliseconds each): far fewer than this many fit in
/// `FORGET_AFTER`, so an address still remembered is never pushed out by others.
pub const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No try before this.
    until: Instant,
}

#[derive(Debug, Default)]
pub struct Throttle {
    addresses: HashMap<String, Failures>,
}

/// The wait after the `count`th failure.
pub fn wait_after(count: u32) -> Duration {
    if count <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES - 1).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_WAIT)
}

impl Throttle {
    /// `Err(wait)` when `address` must wait that long before trying again.
    pub fn check(&self, address: &str, now: Instant) -> Result<(), Duration> {
        match self.addresses.get(address) {
            Some(f) if f.until > now && now.duration_since(f.last) < FORGET_AFTER => Err(f.until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed try of `address`.
    pub fn fail(&mut self, address: &str, now: Instant) {
        let known = self.addresses.get(address).filter(|f| now.duration_since(f.last) < FORGET_AFTER).copied();
        if known.is_none() && self.addresses.len() >= MAX_ADDRESSES {
            self.addresses.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if self.addresses.len() >= MAX_ADDRESSES {
                if let Some(oldest) = self.addresses.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone()) {
                    self.addresses.remove(&oldest);
                }
            }
        }
        let count = known.map_or(0, |f| f.count).saturating_add(1);
        self.addresses.insert(address.to_string(), Failures { count, last: now, until: now + wait_after(count) });
    }

    /// Takes back the last `fail` of `address`: its try was counted but never checked (the
    /// server was too busy to).
    pub fn undo(&mut self, address: &str) {
        if let Some(f) = self.addresses.get_mut(address) {
            f.count = f.count.saturating_sub(1);
            f.until = f.last + wait_after(f.count);
            if f.count == 0 {
                self.addresses.remove(address);
            }
        }
    }

    /// A successful login: the address starts afresh.
    pub fn succeed(&mut self, address: &str) {
        self.addresses.remove(address);
    }

    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_failure_past_the_free_ones() {
        assert_eq!(wait_after(1), Duration::ZERO);
        assert_eq!(wait_after(FREE_FAILURES), Duration::ZERO);
        assert_eq!(wait_after(FREE_FAILURES + 1), Duration::from_secs(1));
        assert_eq!(wait_after(FREE_FAILURES + 2), Duration::from_secs(2));
        assert_eq!(wait_after(FREE_FAILURES + 6), Duration::from_secs(32));
        assert_eq!(wait_after(FREE_FAILURES + 7), MAX_WAIT);
        assert_eq!(wait_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn an_address_waits_others_do_not_and_success_or_time_forgets() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for k in 0..FREE_FAILURES {
            t.fail("a", t0);
            assert!(t.check("a", t0).is_ok(), "failure {k} is free");
        }
        t.fail("a", t0);
        assert_eq!(t.check("a", t0), Err(Duration::from_secs(1)));
        // A try counted but never checked is taken back.
        t.undo("a");
        assert!(t.check("a", t0).is_ok());
        t.fail("a", t0);
        assert!(t.check("b", t0).is_ok(), "per address");
        let later = t0 + Duration::from_millis(1500);
        assert!(t.check("a", later).is_ok(), "the wait is over");
        t.fail("a", later);
        assert_eq!(t.check("a", later), Err(Duration::from_secs(2)));
        t.succeed("a");
        assert!(t.check("a", later).is_ok());
        // Forgotten after FORGET_AFTER: the count starts over.
        for _ in 0..10 {
            t.fail("c", t0);
        }
        let much_later = t0 + FORGET_AFTER + Duration::from_secs(1);
        assert!(t.check("c", much_later).is_ok());
        t.fail("c", much_later);
        assert!(t.check("c", much_later).is_ok(), "a first failure again");
    }

    #[test]
    fn memory_is_bounded_by_the_oldest_address_going_first() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for k in 0..MAX_ADDRESSES + 50 {
            t.fail(&format!("user{k}"), t0 + Duration::from_millis(k as u64));
        }
        assert_eq!(t.len(), MAX_ADDRESSES);
        let now = t0 + Duration::from_secs(20);
        for _ in 0..=FREE_FAILURES {
            t.fail("last", now);
        }
        assert!(t.check("last", now).is_err(), "a new address is still counted");
        assert!(t.len() <= MAX_ADDRESSES);
    }
}
