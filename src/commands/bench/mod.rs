//! The benchmark command, as a pipeline of named stages (each in its own module):
//!
//! 1. [`plan`]: flags checked, dataset loaded, endpoints resolved with their TLS
//!    ([`endpoints`]) — every input error is found here, before the results folder exists;
//! 2. [`probe`]: one request checks that the endpoint answers at all (a run against one that
//!    does not stops here, exit status 4, before any folder is made), a few more measure it
//!    unloaded (the saturation rules' baseline), and the optional fields it refuses are
//!    dropped; then [`reset`] empties the server's prefix cache for the first time
//!    (`--reset-prefix-cache`);
//! 3. the results folder is made, and [`metadata`] writes `metadata.json`;
//! 4. [`levels`]: a fixed list of rates or the capacity search, each level measured by
//!    [`level`] on the engine;
//! 5. [`report`]: the final summary, the console table and the PNG;
//! 6. the exit status.

mod auto_search;
mod cancels;
mod clockstart;
mod endpoints;
mod level;
mod levels;
mod metadata;
mod plan;
mod probe;
mod probe_answer;
mod report;
mod reset;
mod sessions;
mod validate;
mod watch;
mod workload;

pub use level::{measure_level, LevelSpec};
pub use metadata::json_number;
pub use workload::DatasetSource;

use crate::cli::BenchArgs;
use crate::foundation::clock::LocalTime;
use crate::foundation::error::Result;
use crate::report::results::RunDir;

/// Runs the benchmark; returns the process exit status.
pub fn run(args: BenchArgs, dataset_override: Option<DatasetSource>) -> Result<i32> {
    let mut plan = plan::Plan::new(args, dataset_override)?;
    let mut requests = plan.render()?;
    RunDir::prepare_parent(&plan.args.results_dir)?;
    crate::foundation::interrupt::install();
    let engine = plan.start_engine()?;
    // Before the results folder: an endpoint that does not answer leaves nothing behind.
    let probed = probe::check(&engine, &mut plan, &mut requests)?;
    let unloaded = probed.baseline;
    let started = LocalTime::now();
    let run_dir = RunDir::create(&plan.args.results_dir, &started)?;
    let reset = reset::Resetter::start(&plan);
    let uniqueness = requests
        .unique
        .report(plan.prompts_planned(), plan.shared_on_purpose().as_deref());
    let about = metadata::Extra {
        probe: probed,
        prompt_uniqueness: &uniqueness,
        prefix_cache_reset: reset.as_ref().map(|r| &r.1),
    };
    metadata::write(&run_dir, &plan, &engine, &started, about)?;
    announce(&plan, &engine, &run_dir, &uniqueness);
    let mut levels = levels::Levels::new(&plan, &engine, &requests, &run_dir, unloaded)?;
    levels.resetter = reset.map(|r| r.0);
    let auto_bracket = strategy(&plan).run(&mut levels)?;
    let measured = report::Measured {
        criteria: levels.criteria,
        levels: levels.measured,
        auto_bracket,
    };
    drop(engine);
    report::write_and_print(&plan, &run_dir, &started, &measured)?;
    Ok(report::exit_code(&measured.levels))
}

/// The lines that say what the run will do and where its results go.
fn announce(
    plan: &plan::Plan,
    engine: &crate::engine::Engine,
    run_dir: &RunDir,
    uniqueness: &crate::workload::prepared::unique::Report,
) {
    let levels = plan
        .fixed_levels
        .as_ref()
        .map_or("--qps auto, levels".to_string(), |q| {
            format!("{} level(s)", q.len())
        });
    eprintln!(
        "qpsbench: {levels} × {} s against {} on {} core(s) ({}); results in {}",
        plan.workload.duration,
        plan.shown_endpoint,
        plan.cores,
        engine.driver.name(),
        run_dir.path.display()
    );
    eprintln!("qpsbench: {}", uniqueness.line());
}

/// The strategy the plan asks for.
fn strategy(plan: &plan::Plan) -> Box<dyn levels::Strategy> {
    match &plan.fixed_levels {
        Some(rates) => Box::new(levels::Fixed(rates.clone())),
        None => Box::new(auto_search::AutoSearch {
            start: plan.args.auto_start,
            max: plan.args.auto_max_qps,
            tolerance: plan.args.auto_tolerance,
        }),
    }
}
