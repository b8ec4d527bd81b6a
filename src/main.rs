//! Entry point: parses the command line and hands off to the benchmark, the built-in endpoint or
//! the demo. Errors a user can act on are printed as `error: …` with exit status 2.

use clap::Parser;

use qpsbench::cli::{Cli, Command};
use qpsbench::commands::{bench, compare, demo, k8s, merge, mock, plot as replot, selftest};

/// What a bare `qpsbench` prints: the three commonest ways to start.
const USAGE: &str = "\
qpsbench: load-test an LLM inference endpoint at fixed request rates and find where it saturates.

Three ways to start:
  qpsbench demo
      tries it against a built-in endpoint (~30 s, nothing to set up)
  qpsbench --endpoint http://127.0.0.1:8000/v1/chat/completions --model MODEL \\
           --dataset-name random --qps 1,2,4,8 --duration 30 --plot
      fixed rates with synthetic prompts
  qpsbench --endpoint URL --model MODEL --dataset conversations.json --qps auto
      finds the capacity with your own prompts

qpsbench -h lists the common flags, qpsbench --help all of them by group.
";

fn main() {
    if std::env::args_os().len() == 1 {
        eprint!("{USAGE}");
        std::process::exit(qpsbench::foundation::error::exit::INPUT);
    }
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
