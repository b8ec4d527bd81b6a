//! The built-in endpoint's scheduler and its Prometheus metrics.
//!
//! With `--max-num-seqs N`, at most N requests generate at once; the others wait in a FIFO
//! queue, as vLLM's scheduler keeps them, and their time to first token includes the wait. The
//! queue is a ticket counter: request t (in arrival order) starts once N requests before it have
//! finished, so no list is kept and threads share two atomics. `GET /metrics` exports what
//! vLLM's `/metrics` does for it: running and waiting requests, and the prompt and generation
//! token counters, in the Prometheus text format.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// The queue and the counters, shared by the endpoint's threads.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// `--max-num-seqs` (0: no queue; every request generates at once).
    max_num_seqs: u64,
    /// Tickets handed out, and requests that have finished (queue only).
    issued: AtomicU64,
    finished: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
}

/// A request's place among those generating: it leaves the batch when dropped.
pub struct Seat<'a>(Option<&'a Scheduler>);

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.finished.fetch_add(1, Relaxed);
        }
    }
}

impl Scheduler {
    pub fn new(max_num_seqs: usize) -> Self {
        Self {
            max_num_seqs: max_num_seqs as u64,
            ..Self::default()
        }
    }

    /// Waits (in arrival order) until fewer than `--max-num-seqs` requests are generating.
    pub async fn enter(&self) -> Seat<'_> {
        if self.max_num_seqs == 0 {
            return Seat(None);
        }
        let ticket = self.issued.fetch_add(1, Relaxed);
        // Ticket t starts once t − N + 1 requests have finished. Polled at 1 ms: a queued
        // request waits far longer than that.
        while self.finished.load(Relaxed) + self.max_num_seqs <= ticket {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        Seat(Some(self))
    }

    /// Requests generating, and waiting; `in_system` counts every admitted request (without a
    /// queue, all of them generate).
    pub fn running_waiting(&self, in_system: &AtomicUsize) -> (u64, u64) {
        if self.max_num_seqs == 0 {
            return (in_system.load(Relaxed) as u64, 0);
        }
        let queued = self
            .issued
            .load(Relaxed)
            .saturating_sub(self.finished.load(Relaxed));
        let running = queued.min(self.max_num_seqs);
        (running, queued - running)
    }

    pub fn add_prompt_tokens(&self, n: u64) {
        self.prompt_tokens.fetch_add(n, Relaxed);
    }

    pub fn add_generation_tokens(&self, n: u64) {
        self.generation_tokens.fetch_add(n, Relaxed);
    }

    /// The `/metrics` text, with vLLM's names and a `model_name` label.
    pub fn render(&self, model: &str, in_system: &AtomicUsize) -> String {
        let (running, waiting) = self.running_waiting(in_system);
        let model = label_value(model);
        let series = [
            (
                "vllm:num_requests_running",
                "gauge",
                "Number of requests in model execution batches.",
                running,
            ),
            (
                "vllm:num_requests_waiting",
                "gauge",
                "Number of requests waiting to be processed.",
                waiting,
            ),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                self.prompt_tokens.load(Relaxed),
            ),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                self.generation_tokens.load(Relaxed),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in series {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{model_name=\"{model}\"}} {v}.0\n"
            ));
        }
        out
    }
}

/// `value` escaped as a Prometheus label value.
pub fn label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_past_the_batch_wait_in_order_and_are_counted() {
        let s = Scheduler::new(2);
        let active = AtomicUsize::new(0);
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = s.enter().await;
            let _b = s.enter().await;
            // A third would wait: its ticket is issued, and it is counted as waiting.
            s.issued.fetch_add(1, Relaxed);
            assert_eq!(s.running_waiting(&active), (2, 1));
            drop(a);
            assert_eq!(s.running_waiting(&active), (2, 0));
        });
        s.add_prompt_tokens(10);
        s.add_generation_tokens(3);
        // The second has finished too; the third (a bare ticket) generates.
        let text = s.render("m", &active);
        assert!(
            text.contains("vllm:num_requests_running{model_name=\"m\"} 1.0\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE vllm:generation_tokens_total counter\n"));
        assert!(text.contains("vllm:prompt_tokens_total{model_name=\"m\"} 10.0\n"));
        // Without a queue, everything admitted runs.
        let free = Scheduler::new(0);
        active.store(7, Relaxed);
        assert_eq!(free.running_waiting(&active), (7, 0));
    }
}
