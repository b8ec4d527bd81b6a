//! The scraper: a thread of its own (never a client core) that GETs `/metrics` about once a
//! second over its own connection, with its own timeout, and keeps each scrape's values. A
//! failing or slow scrape never disturbs the run: it is counted, and warned about once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Scrape, Selection};
use crate::clock::now_ns;
use crate::http::body::BodyDecoder;
use crate::http::head::parse_head;
use crate::http::url::Endpoint;

/// The largest `/metrics` body read (vLLM's is ~100 KB).
const MAX_BODY: usize = 16 << 20;

/// Where to scrape: the parsed URL and its resolved addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    pub addrs: Vec<SocketAddr>,
}

impl Target {
    /// `--server-metrics URL`: an `http://` URL whose host resolves.
    pub fn parse(url: &str) -> Result<Self, String> {
        let endpoint = Endpoint::parse(url)?;
        if endpoint.tls {
            return Err(format!("'{url}': only http:// is supported for metrics"));
        }
        let addrs = endpoint.resolve()?;
        Ok(Self { endpoint, addrs })
    }
}

/// One GET of the metrics text, within `timeout` in all.
pub fn fetch(target: &Target, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addr = target.addrs.first().ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(addr, left()).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let e = &target.endpoint;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nUser-Agent: qpsbench/{}\r\nConnection: close\r\n\r\n",
        e.target,
        e.authority,
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head = loop {
        if let Some(h) = parse_head(&buf).map_err(|e| format!("bad response head: {e:?}"))? {
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
    if head.status != 200 {
        return Err(format!("HTTP {}", head.status));
    }
    let mut body = Vec::new();
    let mut decoder = BodyDecoder::new(head.framing);
    let mut pending = buf.split_off(head.len);
    loop {
        let mut at = 0;
        while at < pending.len() && !decoder.is_done() {
            let (used, data) = decoder
                .decode(&pending[at..])
                .map_err(|e| format!("{e:?}"))?;
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
            decoder.eof().map_err(|e| format!("{e:?}"))?;
            break;
        }
        pending = chunk[..n].to_vec();
    }
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())
}

/// The running scraper.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    scrapes: Arc<Mutex<Vec<Scrape>>>,
    errors: Arc<AtomicU64>,
}

impl Scraper {
    /// Starts scraping `target` every `period`, each scrape bounded by `timeout`.
    pub fn start(
        target: Target,
        selection: Selection,
        period: Duration,
        timeout: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let (st, sc, er) = (stop.clone(), scrapes.clone(), errors.clone());
        let thread = std::thread::Builder::new()
            .name("qpsbench-metrics".into())
            .spawn(move || {
                let mut warned = false;
                while !st.load(Relaxed) {
                    let started = Instant::now();
                    match fetch(&target, timeout) {
                        Ok(text) => {
                            let values = selection.pick(&crate::prometheus::parse(&text));
                            let scrape = Scrape { t_ns: now_ns(), values };
                            sc.lock().unwrap_or_else(|e| e.into_inner()).push(scrape);
                        }
                        Err(e) => {
                            er.fetch_add(1, Relaxed);
                            if !warned {
                                warned = true;
                                eprintln!("warning: --server-metrics: a scrape failed ({e}); the run goes on, and failures are counted in server_metrics_errors");
                            }
                        }
                    }
                    // About once a period, waking often enough to stop promptly.
                    while !st.load(Relaxed) && started.elapsed() < period {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .ok();
        Self {
            stop,
            thread,
            scrapes,
            errors,
        }
    }

    /// The scrapes taken between `from_ns` and `to_ns` (monotonic), in time order.
    pub fn between(&self, from_ns: u64, to_ns: u64) -> Vec<Scrape> {
        let all = self.scrapes.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .filter(|s| (from_ns..=to_ns).contains(&s.t_ns))
            .cloned()
            .collect()
    }

    /// Failed scrapes so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
