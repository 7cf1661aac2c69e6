#!/usr/bin/env bash
# The page's CPU fallback at GPT-2 124M's scale (issue 21): bench.html?model=gpt2 (a random GPT-2 made in the tab,
# the real 50,257-token vocabulary; LoRA r 8 on c_attn over fp32 and QLoRA r 8 nf4 + dq on every block linear, batch
# 4 × 128) on one thread and on one per core, against `qlora bench --backend cpu --preset gpt2` on the same
# configurations and thread counts, alternating. Prints what a reader waits per step and the ratio wasm ÷ native, and
# writes every run (after a line of facts: date, commit, CPU) to docs/bench/page-gpt2-<browser>.jsonl.
# Needs what `cargo xtask test` installs (the browsers, the page tests' npm packages).
# Usage: bench/page-bench-gpt2.sh [ROUNDS (3)] [STEPS (3)] [chromium|firefox]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
steps="${2:-3}"
browser="${3:-chromium}"
if [[ "$browser" != chromium && "$browser" != firefox ]]; then
  echo "usage: bench/page-bench-gpt2.sh [ROUNDS] [STEPS] [chromium|firefox]" >&2
  exit 2
fi
cd "$root"
cargo xtask dist >&2
cargo build --quiet --release --bin qlora
port=8766
source bench/serve-dist.sh
serve_dist "$port"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
raw="docs/bench/page-gpt2-$browser.jsonl"
echo "{\"facts\": true, \"date\": \"$(date -u +%Y-%m-%d)\", \"commit\": \"$(git rev-parse --short HEAD)\", \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"cores\": $(nproc), \"browser\": \"$browser\", \"steps\": $steps}" > "$raw"
# Page lines as bench.html wrote them, tagged with their round; native lines tagged with threads and targets.
page_lines() { python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))
for r in b["results"]:
    print(json.dumps({"side": "page", "round": int(sys.argv[2]), "userAgent": b["userAgent"], **r}))' "$1" "$2"; }
for i in $(seq "$rounds"); do
  url="http://127.0.0.1:$port/bench.html?model=gpt2&steps=$steps"
  node bench/page-bench.mjs "$url" --browser "$browser" --one-thread > "$out/one.json"
  node bench/page-bench.mjs "$url" --browser "$browser" > "$out/threads.json"
  page_lines "$out/one.json" "$i" >> "$raw"
  page_lines "$out/threads.json" "$i" >> "$raw"
  # Native on the page's own thread counts (one, and what the browser gave its pool).
  pool=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0]["cpu_threads"])' "$out/threads.json")
  for cfg in "lora fp32 qkv" "qlora nf4 qkv,o,fc,proj --double-quant"; do
    set -- $cfg
    for threads in 1 "$pool"; do
      target/release/qlora bench --backend cpu --preset gpt2 --method "$1" --format "$2" --targets "$3" ${4:-} \
        --rank 8 --batch 4 --seq 128 --steps "$steps" --threads "$threads" --json \
        | sed "s/^{/{\"side\":\"native\",\"round\":$i,\"threads\":$threads,\"targets\":\"$3\",/" >> "$raw"
    done
  done
done
python3 - "$raw" "$rounds" "$browser" <<'PY'
import json, statistics, sys
raw, rounds, browser = sys.argv[1], int(sys.argv[2]), sys.argv[3]
page, native = {}, {}
for line in open(raw):
    r = json.loads(line)
    if r.get("side") == "page":
        page.setdefault((r["method"], r["cpu_threads"]), []).append(r["ms_per_step"])
    elif r.get("side") == "native":
        native.setdefault((r["method"], r["threads"]), []).append(r["ms_per_step"])
print(f"GPT-2 124M (random weights, vocabulary 50,257), batch 4 × 128, r 8; median ms per step of {rounds} alternating "
      f"runs per side; the page in headless {browser}, relaxed SIMD")
print()
print("| run | threads | page (wasm), ms/step | native, ms/step | wasm ÷ native |")
print("|---|---:|---:|---:|---:|")
names = {"lora": "LoRA on c_attn, fp32 base", "qlora": "QLoRA nf4 + dq, every block linear"}
for (method, threads) in sorted(page):
    p, n = statistics.median(page[(method, threads)]), statistics.median(native.get((method, threads), [float("nan")]))
    print(f"| {names[method]} | {threads} | {p:,.0f} | {n:,.0f} | {p / n:.2f}× |")
PY
