//! The scraper: a thread of its own (never a client core) that GETs `/metrics` about once a
//! second over its own connection, with its own timeout, and keeps each scrape's values. A
//! failing or slow scrape never disturbs the run: it is counted, and warned about once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Scrape, Selection};
use crate::foundation::clock::now_ns;
pub use crate::http::blocking::Target;
use crate::http::blocking::{call, Call};

/// One GET of the metrics text, within `timeout` in all.
pub fn fetch(target: &Target, timeout: Duration) -> Result<String, String> {
    let (status, body) = call(
        &Call {
            method: "GET",
            target,
            headers: "Accept: text/plain\r\n",
            body: b"",
        },
        timeout,
    )?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
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
                            let values = selection.pick(&crate::servermetrics::prometheus::parse(&text));
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
