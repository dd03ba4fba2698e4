//! The origins whose web pages may call the API from a browser (`--cors-origin`), read and
//! checked as browsers send them, and the refusal of state-changing requests that a browser
//! marks as coming from a page on another origin (`cross_origin`). Pure: the API's
//! middleware applies them.

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

/// What a browser says of where a request comes from, and what it asks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `Sec-Fetch-Site`: `same-origin`, `same-site`, `cross-site` or `none`.
    pub fetch_site: Option<&'a str>,
    /// `Origin`: the page's origin, `null` for an opaque one.
    pub origin: Option<&'a str>,
    /// `Host`: where the browser sent the request.
    pub host: Option<&'a str>,
}

/// Why a request was taken as coming from a page on another origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossOrigin {
    #[error("the browser marked this request as coming from a page on another origin (Sec-Fetch-Site: {fetch_site}{})", origin_note(.origin))]
    FetchSite { fetch_site: String, origin: Option<String> },
    #[error("this request comes from a page on another origin (Origin: {origin}, Host: {host})")]
    OriginNotHost { origin: String, host: String },
}

fn origin_note(origin: &Option<String>) -> String {
    origin.as_ref().map_or_else(String::new, |o| format!(", Origin: {o}"))
}

/// Whether a browser's request may change state, by the algorithm of Go 1.25's
/// `net/http.CrossOriginProtection`, as it is: GET, HEAD and OPTIONS always pass (they must
/// not change state); so does an `Origin` among `trusted` (`--cors-origin`; `*` trusts any);
/// a `Sec-Fetch-Site` of `same-origin` or `none` (the user's own navigation) passes and any
/// other is refused; without it (an old browser, or not a browser), a request without
/// `Origin` passes (curl, workers, scripts), and one whose `Origin` names the `Host` it was
/// sent to passes. Anything else a browser marked is refused.
///
/// Host names are compared without regard to case (browsers send both in lower case; Go
/// compares them as sent).
pub fn cross_origin(req: &Request, trusted: &[String]) -> Result<(), CrossOrigin> {
    if matches!(req.method, "GET" | "HEAD" | "OPTIONS") {
        return Ok(());
    }
    let origin = req.origin.map(str::trim).filter(|o| !o.is_empty());
    let is_trusted = |o: &str| trusted.iter().any(|t| t == "*" || t.eq_ignore_ascii_case(o));
    if origin.is_some_and(is_trusted) || trusted.iter().any(|t| t == "*") {
        return Ok(());
    }
    match req.fetch_site.map(str::trim).filter(|s| !s.is_empty()) {
        Some(site) if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") => Ok(()),
        Some(site) => Err(CrossOrigin::FetchSite { fetch_site: site.to_string(), origin: origin.map(str::to_string) }),
        None => {
            let Some(origin) = origin else { return Ok(()) };
            let host = req.host.map(str::trim).unwrap_or("");
            // The origin's host[:port], after its scheme (an opaque `null` has none).
            let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
            match origin_host {
                Some(h) if !host.is_empty() && h.eq_ignore_ascii_case(host) => Ok(()),
                _ => Err(CrossOrigin::OriginNotHost { origin: origin.to_string(), host: host.to_string() }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go 1.25's table (net/http/csrf_test.go), case by case, and the trusted origins.
    #[test]
    fn cross_origin_requests_are_told_as_go_tells_them() {
        let trusted = vec!["https://trusted.example".to_string()];
        let req = |method, fetch_site, origin, host| Request { method, fetch_site, origin, host };
        let host = Some("example.com");
        for (why, r) in [
            ("a safe method", req("GET", Some("cross-site"), Some("https://evil.example"), host)),
            ("HEAD", req("HEAD", Some("cross-site"), None, host)),
            ("OPTIONS", req("OPTIONS", Some("cross-site"), None, host)),
            ("same-origin", req("POST", Some("same-origin"), None, host)),
            ("the user's own navigation", req("POST", Some("none"), None, host)),
            ("no headers: not a browser", req("POST", None, None, host)),
            ("an Origin naming the Host", req("POST", None, Some("https://example.com"), host)),
            ("with its port", req("PUT", None, Some("http://127.0.0.1:6789"), Some("127.0.0.1:6789"))),
            ("in any case", req("PUT", None, Some("http://Example.com"), host)),
            ("a trusted origin", req("POST", Some("cross-site"), Some("https://trusted.example"), host)),
            ("a trusted old browser", req("DELETE", None, Some("https://trusted.example"), host)),
        ] {
            assert_eq!(cross_origin(&r, &trusted), Ok(()), "{why}");
        }
        for (why, r) in [
            ("cross-site", req("POST", Some("cross-site"), Some("https://evil.example"), host)),
            ("same-site is another origin", req("POST", Some("same-site"), Some("https://a.example.com"), host)),
            ("cross-site without Origin", req("PUT", Some("cross-site"), None, host)),
            ("even if Origin names the Host", req("POST", Some("cross-site"), Some("https://example.com"), host)),
            ("an Origin not the Host", req("POST", None, Some("https://evil.example"), host)),
            ("another port", req("POST", None, Some("http://127.0.0.1:9999"), Some("127.0.0.1:6789"))),
            ("an opaque origin", req("DELETE", None, Some("null"), host)),
            ("no Host", req("POST", None, Some("https://example.com"), None)),
            ("an untrusted origin", req("POST", Some("cross-site"), Some("https://trusted.example.evil"), host)),
        ] {
            assert!(cross_origin(&r, &trusted).is_err(), "{why}");
        }
        // `*` trusts every origin: the protection is off.
        let any = vec!["*".to_string()];
        assert_eq!(cross_origin(&req("POST", Some("cross-site"), Some("https://evil.example"), host), &any), Ok(()));
        let e = cross_origin(&req("POST", Some("cross-site"), Some("https://evil.example"), host), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the browser marked this request as coming from a page on another origin (Sec-Fetch-Site: cross-site, \
             Origin: https://evil.example)"
        );
    }

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
