//! Entry point: parses the command line and hands off to the benchmark, the built-in endpoint or
//! the demo. Errors a user can act on are printed as `error: …` with exit status 2.

use clap::Parser;

use qpsbench::cli::{Cli, Command};
use qpsbench::{bench, compare, demo, k8s, merge, mock, replot, selftest};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Some(Command::ServeMock(args)) => mock::serve(&args),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Selftest(args)) => selftest::run(args),
        Some(Command::Plot(args)) => replot::run(args),
        Some(Command::Compare(args)) => compare::run(args),
        Some(Command::Merge(args)) => merge::run(args),
        Some(Command::K8sManifest(args)) => k8s::run(args),
        None => bench::run(cli.bench, None),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code);
        }
    }
}
