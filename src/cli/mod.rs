//! Layer 2 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `foundation`; `rt` and the layers after it use it.
//!
//! Command-line interface: every command's flags, each documented where it is defined (this is
//! what `--help` prints). The default command is the benchmark, with every flag of the spec
//! (same names, same defaults) plus qpsbench's own.
//!
//! A leaf of the module map: it names the flags and their types, and depends on no other module,
//! so every command can read its `*Args` without reaching into another command.

mod bench;
mod boxes;
mod checks;
mod tools;
mod values;
mod workload;

pub use bench::{
    Api, Arrival, BenchArgs, ContinuousUsage, DatasetName, EndpointStrategy, Progress, ShowMetric,
};
pub use boxes::ManyBoxesArgs;
pub use checks::ChecksArgs;
pub use tools::{
    BusyPollMode, CompareArgs, DemoArgs, K8sManifestArgs, MergeArgs, MockArgs, PlotArgs,
    SelftestArgs,
};
pub use workload::{ThinkTimeDist, UniquePrompts, WorkloadArgs};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "qpsbench",
    version,
    about = "Load-test an LLM inference endpoint at fixed request rates and find where it saturates",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the built-in OpenAI-compatible streaming endpoint (for tests, demos and validating a load box).
    ServeMock(MockArgs),
    /// Start the built-in endpoint in-process and run a short sweep against it (~30 s).
    Demo(DemoArgs),
    /// Measure this machine's client overhead: the built-in endpoint on its own core(s) stamps
    /// each chunk with its send time; rising rates show the delay the client adds, its send lag
    /// and its CPU per token (writes selftest.json)
    Selftest(SelftestArgs),
    /// Re-render a saved run's PNG and summary.json from its results folder (no requests sent)
    Plot(PlotArgs),
    /// Compare two saved runs level by level (matched by target QPS), with differences
    Compare(CompareArgs),
    /// Merge the results folders of the shards of one run (`--shard K/N`) into one run folder,
    /// exactly: histograms merged, counts summed
    Merge(MergeArgs),
    /// Print Kubernetes manifests for a sharded run: a results volume claim, an Indexed Job of
    /// shards starting at one instant, and the merge Job (suspended until the shards complete)
    K8sManifest(K8sManifestArgs),
}
