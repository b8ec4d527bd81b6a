//! A core's thread: pins itself, builds its runtime, then runs each level's slice of arrivals —
//! a pacing loop that spawns one request task per arrival at its intended time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::core_state::{Core, CoreQueue, Slo};
use super::dispatch::dispatch_due;
use super::orders::{Command, CorePlan, CoreReady, IoDriver, RecvPath, Timeouts};
use super::pacer::Pacer;
use super::pool::Pool;
use crate::api::openai::ChunkParser;
use crate::foundation::clock::{now_ns, thread_cpu_ns};
use crate::http::conn::Target;
use crate::recording::outcome::ErrorKind;
use crate::recording::recorder::Recorder;
use crate::workload::prepared::Prepared;

/// Read-only run configuration shared by all cores (read once at thread start).
pub(crate) struct Shared {
    /// One per endpoint.
    pub targets: Vec<Target>,
    /// The requests until a level brings its own.
    pub requests: Arc<Prepared>,
    /// Connections each core may have open at once (its share of the open-file limit).
    pub max_open_per_core: usize,
    pub timeout: Duration,
    /// Each core's share of `--max-concurrency` (`usize::MAX`: none).
    pub max_inflight: Vec<usize>,
    pub save_requests: bool,
    pub busy_poll: bool,
    /// The receive path asked for (`QPSBENCH_RECV_PATH`).
    pub recv_path: RecvPath,
    pub slo: Slo,
    pub timeouts: Timeouts,
    /// Each core's live counters.
    pub live: Vec<Arc<crate::recording::live::LiveCounters>>,
    /// `--session-turns`: how sessions go.
    pub sessions: Option<super::session_plan::SessionPlan>,
    /// `--cancel-rate`: how sessions' later turns are abandoned.
    pub cancels: Option<super::cancel::CancelPlan>,
    pub reading: super::stream::Reading,
}

pub(crate) fn main(
    index: usize,
    core_id: Option<core_affinity::CoreId>,
    shared: Arc<Shared>,
    plans: mpsc::Receiver<Command>,
    results: mpsc::Sender<(Recorder, Recorder)>,
    ready: mpsc::Sender<Result<CoreReady, String>>,
) {
    // A thread that could not be pinned still runs; the engine warns and metadata says so.
    let pinned = core_id.is_some_and(core_affinity::set_for_current);
    // The runtime is built inside the thread that runs it: monoio runtimes cannot move.
    let mut rt = match crate::rt::build_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let driver = match rt {
        monoio::FusionRuntime::Uring(_) => IoDriver::IoUring,
        monoio::FusionRuntime::Legacy(_) => IoDriver::Epoll,
    };
    // The receive ring needs io_uring; where the kernel lacks what it needs, monoio reads.
    let recv_ring = driver == IoDriver::IoUring
        && shared.recv_path == RecvPath::Ring
        && rt
            .block_on(async { crate::rt::recv_ring::install() })
            .is_ok();
    let _ = ready.send(Ok(CoreReady {
        driver,
        pinned,
        recv_ring,
    }));
    let core = new_core(index, &shared, driver);
    let busy_poll = shared.busy_poll;
    while let Ok(cmd) = plans.recv() {
        // The pacing loop must be a spawned task, not the `block_on` future itself: monoio polls
        // a self-waking main future in a tight loop without running other tasks or reaping
        // completions, so a pacer spinning there would stall every request on the core.
        let core = core.clone();
        let rec = match cmd {
            Command::Level(mut plan) => {
                if let Some(r) = plan.requests.take() {
                    core.requests.replace(Rc::new(r));
                }
                rt.block_on(
                    async move { monoio::spawn(run_level(core, plan, driver, busy_poll)).await },
                )
            }
            Command::OpenConnections(n) => rt.block_on(async move {
                (
                    monoio::spawn(open_connections(core, n)).await,
                    Recorder::new(),
                )
            }),
            Command::Reset(requests) => {
                if let Some(r) = requests {
                    core.requests.replace(Rc::new(r));
                }
                // Dropped sockets are closed by the runtime: let it run once.
                let idle: Vec<_> = core.pools.iter().flat_map(Pool::drain).collect();
                rt.block_on(async move {
                    drop(idle);
                    crate::rt::yield_now().await;
                });
                (Recorder::new(), Recorder::new())
            }
        };
        if results.send(rec).is_err() {
            break;
        }
    }
    // The ring goes while the runtime that polls its fd is still there.
    crate::rt::recv_ring::uninstall();
}

/// Core `index`'s state, from the run's shared configuration.
fn new_core(index: usize, shared: &Shared, driver: IoDriver) -> Rc<Core> {
    Rc::new(Core {
        // The core's share of descriptors is split among its pools.
        pools: shared
            .targets
            .iter()
            .map(|t| Pool::new(t.clone(), shared.max_open_per_core / shared.targets.len()))
            .collect(),
        live: shared.live[index].clone(),
        chunks: RefCell::new(ChunkParser::new()),
        requests: RefCell::new(Rc::new(shared.requests.clone())),
        timeout: shared.timeout,
        queue: RefCell::new(CoreQueue::default()),
        max_inflight: shared.max_inflight[index],
        inflight: Cell::new(0),
        slot_waker: RefCell::new(None),
        idle_waker: RefCell::new(None),
        save_requests: shared.save_requests,
        index: index as u16,
        slo: shared.slo,
        connect_timeout: shared.timeouts.connect,
        ttft_timeout_ns: shared.timeouts.first_token.map(|d| d.as_nanos() as u64),
        idle_timeout_ns: shared.timeouts.idle.map(|d| d.as_nanos() as u64),
        sessions: shared.sessions.clone().map(Rc::new),
        extras: RefCell::new(Default::default()),
        cancels: shared.cancels.clone(),
        reading: shared.reading,
        precise_timers: driver == IoDriver::IoUring,
        dispatch: dispatch_due,
    })
}

/// Opens connections concurrently until `want` are idle on this core, spread over its
/// endpoints' pools.
async fn open_connections(core: Rc<Core>, want: usize) -> Recorder {
    let rec = Rc::new(RefCell::new(Recorder::new()));
    let per_pool = want.div_ceil(core.pools.len());
    let mut tasks = Vec::new();
    for (e, pool) in core.pools.iter().enumerate() {
        let need = per_pool.saturating_sub(pool.idle_count()).min(pool.room());
        tasks.extend((0..need).map(|_| {
            let (core, rec) = (core.clone(), rec.clone());
            monoio::spawn(async move {
                let pool = &core.pools[e];
                // Bounded like a request's connect, so a black-holed endpoint cannot stall the run.
                let limit = core.connect_timeout.min(core.timeout);
                let connect = monoio::time::timeout(limit, pool.connect()).await;
                let Ok(connect) = connect else {
                    rec.borrow_mut()
                        .record_error(ErrorKind::TimeoutConnect, None);
                    return;
                };
                match connect {
                    Ok((conn, t)) => {
                        rec.borrow_mut()
                            .record_connect(t.connect_ns, t.handshake_ns, pool.tls());
                        pool.put(conn, now_ns());
                    }
                    Err(e) => rec
                        .borrow_mut()
                        .record_error(ErrorKind::from_connect(e), None),
                }
            })
        }));
    }
    for t in tasks {
        t.await;
    }
    take_recorder(rec)
}

/// The recorder back from the tasks that shared it (all finished, so the Rc is unique).
fn take_recorder(rec: Rc<RefCell<Recorder>>) -> Recorder {
    Rc::try_unwrap(rec)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| rc.borrow().clone())
}

/// The recorder of a level's measured window: its window, its timeline, the core's live
/// counters (zeroed for the level), room for its send times.
fn measured_recorder(core: &Core, plan: &CorePlan) -> Recorder {
    let n = plan.arrivals.len();
    let mut measured = Recorder::new();
    if core.pools.len() > 1 {
        measured.endpoints = vec![Default::default(); core.pools.len()];
    }
    measured.window_end_ns = plan.window_end_ns;
    if core.sessions.is_some() && plan.extras.session_ids.is_some() {
        measured.turns = Some(Default::default());
    }
    measured.timeline = crate::recording::timeline::Timeline::new(plan.window_start_ns);
    core.live.reset();
    measured.live = Some(core.live.clone());
    measured
        .send_times_ns
        .reserve(n - plan.measured_from.min(n));
    measured
}

/// Runs this core's slice of a level; returns the measured window's recorder and the warm-up's.
async fn run_level(
    core: Rc<Core>,
    plan: CorePlan,
    driver: IoDriver,
    busy_poll: bool,
) -> (Recorder, Recorder) {
    let (cpu_start, busy_spin_start) = (thread_cpu_ns(), crate::rt::spin_ns());
    let rec = Rc::new(RefCell::new(measured_recorder(&core, &plan)));
    let warmup_rec = Rc::new(RefCell::new(Recorder::new()));
    core.extras.replace(plan.extras.clone());
    core.queue.replace(CoreQueue {
        start_ns: plan.start_ns,
        arrivals: plan.arrivals,
        next: 0,
        measured_from: plan.measured_from,
        due_seen: 0,
        rec: rec.clone(),
        warmup_rec: warmup_rec.clone(),
        cpu_at_window_ns: None,
    });
    let spinning = Rc::new(Cell::new(busy_poll));
    // Busy polling needs io_uring (an always-complete read in flight); epoll has no equivalent.
    let spinner = (busy_poll && driver == IoDriver::IoUring).then(|| {
        // Each round of the spin also handles the receive ring's completions (no wait for the
        // reaper's wake-up) and sends what fell due: straight after the round's completions
        // were reaped, not after the pacer, woken for it, comes up in the queue.
        let core = core.clone();
        let send_due = move || {
            crate::rt::recv_ring::drain_current();
            let due = core.queue.borrow().next_due_ns();
            if due.is_some_and(|d| d <= now_ns()) && !core.capped() {
                dispatch_due(&core, now_ns());
            }
        };
        monoio::spawn(crate::rt::timer::busy_poll_loop(spinning.clone(), send_due))
    });
    let mut pacer = if spinner.is_some() {
        Pacer::polled()
    } else {
        Pacer::new(driver == IoDriver::IoUring)
    };
    // Request tasks also send arrivals that fall due while they run; the pacer covers the rest.
    loop {
        let Some(due) = core.queue.borrow().next_due_ns() else {
            break;
        };
        if crate::foundation::interrupt::requested() {
            break;
        }
        if core.capped() {
            // --max-concurrency: the request that frees a slot sends what is due and wakes us.
            wait_for_slot(&core).await;
            continue;
        }
        pacer
            .wait_until(due, || core.queue.borrow().next_due_ns() == Some(due))
            .await;
        dispatch_due(&core, now_ns());
        // Let the new request tasks run (their writes go out) before the pacer re-arms its
        // timer.
        pacer.yield_fair().await;
    }
    // Every request is awaited; after a stop request, only for a short grace period (the rest
    // are left unrecorded, and the level is marked interrupted).
    let mut grace_until = None;
    while core.inflight.get() > 0 {
        if monoio::time::timeout(Duration::from_millis(50), all_finished(&core))
            .await
            .is_err()
            && crate::foundation::interrupt::requested()
        {
            let until = *grace_until
                .get_or_insert_with(|| now_ns() + crate::foundation::interrupt::GRACE_NS);
            if now_ns() >= until {
                break;
            }
        }
    }
    spinning.set(false);
    if let Some(s) = spinner {
        s.await;
    }
    // The measured window's CPU starts with its first send (after any warm-up requests).
    let window_cpu_start = core
        .queue
        .replace(CoreQueue::default())
        .cpu_at_window_ns
        .unwrap_or(cpu_start);
    let mut rec = take_recorder(rec);
    rec.cpu_ns = thread_cpu_ns().saturating_sub(window_cpu_start);
    // The pacer's spin, and the busy-poll loop's rounds with nothing to do.
    rec.pacer_spin_ns = pacer.spin_ns + (crate::rt::spin_ns() - busy_spin_start);
    let mut warmup_rec = take_recorder(warmup_rec);
    warmup_rec.cpu_ns = window_cpu_start - cpu_start;
    (rec, warmup_rec)
}

/// Resolves once every request the core sent has finished.
fn all_finished(core: &Rc<Core>) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        if core.inflight.get() > 0 {
            *core.idle_waker.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
}

/// Resolves once the concurrency cap has a free slot.
fn wait_for_slot(core: &Rc<Core>) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        if core.capped() {
            *core.slot_waker.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
}
