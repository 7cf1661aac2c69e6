#!/usr/bin/env bash
# The page's CPU fallback (wasm in headless Chromium, on one thread and on one per core, with plain and with relaxed
# SIMD) against our native CPU executor on the same configurations and thread counts, alternating, with the ratios
# wasm/native. Needs what `cargo xtask test` installs (chromium, the page tests' npm packages). Arguments: rounds
# (default 3), measured steps per run (default 10).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
steps="${2:-10}"
cd "$root"
cargo xtask dist >&2
cargo build --quiet --release --bin qlora
port=8765
cargo xtask serve --no-build --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/bench.html" >/dev/null && break; sleep 0.2; done
out="$(mktemp -d)"
for i in $(seq "$rounds"); do
  for simd in plain relaxed; do
    url="http://127.0.0.1:$port/bench.html?backends=cpu&steps=$steps&simd=$simd"
    node bench/page-bench.mjs "$url" --one-thread > "$out/page-1-$simd-$i.json"
    node bench/page-bench.mjs "$url" > "$out/page-$(nproc)-$simd-$i.json"
  done
  for cfg in "lora fp32" "qlora nf4" "full fp32"; do
    set -- $cfg
    for threads in 1 "$(nproc)"; do
      ./target/release/qlora bench --backend cpu --model www/models/shakespeare --method "$1" --format "$2" \
        --batch 8 --seq 64 --steps "$steps" --threads "$threads" --json >> "$out/native-$threads.jsonl"
    done
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys, glob, os
out, rounds = sys.argv[1], int(sys.argv[2])
page = {}
products = {}
for f in sorted(glob.glob(os.path.join(out, "page-*.json"))):
    bench = json.load(open(f))
    for r in bench["results"]:
        page.setdefault((r["method"], r["format"], r["cpu_threads"], r["cpu_simd"]), []).append(r["tokens_per_s"])
    for r in bench.get("matmul", []):
        key = (f"{r['name']} ({r['m']} × {r['k']} × {r['n']})", r["cpu_threads"], r["cpu_simd"])
        products.setdefault(key, []).append(r["gflops"])
native = {}
for f in glob.glob(os.path.join(out, "native-*.jsonl")):
    threads = int(f.rsplit("-", 1)[1].split(".")[0])
    for line in open(f):
        r = json.loads(line)
        native.setdefault((r["method"], r["format"], threads), []).append(r["tokens_per_s"])
threads = sorted({k[2] for k in native})
print(f"Shipped model, batch 8 × seq 64; median tokens/s of {rounds} alternating runs per side\n")
print("| method | base | " + " | ".join(
    f"page, {t} thread(s), SIMD | page, {t} thread(s), relaxed SIMD | native, {t} thread(s) | wasm / native"
    for t in threads) + " |")
print("|---|---|" + "---:|" * (4 * len(threads)))
nan = [float("nan")]
for m, f in dict.fromkeys((k[0], k[1]) for k in page):
    cells = []
    for t in threads:
        plain = statistics.median(page.get((m, f, t, "simd128"), nan))
        relaxed = statistics.median(page.get((m, f, t, "relaxed"), nan))
        n = statistics.median(native[(m, f, t)])
        cells.append(f"{plain:.0f} | {relaxed:.0f} | {n:.0f} | {plain / n:.2f}× → **{relaxed / n:.2f}×**")
    print(f"| {m} | {f} | " + " | ".join(cells) + " |")
if products:
    runs = sorted({k[1:] for k in products}, key=lambda r: (r[0], r[1] != "simd128"))
    print(f"\nThe page's CPU matrix multiply, median GFLOP/s of {rounds} runs\n")
    print("| product | " + " | ".join(f"{t} thread(s), {'relaxed SIMD' if s == 'relaxed' else 'SIMD'}" for t, s in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for name in dict.fromkeys(k[0] for k in products):
        print(f"| {name} | " + " | ".join(f"{statistics.median(products[(name, *r)]):.1f}" for r in runs) + " |")
PY
