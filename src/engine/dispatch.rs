//! An arrival, from its intended send time to the end of its task.
//!
//! Data flow: when an arrival falls due, [`dispatch_due`] — called by the core's pacer *and* by
//! every request task after each read — sends it at once: it takes an idle pooled connection and
//! writes the request with a non-blocking `send` (`request::send_now`), so the request leaves
//! when it is due even while the core is busy with other streams (a spawned task would only start
//! after every task queued before it). It then spawns the arrival's task: its request
//! (`request::complete`: connect if needed, the exchange, the outcome recorded), or, with
//! sessions, the session (`session::run`: the first turn, then the later ones). Every latency is measured from
//! the intended time, so a client that falls behind shows it instead of hiding it (no
//! coordinated omission).

use std::cell::RefCell;
use std::rc::Rc;

use super::core_state::Core;
use super::request::{complete, send_now, Ticket};
use super::session;
use crate::foundation::clock::{now_ns, thread_cpu_ns};
use crate::recording::recorder::Recorder;
use crate::workload::prepared::RequestBuf;

/// The arrival due next, taken off the core's queue.
struct Due {
    intended_ns: u64,
    sample: usize,
    endpoint: usize,
    rec: Rc<RefCell<Recorder>>,
    /// `--max-concurrency` held it back.
    waited: bool,
    warmup: bool,
}

/// Takes the next arrival off the queue if it is due by `now` and the concurrency cap lets it
/// go; `None` otherwise (nothing due, or held back by the cap: then the arrivals that waited
/// are noted).
fn next_due(core: &Core, now: u64) -> Option<Due> {
    let mut s = core.queue.borrow_mut();
    let s = &mut *s;
    let a = *s.arrivals.get(s.next)?;
    if s.start_ns + a.offset_ns > now {
        return None;
    }
    if core.capped() {
        // Held back by --max-concurrency: remember which arrivals waited (the scan only moves
        // forward, so this costs O(1) per arrival over the level).
        s.due_seen = s.due_seen.max(s.next);
        while s
            .arrivals
            .get(s.due_seen)
            .is_some_and(|a| s.start_ns + a.offset_ns <= now)
        {
            s.due_seen += 1;
        }
        return None;
    }
    crate::rt::note_work();
    let i = s.next;
    s.next += 1;
    let warmup = i < s.measured_from;
    if i == s.measured_from && s.measured_from > 0 {
        s.cpu_at_window_ns = Some(thread_cpu_ns());
    }
    let rec = if warmup { &s.warmup_rec } else { &s.rec };
    Some(Due {
        intended_ns: s.start_ns + a.offset_ns,
        sample: a.sample as usize,
        endpoint: a.endpoint as usize,
        rec: rec.clone(),
        waited: i < s.due_seen,
        warmup,
    })
}

/// Sends every arrival of this core whose intended time has come by `now` (a time just read
/// from the clock; it is re-read after each send).
pub fn dispatch_due(core: &Rc<Core>, mut now: u64) {
    if crate::foundation::interrupt::requested() {
        // Ctrl-C: nothing more is sent.
        return;
    }
    while let Some(due) = next_due(core, now) {
        core.inflight.set(core.inflight.get() + 1);
        let request = RequestBuf::new(&core.requests.borrow(), due.sample);
        let first = send_now(core, &due.rec, due.endpoint, &request, now);
        // Without sessions in the run, nothing of them is looked up.
        let plan = core.sessions.as_ref().and_then(|_| core.session_plan());
        let mut ticket = Ticket {
            intended_ns: due.intended_ns,
            sent_ns: None,
            sample: due.sample,
            endpoint: due.endpoint,
            warmup: due.warmup,
            waited: due.waited,
            turn: u32::from(plan.is_some()),
            cancel_at_ns: core.cancel_at(due.sample, due.intended_ns),
        };
        if first.is_some() {
            ticket.record_send(&due.rec, now);
        }
        // Detached: the level's end waits on `Core::inflight` instead of the handle, so a
        // finished request's task (~3.5 KiB) is freed at once and its memory reused by the next
        // one. Keeping every handle to the level's end held them all: the heap grew by a fresh,
        // page-faulting 16 KiB every few requests (22 MB per level at 3,000 requests/s).
        let rec = due.rec;
        match plan {
            None => drop(monoio::spawn(complete(
                core.clone(),
                rec,
                ticket,
                request,
                first,
                None,
            ))),
            Some(plan) => drop(monoio::spawn(session::run(
                core.clone(),
                rec,
                ticket,
                request,
                first,
                plan,
            ))),
        }
        now = now_ns();
    }
}
