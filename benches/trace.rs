//! Loading and rendering a million-row Mooncake trace: the time to read and check it, the time
//! to render every row's request, what the arena holds, and the process's peak RSS (VmHWM).
//! The trace is written first, one row at a time, shaped like Mooncake's conversation trace
//! (prompts of ~7,600 tokens on average, sessions sharing their first blocks, ~200-token
//! answers). Run: `cargo bench --bench trace` (`-- ROWS` for another size).

use std::io::{BufWriter, Write};
use std::time::Instant;

use qpsbench::cli::{Api, DatasetName};
use qpsbench::http::url::Endpoint;
use qpsbench::workload::dataset::{self, Rows};
use qpsbench::workload::prepared::unique::UniquePrompts;
use qpsbench::workload::prepared::{RequestTemplate, RunRequests};
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

/// Peak resident set size of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes `rows` rows: 50,000 sessions whose rows share the session's first blocks (a system
/// prompt and history), then blocks of their own.
fn write_trace(path: &std::path::Path, rows: u64) -> u64 {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create the trace"));
    let mut rng = Xoshiro256StarStar::seed_from_u64(7);
    let mut unique = 1u64 << 40;
    let mut t = 0u64;
    let mut bytes = 0;
    for _ in 0..rows {
        let r = rng.next_u64();
        // 2,000 to 13,000 tokens; uniform is enough for memory and time.
        let input = 2_000 + r % 11_000;
        let output = 50 + (r >> 20) % 300;
        let session = (r >> 40) % 50_000;
        let shared = 1 + (r >> 60) % 8;
        let blocks = input.div_ceil(512);
        let ids: Vec<String> = (0..blocks)
            .map(|j| {
                if j < shared {
                    (session * 64 + j).to_string()
                } else {
                    unique += 1;
                    unique.to_string()
                }
            })
            .collect();
        t += 1 + (r >> 8) % 3;
        let line = format!(
            "{{\"timestamp\": {t}, \"input_length\": {input}, \"output_length\": {output}, \"hash_ids\": [{}]}}\n",
            ids.join(", ")
        );
        bytes += line.len() as u64;
        out.write_all(line.as_bytes()).expect("write the trace");
    }
    out.flush().expect("write the trace");
    bytes
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let path = std::env::temp_dir().join(format!("qpsbench-trace-{}.jsonl", std::process::id()));
    let t0 = Instant::now();
    let bytes = write_trace(&path, rows);
    println!(
        "trace: {rows} rows, {:.0} MB, written in {:.1} s (peak RSS so far {:.0} MiB)",
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let t1 = Instant::now();
    let loaded = dataset::load(&path, Some(DatasetName::Mooncake)).expect("load the trace");
    let load_s = t1.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    let Rows::Synthetic(set) = loaded.rows.as_ref() else {
        unreachable!("a mooncake trace is synthetic")
    };
    let words: u64 = (0..set.len()).map(|i| set.prompt_words(i)).sum();
    println!(
        "load: {load_s:.2} s; {} rows, {:.2} G prompt tokens in all (rendered whole, {:.0} GB); peak RSS {:.0} MiB",
        set.len(),
        words as f64 / 1e9,
        words as f64 * 5.5 / 1e9,
        peak_rss_mib()
    );
    let endpoint = Endpoint::parse("http://127.0.0.1:8000/v1/chat/completions").unwrap();
    let template = RequestTemplate {
        api: Api::Chat,
        extra_body: None,
        endpoint: &endpoint,
        api_key: "sk-bench",
        model: "bench-model",
        max_tokens: 512,
        temperature: 0.0,
        include_usage: true,
        continuous_usage: true,
        headers: &[],
        ignore_eos: true,
        batch: 1,
    };
    // The replay's one level: every row once, as prompts 1..=rows.
    let t2 = Instant::now();
    let run = RunRequests::build(&[template], loaded.rows.clone(), UniquePrompts::Auto)
        .expect("render the shared bytes");
    let level = run
        .level((0..set.len()).map(|i| (i as u64 + 1, 0)))
        .expect("render the level");
    let render_s = t2.elapsed().as_secs_f64();
    let (arena, parts) = level.prepared.footprint();
    println!(
        "render: {render_s:.2} s; shared {:.0} MiB, the level's own {:.1} MiB, {parts} parts ({:.1} per request); peak RSS {:.0} MiB",
        run.base_len() as f64 / 1048576.0,
        arena as f64 / 1048576.0,
        parts as f64 / level.prepared.len() as f64,
        peak_rss_mib()
    );
}
