#!/usr/bin/env bash
# The page's CPU fallback (wasm in headless Chromium, on one thread and on one per core, with plain and with relaxed
# SIMD) against our native CPU executor on the same configurations and thread counts, alternating, with the ratios
# wasm/native: training steps, and the matrix multiply on the training step's products.
# Needs what `cargo xtask test` installs (chromium, the page tests' npm packages).
# Usage: bench/page-bench.sh [ROUNDS (3)] [STEPS (10)] [--native-avx2]
# --native-avx2 also runs a native build without AVX-512 (its matrix multiply stops at AVX2's 8 lanes and the rest
# is compiled for x86-64-v3), as native code would run on most laptops.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
steps="${2:-10}"
avx2="${3:-}"
if [[ -n "$avx2" && "$avx2" != "--native-avx2" ]]; then
  echo "usage: bench/page-bench.sh [ROUNDS] [STEPS] [--native-avx2]" >&2
  exit 2
fi
cd "$root"
cargo xtask dist >&2
cargo build --quiet --release --bin qlora
natives=("native:target/release/qlora")
if [[ -n "$avx2" ]]; then
  CARGO_TARGET_DIR=target/avx2 RUSTFLAGS="-C target-cpu=x86-64-v3" \
    cargo build --quiet --release --no-default-features --features cli --bin qlora
  natives+=("native AVX2:target/avx2/release/qlora")
fi
port=8765
source bench/serve-dist.sh
serve_dist "$port"
out="$(mktemp -d)"
for i in $(seq "$rounds"); do
  for simd in plain relaxed; do
    url="http://127.0.0.1:$port/bench.html?backends=cpu&steps=$steps&simd=$simd"
    node bench/page-bench.mjs "$url" --one-thread > "$out/page-1-$simd-$i.json"
    node bench/page-bench.mjs "$url" > "$out/page-$(nproc)-$simd-$i.json"
  done
  for native in "${natives[@]}"; do
    label="${native%%:*}"
    bin="${native#*:}"
    for cfg in "lora fp32" "qlora nf4" "full fp32"; do
      set -- $cfg
      for threads in 1 "$(nproc)"; do
        "$bin" bench --backend cpu --model www/models/shakespeare --method "$1" --format "$2" --batch 8 --seq 64 \
          --steps "$steps" --threads "$threads" --json | sed "s/^{/{\"native\":\"$label\",\"threads\":$threads,/" \
          >> "$out/native-steps.jsonl"
      done
    done
    for threads in 1 "$(nproc)"; do
      "$bin" bench --matmul --backend cpu --threads "$threads" --json | grep '"product"' \
        | sed "s/^{/{\"native\":\"$label\",/" >> "$out/native-products.jsonl"
    done
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys, glob, os
out, rounds = sys.argv[1], int(sys.argv[2])
nan = float("nan")
med = lambda xs: statistics.median(xs) if xs else nan
page, products, peaks = {}, {}, {}
for f in sorted(glob.glob(os.path.join(out, "page-*.json"))):
    bench = json.load(open(f))
    for r in bench["results"]:
        page.setdefault((r["method"], r["format"], r["cpu_threads"], r["cpu_simd"]), []).append(r["tokens_per_s"])
    for r in bench.get("matmul", []):
        products.setdefault((r["name"], r["cpu_threads"], r["cpu_simd"]), []).append(r["gflops"])
    if bench.get("madd_peak"):
        peaks.setdefault(bench["madd_peak"]["cpu_simd"], []).append(bench["madd_peak"]["gflops"])
native, native_products, shapes = {}, {}, {}
for line in open(os.path.join(out, "native-steps.jsonl")):
    r = json.loads(line)
    native.setdefault((r["native"], r["method"], r["format"], r["threads"]), []).append(r["tokens_per_s"])
for line in open(os.path.join(out, "native-products.jsonl")):
    r = json.loads(line)
    native_products.setdefault((r["native"], r["product"], r["cpu_threads"]), []).append(r["gflops"])
    shapes[r["product"]] = f"{r['m']} × {r['k']} × {r['n']}"
labels = list(dict.fromkeys(k[0] for k in native))
threads = sorted({k[3] for k in native})
ratio = lambda a, b: f"{a / b:.2f}×"

print(f"Shipped model, batch 8 × seq 64; median tokens/s of {rounds} alternating runs per side")
for t in threads:
    print(f"\n{t} thread(s); wasm / native: plain SIMD → relaxed SIMD\n")
    print("| method | base | page, SIMD | page, relaxed SIMD | " + " | ".join(f"{l} | wasm / {l}" for l in labels) + " |")
    print("|---|---|---:|---:|" + "---:|---:|" * len(labels))
    for m, f in dict.fromkeys((k[0], k[1]) for k in page):
        plain, relaxed = med(page.get((m, f, t, "simd128"), [])), med(page.get((m, f, t, "relaxed"), []))
        cells = []
        for l in labels:
            n = med(native.get((l, m, f, t), []))
            cells.append(f"{n:.0f} | {ratio(plain, n)} → **{ratio(relaxed, n)}**")
        print(f"| {m} | {f} | {plain:.0f} | {relaxed:.0f} | " + " | ".join(cells) + " |")

print(f"\nThe CPU executor's matrix multiply on the training step's products, median GFLOP/s of {rounds} runs")
for t in threads:
    print(f"\n{t} thread(s)\n")
    print("| product | page, SIMD | page, relaxed SIMD | " + " | ".join(f"{l} | relaxed / {l}" for l in labels) + " |")
    print("|---|---:|---:|" + "---:|---:|" * len(labels))
    print(f"| one thread's multiply-add peak (12 f32x4 chains) | {med(peaks.get('simd128', [])):.1f} | "
          f"{med(peaks.get('relaxed', [])):.1f} | " + " | ".join(" | " for _ in labels) + " |")
    for name in dict.fromkeys(k[0] for k in products):
        plain, relaxed = med(products.get((name, t, "simd128"), [])), med(products.get((name, t, "relaxed"), []))
        cells = []
        for l in labels:
            n = med(native_products.get((l, name, t), []))
            cells.append(f"{n:.1f} | {ratio(relaxed, n)}")
        print(f"| {name} ({shapes.get(name, '?')}) | {plain:.1f} | {relaxed:.1f} | " + " | ".join(cells) + " |")
PY
