//! The per-arrival cost of dispatch on a client core, with no sessions and no cancellations:
//! `engine::dispatch::dispatch_due` taking a batch of due arrivals off the core's queue, each one
//! looked up in its pool (no idle connection: the kernel's send stays out of the figure), given
//! its ticket and spawned as its task. This is the path every arrival takes before its request
//! leaves, so its cost shows as send lag at high rates; a bigger task (a future that carries
//! what only sessions need) shows here too, since spawning moves the whole future to the heap.
//! Between batches the tasks run to their end (their connects are refused), untimed.
//! Run: `cargo bench --bench dispatch`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qpsbench::api::openai::ChunkParser;
use qpsbench::cli::Api;
use qpsbench::engine::core_state::{Core, CoreQueue, Slo};
use qpsbench::engine::dispatch::dispatch_due;
use qpsbench::engine::pool::Pool;
use qpsbench::engine::{PlannedArrival, Reading};
use qpsbench::foundation::clock::now_ns;
use qpsbench::http::conn::Target;
use qpsbench::http::url::Endpoint;
use qpsbench::recording::recorder::Recorder;
use qpsbench::workload::dataset;
use qpsbench::workload::prepared::{render_samples, Prepared, RequestTemplate};

/// Arrivals per dispatch call: a burst that fell due together.
const BATCH: usize = 1024;

fn prepared() -> Prepared {
    let endpoint = Endpoint::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
    let samples = dataset::parse(dataset::DEMO_DATASET.as_bytes(), "demo").unwrap();
    let t = RequestTemplate::new(Api::Chat, &endpoint, "m", "k", 32);
    render_samples(&t, &samples).unwrap()
}

/// A core as a worker builds it, whose one endpoint has no idle connection.
fn core(requests: &Arc<Prepared>, arrivals: Vec<PlannedArrival>) -> Rc<Core> {
    // A loopback port nothing listens on: each task's connect is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = Target {
        addrs: vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))].into(),
        tls: None,
    };
    Rc::new(Core {
        pools: vec![Pool::new(target, 1 << 20)],
        live: Arc::default(),
        chunks: RefCell::new(ChunkParser::new()),
        requests: RefCell::new(Rc::new(requests.clone())),
        timeout: Duration::from_secs(60),
        queue: RefCell::new(CoreQueue {
            start_ns: 0,
            arrivals,
            rec: Rc::new(RefCell::new(Recorder::new())),
            warmup_rec: Rc::new(RefCell::new(Recorder::new())),
            ..Default::default()
        }),
        max_inflight: usize::MAX,
        inflight: Cell::new(0),
        slot_waker: RefCell::new(None),
        idle_waker: RefCell::new(None),
        save_requests: false,
        index: 0,
        slo: Slo::default(),
        connect_timeout: Duration::from_secs(10),
        ttft_timeout_ns: None,
        idle_timeout_ns: None,
        sessions: None,
        extras: RefCell::new(Default::default()),
        cancels: None,
        reading: Reading::of(Api::Chat, 1),
        precise_timers: true,
        dispatch: dispatch_due,
    })
}

fn dispatch(c: &mut Criterion) {
    let requests = Arc::new(prepared());
    let rows = requests.len() as u32;
    let arrivals: Vec<PlannedArrival> = (0..BATCH as u32)
        .map(|i| PlannedArrival {
            offset_ns: u64::from(i),
            sample: i % rows,
            endpoint: 0,
        })
        .collect();
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("dispatch_due, 1024 due arrivals, no idle connection", |b| {
        // One runtime for the whole bench: between batches the tasks run to their end (a
        // refused connect), so each batch spawns into memory the last one freed, as a level
        // does in its steady state. Only the dispatch itself is timed.
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let core = core(&requests, arrivals.clone());
        b.iter_custom(|iters| {
            let core = core.clone();
            rt.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    {
                        let mut q = core.queue.borrow_mut();
                        (q.next, q.start_ns) = (0, 0);
                    }
                    let now = now_ns();
                    let t0 = Instant::now();
                    dispatch_due(&core, now);
                    total += t0.elapsed();
                    assert_eq!(core.inflight.get(), BATCH);
                    while core.inflight.get() > 0 {
                        monoio::time::sleep(Duration::from_micros(200)).await;
                    }
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
