//! One blocking HTTP/1.1 exchange on a connection of its own, within one timeout: for the side
//! channels that run beside the load and never on a client core — the server's `/metrics`
//! (`servermetrics::scrape`) and its prefix-cache reset (`bench::reset`). Plain `http://` only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::body::BodyDecoder;
use super::head::parse_head;
use super::url::Endpoint;

/// The largest body read (vLLM's `/metrics` is ~100 KB).
const MAX_BODY: usize = 16 << 20;

/// A plain-HTTP URL of a side channel, parsed and resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    pub addrs: Vec<SocketAddr>,
}

impl Target {
    /// An `http://` URL whose host resolves.
    pub fn parse(url: &str) -> Result<Self, String> {
        let endpoint = Endpoint::parse(url)?;
        if endpoint.tls {
            return Err(format!("'{url}': only http:// is supported here"));
        }
        let addrs = endpoint.resolve()?;
        Ok(Self { endpoint, addrs })
    }

    /// The same server, at `path` (with its query).
    pub fn at(&self, path: &str) -> Self {
        let mut t = self.clone();
        t.endpoint.target = path.to_string();
        t
    }
}

/// A request: the method, where to, extra header lines (each ending in CRLF), a body.
pub struct Call<'a> {
    pub method: &'a str,
    pub target: &'a Target,
    pub headers: &'a str,
    pub body: &'a [u8],
}

/// Sends `call` and reads the whole answer: (status, body). The connection is closed after.
pub fn call(c: &Call<'_>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addr = c.target.addrs.first().ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(addr, left()).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let e = &c.target.endpoint;
    let length = if c.body.is_empty() && c.method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", c.body.len())
    };
    let req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n{}User-Agent: qpsbench/{}\r\n{length}Connection: close\r\n\r\n",
        c.method,
        e.target,
        e.authority,
        c.headers,
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(req.as_bytes())
        .and_then(|()| s.write_all(c.body))
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head = loop {
        if let Some(h) = parse_head(&buf).map_err(|e| format!("bad response head: {e}"))? {
            break h;
        }
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 || buf.len() > MAX_BODY {
            return Err("closed before the response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut body = Vec::new();
    let mut decoder = BodyDecoder::new(head.framing);
    let mut pending = buf.split_off(head.len);
    loop {
        let mut at = 0;
        while at < pending.len() && !decoder.is_done() {
            let (used, data) = decoder.decode(&pending[at..]).map_err(|e| e.to_string())?;
            body.extend_from_slice(data.unwrap_or_default());
            at += used;
            if used == 0 {
                break;
            }
        }
        if decoder.is_done() || body.len() > MAX_BODY {
            break;
        }
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            decoder.eof().map_err(|e| e.to_string())?;
            break;
        }
        pending = chunk[..n].to_vec();
    }
    Ok((head.status, body))
}
