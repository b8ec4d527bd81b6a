//! The values of the benchmark's enumerated flags (`--api`, `--arrival`, `--dataset-name`, …):
//! each documented where defined, as `--help` lists them, with their own spellings.

/// `--dataset-name`: the dataset's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    /// The spec's `[{"prompt_content", "cut_chat_history"}]`.
    Seed,
    /// A ShareGPT dump: `[{"conversations": [{"from", "value"}]}]`.
    Sharegpt,
    /// One `{"messages"}` or `{"prompt"}` object per line, optional `max_tokens`.
    Jsonl,
    /// A Mooncake trace: one `{"timestamp", "input_length", "output_length", "hash_ids"}` per
    /// line.
    Mooncake,
    /// Synthetic prompts of given lengths (no file).
    Random,
}

/// `--api`: which API the endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/v1/chat/completions`: `messages` in, `delta.content` out.
    Chat,
    /// `/v1/completions`: one `prompt` string in (chat samples flattened with role labels),
    /// `choices[].text` out.
    Completions,
    /// OpenAI's `/v1/responses`: `input` messages in, typed `response.*` events out.
    Responses,
    /// Anthropic's `/v1/messages`: `system` and `messages` in, `content_block_delta` events out.
    Messages,
    /// `/v1/embeddings`: `input` texts in (`--embedding-batch` per request), one JSON answer
    /// out, not streamed.
    Embeddings,
}

/// `--api`'s own spelling (`chat`, `responses`, …), from the flag's values.
impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let value = self
            .to_possible_value()
            .expect("every API is a value of --api");
        f.write_str(value.get_name())
    }
}

impl Api {
    /// Whether answers stream tokens (all but embeddings).
    pub fn generates(self) -> bool {
        self != Api::Embeddings
    }

    /// The messages array a session's history grows in (chat, Responses, Messages).
    pub fn history_key(self) -> Option<&'static str> {
        match self {
            Api::Chat | Api::Messages => Some("messages"),
            Api::Responses => Some("input"),
            Api::Completions | Api::Embeddings => None,
        }
    }
}

/// `--endpoint-strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointStrategy {
    RoundRobin,
    Random,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    Auto,
    Always,
    Never,
}

/// `--continuous-usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContinuousUsage {
    Auto,
    On,
    Off,
}

/// Optional console columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowMetric {
    Itl,
    Tpot,
    Ttfb,
}

impl Arrival {
    /// `--arrival`'s own spelling (`poisson`, …).
    pub fn name(self) -> &'static str {
        match self {
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
            Arrival::Gamma => "gamma",
        }
    }
}

/// How gaps between arrivals are drawn.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced: one request every 1/qps seconds.
    Constant,
    /// Exponential gaps (a Poisson process) with mean 1/qps.
    Poisson,
    /// Gamma-distributed gaps with shape `--burstiness` and mean 1/qps, as vLLM's `bench serve`:
    /// below 1 burstier than Poisson, 1 is Poisson, above 1 more even.
    Gamma,
}
