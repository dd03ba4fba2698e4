//! The origins whose web pages may call the API from a browser (`--cors-origin`), read and
//! checked as browsers send them. Pure: the API's CORS middleware applies them.

/// `--cors-origin`: `*` (any origin) or an origin as browsers send it, `scheme://host[:port]`
/// with no path; returned as browsers compare it (lower case, no trailing slash).
pub fn parse(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_string());
    }
    let err = |why: &str| {
        format!("--cors-origin '{s}': {why}; expected an origin as browsers send it, e.g. https://app.example.com or http://localhost:3000, or * for any")
    };
    let lower = s.trim_end_matches('/').to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else { return Err(err("no scheme")) };
    if scheme != "http" && scheme != "https" {
        return Err(err("the scheme is not http or https"));
    }
    // An IPv6 host is bracketed, colons inside; any other host has no colon.
    let (host, port) = match rest.find(']') {
        Some(end) if rest.starts_with('[') => match &rest[end + 1..] {
            "" => (rest, None),
            after => match after.strip_prefix(':') {
                Some(p) => (&rest[..=end], Some(p)),
                None => return Err(err("the host is not a host name or address (no path, query or user)")),
            },
        },
        _ => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    // A name or an IPv4 address: letters, digits, dots and hyphens; an IPv6 address: hex
    // digits and colons inside its brackets.
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')),
    };
    if !host_ok {
        return Err(err("the host is not a host name or address (no path, query or user)"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(err("the port is not a number from 1 to 65535"));
        }
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(parse("https://App.Example.com/").unwrap(), "https://app.example.com");
        assert_eq!(parse(" http://localhost:3000 ").unwrap(), "http://localhost:3000");
        assert_eq!(parse("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(parse("http://[::1]").unwrap(), "http://[::1]");
        assert_eq!(parse("*").unwrap(), "*");
        for bad in [
            "",
            "localhost:3000",
            "ftp://x",
            "https://",
            "https://a.com/path",
            "https://a.com?q",
            "https://u@a.com",
            "http://a.com:0",
            "http://a.com:99999",
            "http://a.com:x",
            "https://*.a.com",
            "http://a]b",
            "http://[::1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("ftp://x").unwrap_err().contains("https://app.example.com"));
    }
}
