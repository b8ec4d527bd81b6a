//! Stage 1, the plan: every flag checked, the dataset loaded, the endpoint parsed and resolved,
//! TLS set up, the levels and their request counts known. Everything that can be wrong with the
//! input is found here, before the results folder exists or any request is sent.

use std::time::Duration;

use super::endpoints::{api_of, replica, Replica};
use super::validate::{parse_qps, validate_numbers};
use super::workload::{DatasetSource, Workload};
use crate::cli::{BenchArgs, ContinuousUsage};
use crate::engine::session_plan::SessionPlan;
use crate::engine::Slo;
use crate::engine::{Engine, EngineConfig, Timeouts};
use crate::foundation::error::{Result, UserError};
use crate::foundation::secret::mask_url;
use crate::http::conn::Target;
use crate::http::url::Endpoint;
use crate::report::results::file_name_only;
use crate::workload::arrivals;
use crate::workload::prepared::{
    check_api_key, parse_extra_body, parse_header, Api, Prepared, RequestTemplate, RunRequests,
};

/// The validated run: what every later stage reads.
pub struct Plan {
    pub args: BenchArgs,
    pub api_key: String,
    pub model: String,
    /// The (first) endpoint as shown in files and messages (secret query parameters masked).
    pub shown_endpoint: String,
    /// Every `--endpoint`, in the order given (arrivals are spread over them), and as shown.
    pub replicas: Vec<Replica>,
    pub shown_endpoints: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// The dataset, its timing with `--replay`, and the level length.
    pub workload: Workload,
    /// `--output` and `--plot-output`, checked to be plain file names.
    pub output: String,
    pub plot_output: String,
    /// The levels, or `None` for `--qps auto`.
    pub fixed_levels: Option<Vec<f64>>,
    /// Requests of each fixed level (empty for `--qps auto`).
    pub requests_per_level: Vec<u64>,
    pub cores: usize,
    /// The open-file limit after raising it: (soft, hard).
    pub nofile: (u64, u64),
    /// Ask for `stream_options.continuous_usage_stats` (the probe may turn it off).
    pub continuous_usage: bool,
    /// `--api`, or the API the endpoint's path implies.
    pub api: Api,
    /// `--extra-body`, checked.
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    /// `--server-metrics`, checked.
    pub server_metrics: Option<super::watch::ServerMetrics>,
    /// `--shard K/N`: this process sends the arrivals i mod N = K (`None`: all of them).
    pub shard: Option<(usize, usize)>,
    /// `--reset-prefix-cache`, checked.
    pub reset: ResetAsk,
    /// `--session-turns`: each arrival starts a multi-turn session.
    pub sessions: Option<SessionPlan>,
    /// `--cancel-rate`: the requests each level abandons.
    pub cancels: Option<crate::engine::cancel::CancelPlan>,
}

/// `--reset-prefix-cache`: off, the way the server answers, or a URL to POST.
pub enum ResetAsk {
    Off,
    Auto,
    Url {
        /// As shown (secret query parameters masked).
        shown: String,
        target: crate::http::blocking::Target,
    },
}

/// `--reset-prefix-cache`: `off`, `auto`, or an `http://` URL whose host resolves.
fn reset_ask(asked: &str) -> Result<ResetAsk> {
    let url = match asked.trim() {
        "off" => return Ok(ResetAsk::Off),
        "auto" => return Ok(ResetAsk::Auto),
        url => url,
    };
    let shown = mask_url(url);
    let target = crate::http::blocking::Target::parse(url).map_err(|e| {
        UserError::input(format!(
            "--reset-prefix-cache {}; expected auto, off or an http:// URL",
            e.replace(url, &shown)
        ))
    })?;
    Ok(ResetAsk::Url { shown, target })
}

/// The required flags, all checked at once, each missing one named on its own line with the
/// spec's message; returns the API key (empty without one: no auth header is sent) and the
/// model.
fn required(args: &BenchArgs, dataset_given: bool) -> Result<(String, String)> {
    let mut missing = Vec::new();
    if args.endpoint.is_empty() {
        missing.push((
            "--endpoint",
            "the URL, e.g. http://127.0.0.1:8000/v1/chat/completions",
        ));
    }
    if args.model.is_none() {
        missing.push(("--model", "the model name to request"));
    }
    if args.dataset.is_none()
        && !dataset_given
        && args.dataset_name != Some(crate::cli::DatasetName::Random)
    {
        missing.push((
            "--dataset",
            "path to your conversations JSON file, or --dataset-name random",
        ));
    }
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|(flag, what)| format!("Missing {flag} argument ({what})"))
            .collect();
        return Err(UserError::input(format!(
            "{}\n(qpsbench -h lists the flags; `qpsbench demo` tries it against a built-in endpoint)",
            lines.join("\n")
        )));
    }
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("OPENAI_API_KEY").ok())
        .unwrap_or_default();
    Ok((api_key, args.model.clone().unwrap_or_default()))
}

impl Plan {
    /// Checks the arguments and loads what the run needs; the first problem found is the error.
    pub fn new(args: BenchArgs, dataset_override: Option<DatasetSource>) -> Result<Self> {
        let (api_key, model) = required(&args, dataset_override.is_some())?;
        validate_numbers(&args)?;
        if args.show_tokens {
            eprintln!("note: --show-tokens is deprecated: tokens/sec is always shown");
        }
        let parsed = args
            .endpoint
            .iter()
            .map(|raw| {
                let shown = mask_url(raw);
                Endpoint::parse(raw)
                    .map(|e| (shown.clone(), e))
                    .map_err(|e| UserError::input(format!("--endpoint {}", e.replace(raw, &shown))))
            })
            .collect::<Result<Vec<_>>>()?;
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_>>()?;
        let mut workload = Workload::new(&args, dataset_override)?;
        let output = file_name_only("--output", &args.output)?;
        let plot_output = file_name_only("--plot-output", &args.plot_output)?;
        let fixed_levels = match &workload.replay {
            // One level at the trace's mean rate.
            Some(r) => Some(vec![r.rows as f64 / workload.duration]),
            None => parse_qps(&args.qps)?,
        };
        let requests_per_level = match &workload.replay {
            Some(r) => vec![r.rows as u64],
            None => request_counts(&args, workload.duration, fixed_levels.as_deref())?,
        };
        let replicas = parsed
            .into_iter()
            .map(|(shown, endpoint)| replica(&args, shown, endpoint))
            .collect::<Result<Vec<_>>>()?;
        let shown_endpoints: Vec<String> = replicas.iter().map(|r| r.shown.clone()).collect();
        let shown_endpoint = shown_endpoints[0].clone();
        let cores = client_cores(&args);
        let nofile = crate::foundation::os_limits::raise_nofile();
        let continuous_usage =
            !args.no_usage_request && args.continuous_usage != ContinuousUsage::Off;
        let api = api_of(&args, &replicas)?;
        if args.embedding_batch != 1 && api != Api::Embeddings {
            return Err(UserError::input(format!(
                "--embedding-batch {}: applies to --api embeddings only; this endpoint speaks the {} API",
                args.embedding_batch,
                api
            )));
        }
        // Only chat and completions have `stream_options`; embeddings generate nothing, so
        // their answers have no length to pin.
        let continuous_usage = continuous_usage && matches!(api, Api::Chat | Api::Completions);
        if !api.generates() {
            workload.ignore_eos = false;
        }
        let extra_body = args
            .extra_body
            .as_deref()
            .map(|raw| parse_extra_body(raw, api))
            .transpose()?;
        check_api_key(&api_key)?;
        salt_is_ours(&args, extra_body.as_ref())?;
        let reset = reset_ask(&args.workload.reset_prefix_cache)?;
        let shard = shard_of(&args, fixed_levels.is_none())?;
        let sessions = super::sessions::plan(&args, api, &mut workload.dataset)?;
        let cancels = super::cancels::plan(&args)?;
        let plan = Self {
            sessions,
            cancels,
            reset,
            shard,
            server_metrics: super::watch::plan(&args)?.filter(|_| scrapes(shard)),
            workload,
            extra_body,
            api,
            api_key,
            model,
            shown_endpoint,
            shown_endpoints,
            replicas,
            headers,
            output,
            plot_output,
            fixed_levels,
            requests_per_level,
            cores,
            nofile,
            continuous_usage,
            args,
        };
        plan.warn_about_limits();
        Ok(plan)
    }

    /// What every request to endpoint `r` shares.
    pub fn template<'a>(&'a self, r: &'a Replica) -> RequestTemplate<'a> {
        RequestTemplate {
            extra_body: self.extra_body.as_ref(),
            temperature: self.args.temperature,
            include_usage: !self.args.no_usage_request,
            continuous_usage: self.continuous_usage,
            headers: &self.headers,
            ignore_eos: self.workload.ignore_eos,
            batch: self.args.embedding_batch,
            ..RequestTemplate::new(
                self.api,
                &r.endpoint,
                &self.model,
                &self.api_key,
                self.args.max_tokens,
            )
        }
    }

    /// What every level's requests are rendered from, as the template says now.
    pub fn render(&self) -> Result<RunRequests> {
        let templates: Vec<RequestTemplate<'_>> =
            self.replicas.iter().map(|r| self.template(r)).collect();
        RunRequests::build(
            &templates,
            self.workload.dataset.rows.clone(),
            self.args.workload.unique_prompts,
        )
    }

    /// The dataset's rows.
    pub fn rows(&self) -> usize {
        self.workload.dataset.rows.len()
    }

    /// Arrivals of level `i` of the whole schedule (warm-up included) at `qps`.
    pub fn arrivals_at(&self, qps: f64) -> u64 {
        match &self.workload.replay {
            Some(r) => r.rows as u64,
            None => {
                let rate = self.arrival_qps(qps);
                arrivals::request_count(rate, self.args.warmup)
                    + arrivals::request_count(rate, self.workload.duration)
            }
        }
    }

    /// The arrival rate of a level at `qps`: with sessions, session starts (`qps` ÷ the mean
    /// turns, so that requests average `qps`).
    pub fn arrival_qps(&self, qps: f64) -> f64 {
        qps / self.session_turns().unwrap_or(1.0)
    }

    /// `--embedding-batch`, when the run speaks the embeddings API.
    pub fn embedding_batch(&self) -> Option<u32> {
        (self.api == Api::Embeddings).then_some(self.args.embedding_batch)
    }

    /// `--session-turns`, when the run sends sessions.
    pub fn session_turns(&self) -> Option<f64> {
        self.sessions.as_ref().map(|s| s.turns)
    }

    /// The prompts the run's levels plan in all (None with `--qps auto`: not known before).
    pub fn prompts_planned(&self) -> Option<u64> {
        let rates = self.fixed_levels.as_ref()?;
        Some(rates.iter().map(|&q| self.arrivals_at(q)).sum())
    }

    /// Why a server's prefix cache may answer this run's prompts on purpose: the sharing its
    /// flags ask for.
    pub fn shared_on_purpose(&self) -> Option<String> {
        let w = &self.args.workload;
        let mut why = Vec::new();
        let random = self.workload.dataset.name == crate::cli::DatasetName::Random;
        if random && w.random_prefix_len > 0 {
            why.push(match w.prefix_groups {
                Some(g) => format!("--random-prefix-len in --prefix-groups {g}"),
                None => "--random-prefix-len".to_string(),
            });
        }
        if random && w.random_pool_size.is_some() {
            why.push("--random-pool-size".to_string());
        }
        if self.workload.dataset.name == crate::cli::DatasetName::Mooncake {
            why.push("the trace's hash ids".to_string());
        }
        if w.unique_prompts == crate::cli::UniquePrompts::Off {
            why.push("--unique-prompts off".to_string());
        }
        if self.sessions.is_some() {
            why.push("--session-turns: each turn re-sends its session's history".to_string());
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Starts the client cores with the rendered requests.
    pub fn start_engine(&self) -> Result<Engine> {
        let a = &self.args;
        let engine = Engine::start(EngineConfig {
            cores: self.cores,
            targets: self
                .replicas
                .iter()
                .map(|r| Target {
                    addrs: r.addrs.clone().into(),
                    tls: r.tls.clone(),
                })
                .collect(),
            requests: Prepared::default(),
            max_connections: crate::foundation::os_limits::connection_budget(
                self.nofile.0,
                self.cores,
            ),
            timeout: Duration::from_secs_f64(a.timeout),
            max_concurrency: a.max_concurrency,
            save_requests: a.save_requests,
            busy_poll: a.busy_poll,
            recv_path: crate::engine::RecvPath::from_env().map_err(UserError::input)?,
            pin: None,
            slo: Slo {
                ttft_ns: a.checks.slo_ttft.map(|s| (s * 1e9) as u64),
                e2e_ns: a.checks.slo_e2e.map(|s| (s * 1e9) as u64),
            },
            timeouts: Timeouts {
                connect: Duration::from_secs_f64(a.connect_timeout),
                first_token: a.ttft_timeout.map(Duration::from_secs_f64),
                idle: a.idle_timeout.map(Duration::from_secs_f64),
            },
            sessions: self.sessions.clone(),
            cancels: self.cancels.clone(),
            reading: crate::engine::Reading::of(self.api, self.args.embedding_batch),
        })
        .map_err(UserError::runtime)?;
        if engine.driver == crate::engine::IoDriver::Epoll {
            eprintln!("note: io_uring is not available here; using the epoll driver (pacing spends more CPU while waiting)");
            if a.busy_poll {
                eprintln!("note: --busy-poll needs io_uring; it is off for this run");
            }
        }
        Ok(engine)
    }

    /// Every connection is a file: says before the run if the planned concurrency may not fit
    /// the open-file limit (or the ephemeral ports).
    fn warn_about_limits(&self) {
        let a = &self.args;
        let top_qps = self
            .fixed_levels
            .as_ref()
            .map_or(a.auto_max_qps, |q| q.iter().copied().fold(0.0, f64::max));
        let (planned, what) = match a.max_concurrency {
            Some(n) => (n as u64, format!("--max-concurrency {n}")),
            None => {
                // A slow endpoint holds requests open for up to --timeout; 10 s is a generous
                // middle ground for the estimate.
                let hold = a.timeout.min(10.0);
                (
                    (top_qps * hold).ceil() as u64,
                    format!("QPS {top_qps} × up to {hold} s per request"),
                )
            }
        };
        let ports = crate::foundation::os_limits::ephemeral_ports();
        for w in crate::foundation::os_limits::warnings(planned, &what, self.nofile, ports) {
            eprintln!("warning: {w}");
        }
    }
}

/// `--unique-prompts salt` sets `cache_salt` itself: `--extra-body` may not set it too.
fn salt_is_ours(
    args: &BenchArgs,
    extra: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<()> {
    if args.workload.unique_prompts == crate::cli::UniquePrompts::Salt
        && extra.is_some_and(|e| e.contains_key("cache_salt"))
    {
        return Err(UserError::input(
            "--extra-body sets \"cache_salt\", which --unique-prompts salt sets itself (one per pass); drop one of them",
        ));
    }
    Ok(())
}

/// `--shard`, refused with `--qps auto` (a search cannot be split without a coordinator).
fn shard_of(args: &BenchArgs, auto: bool) -> Result<Option<(usize, usize)>> {
    let shard =
        super::validate::parse_shard(args.boxes.shard.as_deref(), args.boxes.shards, |k| {
            std::env::var(k).ok()
        })?;
    if let (Some((k, n)), true) = (shard, auto) {
        return Err(UserError::input(format!(
            "--shard {k}/{n} with --qps auto: a capacity search cannot be split across shards without a coordinator; give the levels (--qps 10,20,40)"
        )));
    }
    Ok(shard)
}

/// Only shard 0 scrapes the server's metrics (`merge` takes them from it): N shards scraping
/// one server would load it N times for the same figures.
fn scrapes(shard: Option<(usize, usize)>) -> bool {
    match shard {
        Some((k, _)) if k > 0 => {
            eprintln!("note: --server-metrics: only shard 0 scrapes the server; this is shard {k}");
            false
        }
        _ => true,
    }
}

/// Requests of each fixed level (or of `--auto-start`, checked the same way); a level that
/// would send none is an error.
fn request_counts(args: &BenchArgs, duration: f64, fixed: Option<&[f64]>) -> Result<Vec<u64>> {
    let rates: Vec<f64> = fixed.map_or_else(|| vec![args.auto_start], <[f64]>::to_vec);
    let counts: Vec<u64> = rates
        .iter()
        .map(|&q| arrivals::request_count(q, duration))
        .collect();
    if let Some(i) = counts.iter().position(|&c| c == 0) {
        return Err(UserError::input(format!(
            "{} {} with --duration {} sends no request (round(qps × duration) = 0); raise it or --duration",
            if fixed.is_some() { "--qps" } else { "--auto-start" },
            rates[i],
            duration
        )));
    }
    Ok(if fixed.is_some() { counts } else { Vec::new() })
}

/// Client cores: `--cores` or every CPU, at most one per `--max-concurrency` slot.
fn client_cores(args: &BenchArgs) -> usize {
    let available = core_affinity::get_core_ids().map_or(1, |c| c.len().max(1));
    let mut cores = args.cores.unwrap_or(available);
    if let Some(n) = args.max_concurrency {
        if n < cores {
            // Each core needs at least one slot of the cap.
            eprintln!(
                "note: --max-concurrency {n} is below the {cores} client cores; using {n} core(s)"
            );
            cores = n;
        }
    }
    if cores > available {
        eprintln!(
            "warning: --cores {cores} is more than the {available} CPU(s) this process may use; core threads will share CPUs"
        );
    }
    cores
}
