//! Endpoint URLs as users write them: `http(s)://host[:port]/path[?query]`, IPv6 literals in
//! brackets. Parsed and resolved once before the run (DNS never runs on a core's hot path).

use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://`.
    pub tls: bool,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Request target: path plus query, never empty.
    pub target: String,
    /// Value of the `Host` header: as written, with brackets and a non-default port.
    pub authority: String,
}

impl Endpoint {
    /// Parses `url`; the error says what is wrong and what is expected.
    pub fn parse(url: &str) -> Result<Self, String> {
        let expect = "expected a URL like http://127.0.0.1:8000/v1/chat/completions";
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else {
            return Err(format!("'{url}': unsupported or missing scheme; {expect}"));
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "'{url}': the path contains spaces or control characters"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "'{url}': credentials in the URL are not supported; pass the key with --api-key"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let close = v6
                .find(']')
                .ok_or_else(|| format!("'{url}': unclosed '[' in the IPv6 address; {expect}"))?;
            let host = &v6[..close];
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("'{url}': '{host}' is not an IPv6 address"));
            }
            let port = match &v6[close + 1..] {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("'{url}': unexpected text after ']'; {expect}"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("'{url}': the host is missing; {expect}"));
        }
        if host.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'/') {
            return Err(format!("'{url}': the host contains invalid characters"));
        }
        let port =
            match port {
                None if tls => 443,
                None => 80,
                Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                    format!("'{url}': port '{p}' is not a number from 1 to 65535")
                })?,
            };
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            target,
            authority: authority.to_string(),
        })
    }

    /// Resolves the host once, before the run; addresses are tried in this order.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve host '{}': {e}", self.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("host '{}' resolved to no address", self.host));
        }
        Ok(addrs)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    // Byte-wise: `s` may hold any character, and slicing it at a byte inside one would panic.
    let head = s.as_bytes().get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes())
        .then(|| s.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_users_write() {
        let e = Endpoint::parse("http://127.0.0.1:8000/v1/chat/completions").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.target.as_str()),
            ("127.0.0.1", 8000, "/v1/chat/completions")
        );
        assert_eq!(e.authority, "127.0.0.1:8000");
        let e = Endpoint::parse("HTTP://example.com").unwrap();
        assert_eq!((e.port, e.target.as_str()), (80, "/"));
        let e = Endpoint::parse("http://[::1]:9000/v1/chat/completions?api-version=2024").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.target, "/v1/chat/completions?api-version=2024");
        assert_eq!(e.authority, "[::1]:9000");
        assert_eq!(Endpoint::parse("http://h?x=1").unwrap().target, "/?x=1");
        let e = Endpoint::parse("https://[::1]:8443/v1/chat/completions").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("::1", 8443));
        assert_eq!(
            Endpoint::parse("https://api.example.com/v1").unwrap().port,
            443
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("ftp://x/", "unsupported"),
            ("127.0.0.1:8000/v1", "scheme"),
            ("http://:80/", "host is missing"),
            ("http://h:99999/", "port"),
            ("http://[::1/", "unclosed"),
            ("ħttp://x/", "unsupported"),
            ("httpé://x/", "unsupported"),
            ("http://u:p@h/", "credentials"),
            ("http://h/a b", "spaces"),
        ] {
            let err = Endpoint::parse(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
        // Any text at all: an answer, never a panic.
        for url in [
            "http://é/",
            "https://[é]:1/",
            "h",
            "ĥttps://",
            "http://x:é/",
            "é",
        ] {
            let _ = Endpoint::parse(url);
            let _ = crate::foundation::secret::mask_url(url);
        }
    }

    #[test]
    fn resolves_loopback() {
        let e = Endpoint::parse("http://localhost:1/").unwrap();
        assert!(!e.resolve().unwrap().is_empty());
    }
}
