#!/usr/bin/env bash
# The page's CPU fallback (wasm in headless Chromium, one thread) against our native CPU executor on the same
# configurations, alternating, with the ratio wasm/native. Needs what `cargo xtask test` installs (chromium, the
# page tests' npm packages). Arguments: rounds (default 3), measured steps per run (default 10).
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
  node bench/page-bench.mjs "http://127.0.0.1:$port/bench.html?backends=cpu&steps=$steps" > "$out/page-$i.json"
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
for f in sorted(glob.glob(os.path.join(out, "page-*.json"))):
    for r in json.load(open(f))["results"]:
        page.setdefault((r["method"], r["format"]), []).append(r["tokens_per_s"])
native = {}
for f in glob.glob(os.path.join(out, "native-*.jsonl")):
    threads = int(f.rsplit("-", 1)[1].split(".")[0])
    for line in open(f):
        r = json.loads(line)
        native.setdefault((r["method"], r["format"], threads), []).append(r["tokens_per_s"])
threads = sorted({k[2] for k in native})
print(f"Shipped model, batch 8 × seq 64; median tokens/s of {rounds} alternating runs per side\n")
print("| method | base | page, wasm CPU (1 thread) | " + " | ".join(f"native, {t} thread(s)" for t in threads) + " | " +
      " | ".join(f"wasm / native {t}" for t in threads) + " |")
print("|---|---|---:|" + "---:|" * (2 * len(threads)))
for (m, f), v in page.items():
    w = statistics.median(v)
    n = [statistics.median(native[(m, f, t)]) for t in threads]
    print(f"| {m} | {f} | {w:.0f} | " + " | ".join(f"{x:.0f}" for x in n) + " | " +
          " | ".join(f"**{w / x:.2f}×**" for x in n) + " |")
PY
