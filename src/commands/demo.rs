//! `qpsbench demo`: the built-in endpoint, started in-process with a capacity model that
//! saturates within the sweep, and a short benchmark against it with the spec's example
//! conversations (embedded in the binary). The quickest way to see every output qpsbench makes.

use clap::Parser;

use crate::cli::{Cli, DemoArgs};
use crate::commands::bench::{self, DatasetSource};
use crate::commands::mock::{self, MockConfig};
use crate::foundation::error::{Result, UserError};
use crate::workload::dataset::DEMO_DATASET;

/// The demo endpoint: 80 ms TTFT, 10 ms per token, 64 tokens per answer (~0.7 s per request), a
/// batch of 24 generating at once with the others queued (as vLLM's scheduler does: past ~34 QPS
/// the queue grows, and `/metrics` shows it), a shared budget of 2,400 tokens/s (24 full-speed
/// streams) and HTTP 503 beyond 40 requests in flight.
pub fn demo_endpoint() -> MockConfig {
    MockConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ttft_ms: 80.0,
        itl_ms: 10.0,
        output_tokens: 64,
        tokens_per_chunk: 1,
        max_concurrency: 40,
        max_num_seqs: 24,
        role_chunk: true,
        no_usage: false,
        capacity_tokens_per_sec: Some(2400.0),
        threads: 1,
        ..MockConfig::default()
    }
}

/// The demo's QPS levels: below, at and past the demo endpoint's capacity.
pub const DEMO_QPS: &str = "5,10,20,40,80";

pub fn run(args: DemoArgs) -> Result<i32> {
    crate::foundation::flag_ranges::seconds("--duration", args.duration)?;
    if let Some(c) = args.cores {
        crate::foundation::flag_ranges::count("--cores", c as u64, 1, 4096, "a number of cores")?;
    }
    let server = mock::start(demo_endpoint())
        .map_err(|e| UserError::input(format!("cannot start the built-in endpoint: {e}")))?;
    eprintln!(
        "demo: built-in endpoint on {} (TTFT 80 ms, 10 ms/token, 64 tokens, 24 generating at once and the rest queued, 2400 tokens/s, 503 beyond 40 in flight)",
        server.url()
    );
    let url = server.url();
    // The demo watches its endpoint's queue as a user would watch vLLM's.
    let metrics = format!("http://{}/metrics", server.addr);
    let duration = args.duration.to_string();
    let results_dir = args.results_dir.display().to_string();
    let mut argv = vec![
        "qpsbench",
        "--endpoint",
        &url,
        "--api-key",
        "demo-key",
        "--model",
        "qpsbench-demo",
        "--qps",
        DEMO_QPS,
        "--duration",
        &duration,
        "--results-dir",
        &results_dir,
        "--plot",
        "--server-metrics",
        &metrics,
    ];
    let cores = args.cores.map(|c| c.to_string());
    if let Some(c) = &cores {
        argv.extend(["--cores", c]);
    }
    let cli = Cli::try_parse_from(argv).map_err(|e| UserError::input(e.to_string()))?;
    let code = bench::run(
        cli.bench,
        Some(DatasetSource::Embedded {
            // Kept as earlier runs wrote it ("seed" is the spec's old name here): a run's
            // metadata.json `dataset` is data that `compare` and users' scripts match on.
            name: "built-in demo dataset (the seed's example conversations)".into(),
            json: DEMO_DATASET,
        }),
    )?;
    crate::outln!(
        "\nThe demo endpoint generates 24 answers at once (~34 QPS) and queues the rest; past that its queue grows (server_metrics, timeline.png) and beyond 40 in flight it answers 503."
    );
    crate::outln!("Point qpsbench at your own endpoint with --endpoint, --model and --dataset (and --api-key where it wants one; see README.md).");
    Ok(code)
}
