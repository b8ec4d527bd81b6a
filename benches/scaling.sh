#!/usr/bin/env bash
# Client scaling on a many-core machine, as one bounded script (a few minutes): `qpsbench
# selftest` with 1, 4 and 8 client cores (the endpoint on the other CPUs), then the client's CPU
# per streamed token at ~64 concurrent streams on one client core (the e2e bench's setting).
#
#   cargo build --release && OUT=/tmp/scaling bash benches/scaling.sh
#
# Everything it starts is bounded by `timeout` or `--exit-after` and runs on loopback only.
set -u
BIN=${BIN:-target/release/qpsbench}
OUT=${OUT:-/tmp/qpsbench-scaling}
mkdir -p "$OUT"
{ nproc; uname -r; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|NUMA node\(s\)'; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
n=$(nproc)
for c in 1 4 8; do
  [ "$c" -lt "$n" ] || continue
  echo "== selftest, $c client core(s)"
  timeout 170 "$BIN" selftest --client-cores "$c" --rates 1000,5000,10000,20000,40000,80000 \
    --duration 1.5 --busy-poll both --results-dir "$OUT/selftest-$c" > "$OUT/selftest-$c.txt" 2>&1
  grep -E '^SELFTEST|^[0-9]|^Headline' "$OUT/selftest-$c.txt"
done
# CPU per token: endpoint on the upper half of the CPUs, client on CPU 0.
half=$((n / 2))
printf '[{"prompt_content":"hi","cut_chat_history":[]}]' > "$OUT/ds.json"
for k in 1 16; do
  taskset -c "$half-$((n - 1))" "$BIN" serve-mock --port 0 --threads "$half" --ttft-ms 10 \
    --itl-ms 1 --output-tokens 64 --tokens-per-chunk "$k" --exit-after 30 > "$OUT/mock-$k.txt" 2>&1 &
  mock=$!
  for _ in $(seq 50); do grep -q listening "$OUT/mock-$k.txt" && break; sleep 0.1; done
  url=$(grep -o 'http://[^ ]*' "$OUT/mock-$k.txt")
  echo "== 1000 QPS, 64-token streams, $k token(s)/chunk, 1 client core"
  timeout 60 "$BIN" --endpoint "$url" --api-key k --model m \
    --dataset "$OUT/ds.json" --qps 1000 --duration 5 --cores 1 --results-dir "$OUT/cpu-$k" \
    --continuous-usage off 2>&1 | grep -E 'sent|CLIENT'
  python3 - "$OUT/cpu-$k" <<'PY'
import glob, json, sys
l = json.load(open(glob.glob(sys.argv[1] + '/*/benchmark_qps_results.json')[0]))[0]
print('send lag', l['send_lag_us'], 'cpu us/token', l['client_cpu_us_per_token'],
      'cpu us/request', l['client_cpu_us_per_request'], 'busy', l['client_cpu_per_core'])
PY
  kill "$mock" 2>/dev/null; wait "$mock" 2>/dev/null
done
