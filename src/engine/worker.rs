//! A core's thread: pins itself, builds its runtime, then runs each level's slice of arrivals —
//! a pacing loop that spawns one request task per arrival at its intended time.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;

use super::pacer::{yield_now, Pacer};
use super::pool::Pool;
use super::request::{dispatch_due, Core, Schedule};
use super::{Command, CorePlan, IoDriver};
use crate::clock::{now_ns, thread_cpu_ns};
use crate::http::conn::Target;
use crate::metrics::{ErrorKind, Recorder};
use crate::openai::ChunkParser;

/// Read-only run configuration shared by all cores (read once at thread start).
pub(crate) struct Shared {
    pub target: Target,
    pub requests: Arc<[Bytes]>,
    pub timeout: Duration,
}

pub(crate) fn main(
    core_id: Option<core_affinity::CoreId>,
    shared: Arc<Shared>,
    plans: mpsc::Receiver<Command>,
    results: mpsc::Sender<Recorder>,
    ready: mpsc::Sender<Result<IoDriver, String>>,
) {
    if let Some(id) = core_id {
        core_affinity::set_for_current(id);
    }
    // The runtime is built inside the thread that runs it: monoio runtimes cannot move.
    let mut rt = match super::build_runtime() {
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
    let _ = ready.send(Ok(driver));
    let core = Rc::new(Core {
        pool: Pool::new(shared.target.clone()),
        tls: shared.target.tls.is_some(),
        chunks: RefCell::new(ChunkParser::new()),
        requests: RefCell::new(shared.requests.clone()),
        timeout: shared.timeout,
        schedule: RefCell::new(Schedule::default()),
    });
    while let Ok(cmd) = plans.recv() {
        // The pacing loop must be a spawned task, not the `block_on` future itself: monoio polls
        // a self-waking main future in a tight loop without running other tasks or reaping
        // completions, so a pacer spinning there would stall every request on the core.
        let core = core.clone();
        let rec = match cmd {
            Command::Level(plan) => {
                rt.block_on(async move { monoio::spawn(run_level(core, plan, driver)).await })
            }
            Command::Warm(n) => rt.block_on(async move { monoio::spawn(warm(core, n)).await }),
            Command::Requests(requests) => {
                core.requests.replace(requests);
                Recorder::new()
            }
        };
        if results.send(rec).is_err() {
            break;
        }
    }
}

/// Opens connections concurrently until `want` are idle in the pool.
async fn warm(core: Rc<Core>, want: usize) -> Recorder {
    let rec = Rc::new(RefCell::new(Recorder::new()));
    let need = want.saturating_sub(core.pool.idle_count());
    let tasks: Vec<_> = (0..need)
        .map(|_| {
            let (core, rec) = (core.clone(), rec.clone());
            monoio::spawn(async move {
                // Bounded like a request, so a black-holed endpoint cannot stall the run.
                let connect = monoio::time::timeout(core.timeout, core.pool.connect()).await;
                let Ok(connect) = connect else {
                    rec.borrow_mut().record_error(ErrorKind::TimeoutTotal, None);
                    return;
                };
                match connect {
                    Ok((conn, t)) => {
                        rec.borrow_mut()
                            .record_connect(t.connect_ns, t.handshake_ns, core.tls);
                        core.pool.put(conn);
                    }
                    Err(e) => rec
                        .borrow_mut()
                        .record_error(ErrorKind::from_connect(e), None),
                }
            })
        })
        .collect();
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

async fn run_level(core: Rc<Core>, plan: CorePlan, driver: IoDriver) -> Recorder {
    let cpu_start = thread_cpu_ns();
    let rec = Rc::new(RefCell::new(Recorder::new()));
    let n = plan.arrivals.len();
    core.schedule.replace(Schedule {
        start_ns: plan.start_ns,
        arrivals: plan.arrivals,
        next: 0,
        rec: rec.clone(),
        tasks: Vec::with_capacity(n),
    });
    let mut pacer = Pacer::new(driver == IoDriver::IoUring);
    // Request tasks also send arrivals that fall due while they run; the pacer covers the rest.
    loop {
        let Some(due) = core.schedule.borrow().next_due_ns() else {
            break;
        };
        pacer
            .wait_until(due, || core.schedule.borrow().next_due_ns() == Some(due))
            .await;
        dispatch_due(&core, now_ns());
        // Let the new request tasks run before the pacer re-arms its timer.
        yield_now().await;
    }
    let tasks = std::mem::take(&mut core.schedule.borrow_mut().tasks);
    for t in tasks {
        t.await;
    }
    core.schedule.replace(Schedule::default());
    let mut rec = take_recorder(rec);
    rec.cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    rec.pacer_spin_ns = pacer.spin_ns;
    rec
}
