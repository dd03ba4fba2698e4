//! The names a server answers to (`Host`), against DNS rebinding: a page on a site whose name
//! its owner points at 127.0.0.1 is, to the browser, on that site's origin, so it may read
//! and write a loopback server's API as its own unless the server refuses names it is not
//! meant to be reached by. Pure: the API's middleware applies `Hosts`.
//!
//! A server answers to any IP address (a `Host` that is an address names no site whose DNS
//! someone else controls: a page there is on the server's own origin), `localhost` and names
//! under `.localhost` (browsers resolve them to loopback themselves, so no one else's DNS can
//! hand them out), and the names given with `--allowed-host`; `*` allows any. A server bound to
//! an address that is not loopback allows any name unless `--allowed-host` is given: it is
//! meant to be reached from elsewhere, by names it cannot know.

use std::net::IpAddr;

/// `--allowed-host`: `*` (any), a host name (`backfilld.internal`), a name with a leading
/// dot for it and every name under it (`.example.com`), or an IP address (IPv6 with or
/// without brackets); without a port, since ports are not compared. Returned in lower case.
pub fn parse(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_string());
    }
    let err = |why: &str| {
        format!(
            "--allowed-host '{s}': {why}; expected a host name as clients reach the server by (no scheme, no \
             port), e.g. backfilld.internal, .example.com for it and the names under it, an IP address, or * for any"
        )
    };
    if s.contains("://") {
        return Err(err("a host name has no scheme"));
    }
    let lower = s.to_ascii_lowercase();
    let bare = lower.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&lower);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name = lower.strip_prefix('.').unwrap_or(&lower).trim_end_matches('.');
    if name.contains(':') {
        return Err(err("ports are not compared: give the name alone"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(err("not a host name"));
    }
    Ok(if lower.starts_with('.') { format!(".{name}") } else { name.to_string() })
}

/// The names a server answers to.
#[derive(Debug, Clone)]
pub struct Hosts {
    any: bool,
    /// Exact names and addresses from `--allowed-host`, and names with a leading dot.
    allowed: Vec<String>,
}

impl Hosts {
    /// The names a server bound to `bound` answers to, with `allowed` (`--allowed-host`,
    /// already through `parse`).
    pub fn new(allowed: &[String], bound: IpAddr) -> Hosts {
        let any = allowed.iter().any(|a| a == "*") || (allowed.is_empty() && !bound.to_canonical().is_loopback());
        Hosts { any, allowed: allowed.to_vec() }
    }

    /// Whether every name is answered.
    pub fn any(&self) -> bool {
        self.any
    }

    /// Whether a request whose `Host` header is `host` is answered: its name (without the
    /// port, in any case, an IPv6 address in brackets) is one of the server's.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = name_of(host) else { return false };
        if name.parse::<IpAddr>().is_ok() {
            // Whichever of the machine's addresses (a server bound to 0.0.0.0 has several).
            return true;
        }
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.ends_with(".localhost")
            || self.allowed.iter().any(|a| match a.strip_prefix('.') {
                Some(domain) => name == domain || name.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.')),
                None => *a == name,
            })
    }

    /// What the server answers to, for a refusal's message.
    pub fn describe(&self) -> String {
        let mut names = vec!["IP addresses".to_string(), "localhost (and the names under it)".to_string()];
        names.extend(self.allowed.iter().map(|a| match a.strip_prefix('.') {
            Some(domain) => format!("{domain} (and the names under it)"),
            None => a.clone(),
        }));
        let last = names.pop().unwrap_or_default();
        format!("{} and {last}", names.join(", "))
    }
}

/// The host name of a `Host` header, in lower case: without its port, an IPv6 address
/// without its brackets; `None` when it is not one.
pub fn name_of(host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            if !(after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))) {
                return None;
            }
            v6.to_string()
        }
        None => match host.split_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
            Some(_) => return None,
            None => host,
        },
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(allowed: &[&str], bound: &str) -> Hosts {
        let allowed: Vec<String> = allowed.iter().map(|a| parse(a).unwrap()).collect();
        Hosts::new(&allowed, bound.parse().unwrap())
    }

    #[test]
    fn a_loopback_server_answers_its_own_names_and_refuses_others() {
        let h = hosts(&[], "127.0.0.1");
        assert!(!h.any());
        for ok in [
            "127.0.0.1:6789",
            "127.0.0.1",
            "127.1.2.3:80",
            "localhost:6789",
            "LOCALHOST",
            "localhost.",
            "app.localhost:3000",
            "[::1]:6789",
            "[::1]",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in ["evil.example:6789", "localhost.evil.example", "evillocalhost", "", "127.0.0.1:x", "[::1", "[::1]x"]
        {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn allowed_hosts_add_names_and_star_allows_any() {
        let h = hosts(&["backfilld.internal", ".example.com", "10.0.0.5", "[fe80::1]"], "127.0.0.1");
        for ok in ["backfilld.internal:6789", "Example.com", "a.b.example.com:1", "10.0.0.5:6789", "[fe80::1]:80"] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in ["other.internal", "badexample.com", "evil.example"] {
            assert!(!h.allows(bad), "{bad}");
        }
        assert!(hosts(&["*"], "127.0.0.1").allows("evil.example"));
        assert!(hosts(&["*"], "127.0.0.1").any());
    }

    #[test]
    fn a_server_bound_elsewhere_answers_any_name_unless_told() {
        assert!(hosts(&[], "0.0.0.0").allows("backfilld.example.com:6789"));
        assert!(hosts(&[], "10.0.0.5").any());
        let told = hosts(&["backfilld.example.com"], "10.0.0.5");
        assert!(told.allows("backfilld.example.com:6789"));
        assert!(told.allows("10.0.0.5:6789"), "its bound address");
        assert!(told.allows("localhost:6789"));
        assert!(!told.allows("evil.example:6789"));
        // Bound to every interface: each of the machine's addresses (a health probe sends
        // the pod's), as any IP address, which no one else's DNS can stand for.
        let everywhere = hosts(&["backfilld.example.com"], "0.0.0.0");
        assert!(everywhere.allows("192.0.2.2:28771") && everywhere.allows("[2001:db8::7]:80"));
        assert_eq!(told.describe(), "IP addresses, localhost (and the names under it) and backfilld.example.com");
        assert_eq!(hosts(&[], "127.0.0.1").describe(), "IP addresses and localhost (and the names under it)");
    }

    #[test]
    fn allowed_hosts_are_read_as_names() {
        assert_eq!(parse(" Backfilld.Internal ").unwrap(), "backfilld.internal");
        assert_eq!(parse(".Example.com").unwrap(), ".example.com");
        assert_eq!(parse("[::1]").unwrap(), "::1");
        assert_eq!(parse("fe80::1").unwrap(), "fe80::1");
        assert_eq!(parse("*").unwrap(), "*");
        for bad in ["", ".", "http://a.com", "a.com:6789", "a b", "-a.com", "a..com", "*.a.com", "a/b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("a.com:1").unwrap_err().contains("ports are not compared"));
    }
}
