//! SSE framing + chunk parsing speed over a recorded 512-token stream (vLLM's wire format),
//! delivered in random read sizes as a socket would: the client's per-chunk parsing cost.
//! Also HTTP chunked decoding and histogram recording. Run: `cargo bench --bench parse`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use qpsbench::api::openai::ChunkParser;
use qpsbench::http::body::{encode_chunked, BodyDecoder, Framing};
use qpsbench::http::sse::{Flow, SseParser};
use qpsbench::recording::outcome::{Success, TokenSource};
use qpsbench::recording::recorder::Recorder;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

const STREAM: &[u8] = include_bytes!("../tests/data/vllm_stream_512.sse");

/// Read sizes between 1 and 4096 bytes, fixed by a seed.
fn random_splits(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Xoshiro256StarStar::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        pos += 1 + (rng.next_u64() % 4096) as usize;
        out.push(pos.min(len));
    }
    out
}

fn events_in_stream() -> u64 {
    let mut n = 0;
    SseParser::new()
        .feed(STREAM, |_| {
            n += 1;
            Flow::Continue
        })
        .unwrap();
    n
}

fn sse_and_chunks(c: &mut Criterion) {
    let splits = random_splits(STREAM.len(), 7);
    let events = events_in_stream();
    let mut g = c.benchmark_group("stream_512_tokens");
    g.throughput(Throughput::Elements(events));
    g.bench_function("sse_framing_only", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0u64;
            let mut last = 0;
            for &s in &splits {
                p.feed(&STREAM[last..s], |_| {
                    n += 1;
                    Flow::Continue
                })
                .unwrap();
                last = s;
            }
            assert_eq!(n, events);
        })
    });
    let mut chunks = ChunkParser::new();
    g.bench_function("sse_plus_chunk_json", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut tokens = 0u64;
            let mut last = 0;
            for &s in &splits {
                p.feed(&STREAM[last..s], |e| {
                    if !e.is_done() {
                        tokens += u64::from(chunks.parse(e.data).unwrap().has_output);
                    }
                    Flow::Continue
                })
                .unwrap();
                last = s;
            }
            assert_eq!(tokens, 512);
        })
    });
    // One HTTP chunk per SSE event, as servers write them.
    let sizes: Vec<usize> = STREAM
        .split_inclusive(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| pair.iter().map(|l| l.len()).sum())
        .collect();
    let wire = encode_chunked(STREAM, &sizes);
    let wire_splits = random_splits(wire.len(), 9);
    g.bench_function("http_chunked_plus_sse_plus_json", |b| {
        b.iter(|| {
            let mut body = BodyDecoder::new(Framing::Chunked);
            let mut p = SseParser::new();
            let mut tokens = 0u64;
            let mut last = 0;
            for &s in &wire_splits {
                let mut piece = &wire[last..s];
                while !piece.is_empty() && !body.is_done() {
                    let (n, data) = body.decode(piece).unwrap();
                    if let Some(d) = data {
                        p.feed(d, |e| {
                            if !e.is_done() {
                                tokens += u64::from(chunks.parse(e.data).unwrap().has_output);
                            }
                            Flow::Continue
                        })
                        .unwrap();
                    }
                    piece = &piece[n..];
                }
                last = s;
            }
            assert_eq!(tokens, 512);
        })
    });
    g.finish();
}

fn histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("recorder");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("record_1000_successes", |b| {
        b.iter_batched(
            Recorder::new,
            |mut r| {
                for i in 0..1000u64 {
                    r.record_send(i * 1000, i * 7, false, 0);
                    r.record_success(Success {
                        ttft_ns: Some(100_000_000 + i * 1000),
                        e2e_ns: 2_000_000_000 + i * 10_000,
                        output_tokens: 200 + i % 50,
                        source: TokenSource::Usage,
                        prompt_tokens: Some(100),
                        cached_tokens: None,
                        token_reads: 10,
                        ttfb_ns: 1_000_000,
                        decode_ns: 1_000_000,
                        done_ns: 2_000_000_000 + i * 1_000_000,
                        reasoning: Default::default(),
                    });
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn single_chunk(c: &mut Criterion) {
    let chunk = br#"{"id":"chatcmpl-8f2c1e0b6a5d4c3b","object":"chat.completion.chunk","created":1732700000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" quick"},"logprobs":null,"finish_reason":null}]}"#;
    let mut p = ChunkParser::new();
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_one_content_chunk", |b| {
        b.iter(|| p.parse(chunk).unwrap())
    });
    g.finish();
}

criterion_group!(benches, sse_and_chunks, histograms, single_chunk);
criterion_main!(benches);
