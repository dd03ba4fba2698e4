//! Failed logins, slowed down twice over: per address (the email or username tried), and
//! per client (the IP address the tries come from, an IPv6 one by its /64, which one
//! machine usually has whole), across every address it tries, so that trying one password on
//! many users is as slow as trying many passwords on one. Each count works alike: the first
//! `FREE_FAILURES` failures cost nothing; each one after makes the next try wait twice as long
//! as the last (1 s, 2 s, 4 s, ... at most `MAX_WAIT`), and a try during the wait is refused
//! without checking the password. A client's wait holds only its own tries: another client's
//! logins are never refused for it. A count is forgotten `FORGET_AFTER` after its last
//! failure; an address's also on a successful login (a client's is not, so that a client
//! cannot wipe its failures by logging in to an account of its own between tries).
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an address may have before it waits.
pub const FREE_FAILURES: u32 = 3;
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long an address's failures are remembered after its last.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The most addresses (or clients) remembered (about 150 bytes each: 15 MB at most); beyond
/// it, the one whose last failure is oldest is forgotten first, so that a client trying
/// endless addresses cannot exhaust memory. Failures are counted only for tries whose password was checked,
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

/// One count of failures per key: per address, or per client.
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

/// Why a login try is refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address tried must wait.
    Address(Duration),
    /// The client trying must wait (its failures across addresses).
    Client(Duration),
}

/// The key a client's failures are counted under: its IPv4 address, or its IPv6 address's
/// /64 (an IPv4 address mapped into IPv6 counts as itself).
pub fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Failed logins per address and per client. `client` is `None` when the peer is unknown
/// (not over TCP): then only the address counts.
#[derive(Debug, Default)]
pub struct Logins {
    addresses: Throttle,
    clients: Throttle,
}

impl Logins {
    /// `Err` when `address` or `client` must wait before trying again (the longer wait
    /// when both must).
    pub fn check(&self, address: &str, client: Option<&str>, now: Instant) -> Result<(), Refused> {
        let by_address = self.addresses.check(address, now).err();
        let by_client = client.and_then(|c| self.clients.check(c, now).err());
        match (by_address, by_client) {
            (None, None) => Ok(()),
            (Some(a), Some(c)) if c > a => Err(Refused::Client(c)),
            (Some(a), _) => Err(Refused::Address(a)),
            (None, Some(c)) => Err(Refused::Client(c)),
        }
    }

    /// Counts a failed try of `address` from `client`.
    pub fn fail(&mut self, address: &str, client: Option<&str>, now: Instant) {
        self.addresses.fail(address, now);
        if let Some(c) = client {
            self.clients.fail(c, now);
        }
    }

    /// Takes back the last `fail`: its try was counted but never checked.
    pub fn undo(&mut self, address: &str, client: Option<&str>) {
        self.addresses.undo(address);
        if let Some(c) = client {
            self.clients.undo(c);
        }
    }

    /// A successful login: the address starts afresh; the client's try, counted before the
    /// check, is taken back (a success is no failure), while its earlier failures stay.
    pub fn succeed(&mut self, address: &str, client: Option<&str>) {
        self.addresses.succeed(address);
        if let Some(c) = client {
            self.clients.undo(c);
        }
    }

    /// How many addresses and clients are remembered.
    pub fn len(&self) -> (usize, usize) {
        (self.addresses.len(), self.clients.len())
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

    #[test]
    fn a_client_trying_many_addresses_waits_and_other_clients_do_not() {
        let t0 = Instant::now();
        let mut t = Logins::default();
        let (spray, other) = (Some("10.0.0.1"), Some("10.0.0.2"));
        for k in 0..=FREE_FAILURES {
            assert_eq!(t.check(&format!("user{k}"), spray, t0), Ok(()), "failure {k} is free");
            t.fail(&format!("user{k}"), spray, t0);
        }
        // A fresh address from the same client waits; the same address from another does not.
        assert_eq!(t.check("fresh", spray, t0), Err(Refused::Client(Duration::from_secs(1))));
        assert_eq!(t.check("fresh", other, t0), Ok(()));
        assert_eq!(t.check("user0", other, t0), Ok(()));
        assert_eq!(t.check("fresh", None, t0), Ok(()), "an unknown peer counts by address alone");
        // A try counted but never checked is taken back from both counts.
        t.undo("user3", spray);
        assert_eq!(t.check("fresh", spray, t0), Ok(()));
        t.fail("user3", spray, t0);
        // A success forgets the address and takes back its own try (counted before the
        // check), not the client's failures.
        t.fail("user3", spray, t0);
        t.succeed("user3", spray);
        assert_eq!(t.check("user3", other, t0), Ok(()));
        assert_eq!(t.check("user3", spray, t0), Err(Refused::Client(Duration::from_secs(1))));
        // Doubling, as per address.
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(t.check("fresh", spray, later), Ok(()));
        t.fail("fresh", spray, later);
        assert_eq!(t.check("other", spray, later), Err(Refused::Client(Duration::from_secs(2))));
        // Both wait: the longer one is said.
        for _ in 0..=FREE_FAILURES + 2 {
            t.fail("one", other, later);
        }
        assert_eq!(t.check("one", spray, later), Err(Refused::Address(Duration::from_secs(4))));
        assert_eq!(t.len(), (5, 2));
    }

    #[test]
    fn successful_logins_never_make_a_client_wait() {
        let t0 = Instant::now();
        let mut t = Logins::default();
        for k in 0..20 {
            assert_eq!(t.check("user", Some("10.0.0.1"), t0), Ok(()), "login {k}");
            t.fail("user", Some("10.0.0.1"), t0);
            t.succeed("user", Some("10.0.0.1"));
        }
        assert_eq!(t.len(), (0, 0));
    }

    #[test]
    fn clients_are_ipv4_addresses_and_ipv6_64s() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
