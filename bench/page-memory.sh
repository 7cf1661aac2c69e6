#!/usr/bin/env bash
# The page's memory with GPT-2 124M's shape (issue 19): the engine's wasm memory after loading a random GPT-2 124M
# (`qlora init --preset gpt2`, the real 50,257-token vocabulary) as the reader's files, and once a QLoRA (nf4 + dq,
# int8) or LoRA (fp16, fp32) run is made on the CPU executor, each in a fresh headless Chromium tab; beside it what
# the run's executor measures and the accounting's theory. Needs what `cargo xtask test` installs.
# --preset gpt2-large: the same with gpt2-large's shape (774 M parameters; a 3.1 GB file), in the formats a tab can
# hold it in (16, 8 and 4 bits), each run also taking its first step.
# Usage: bench/page-memory.sh [--preset gpt2|gpt2-large]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo xtask dist >&2
cargo build --quiet --release --bin qlora
preset=gpt2
[[ "${1:-}" == --preset ]] && preset="${2:?--preset needs a name}"
flags=()
[[ "$preset" == gpt2-large ]] && flags=(--large --step)
model=bench/.models/$preset
[[ -f "$model/model.safetensors" ]] || target/release/qlora init --preset "$preset" --out "$model" >&2
port=8767
source bench/serve-dist.sh
serve_dist "$port"
echo "{\"facts\": true, \"date\": \"$(date -u +%Y-%m-%d)\", \"commit\": \"$(git rev-parse --short HEAD)\", \"browser\": \"$(/usr/bin/chromium --version)\"}"
node bench/page-memory.mjs "http://127.0.0.1:$port/" "$model" "${flags[@]}"
