#!/usr/bin/env bash
# Issue 21's real-GPU record, in one run of a few minutes: our WGSL matmuls (`qlora bench --matmul --backend gpu`) and
# GPT-2 124M's training step (random weights, real vocabulary, batch 4 × 128, r = 8: LoRA on c_attn over an fp32
# base, QLoRA nf4 + double quantization on every block linear) beside PyTorch's matmul and the transformers + PEFT
# (+ bitsandbytes) step on CUDA, then each kernel of the QLoRA step timed alone (`qlora bench --profile
# --time-kernels`). The raw lines go to docs/bench/gpu-<date>-<gpu>.jsonl, the profile beside them
# (gpu-<date>-<gpu>-profile.txt), and a dated section with the hardware, driver and commands into BENCHMARKS.md.
#
#   bench/gpu.sh [--qlora BIN] [--python PY] [--out DIR] [--batch B] [--seq T] [--steps N] [--no-record]
#
# --qlora: a release `qlora` built elsewhere (default: cargo build --release here). --python: a Python with torch,
# transformers and peft (default python3; bitsandbytes for the nf4 rows, else they say "skipped"). --out: also copy
# the raw lines and the section there. --no-record: leave BENCHMARKS.md and docs/bench/ alone (a smoke run).
# GPU_SH_COMMIT names the commit measured where the copy has no .git (default: git rev-parse here).
# Without CUDA the PyTorch side runs on the CPU and every row names the device it ran on: a smoke test, not a record.
# On a GPU machine without Rust, build the binary elsewhere on x86-64 without debug info (a fraction of the size:
# `CARGO_PROFILE_RELEASE_DEBUG=0 cargo build --release --bin qlora`), copy it over with this repository and pass
# --qlora; it needs the Vulkan loader (libvulkan1) and the GPU's Vulkan driver there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
qlora="" py=python3 out="" batch=4 seq=128 steps=10 record=1
while [ $# -gt 0 ]; do
  case "$1" in
    --qlora) qlora="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --no-record) record=0; shift ;;
    *) echo "gpu.sh: unknown argument $1 (see the comment at the top of bench/gpu.sh)" >&2; exit 2 ;;
  esac
done
if [ -z "$qlora" ]; then
  (cd "$root" && cargo build --quiet --release --bin qlora)
  qlora="$root/target/release/qlora"
fi
if ! "$py" -c 'import torch, transformers, peft' 2>/dev/null; then
  echo "gpu.sh: $py lacks torch, transformers or peft (pip install -r bench/requirements.txt)" >&2
  exit 2
fi
device=$("$py" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
if [ "$device" != cuda ]; then
  echo "gpu.sh: PyTorch sees no CUDA device; its side runs on the CPU (a smoke run: nothing is recorded)" >&2
  record=0
fi

# wgpu's Vulkan loader wants a runtime directory (it only warns without one).
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}"
work="$(mktemp -d)"
raw="$work/raw.jsonl"
# A run that stops part way (a peer that fails on this driver, a time limit) still hands --out what it measured.
keep_partial() {
  if [ -n "$out" ] && [ -s "$raw" ] && [ ! -e "$work/done" ]; then
    mkdir -p "$out" && cp "$raw" "$out/gpu-partial.jsonl"
  fi
  rm -rf "$work"
}
trap keep_partial EXIT
trap 'exit 143' TERM INT
log() { echo "gpu.sh: $*" >&2; }
# Each tool's JSON lines, tagged with who printed them and what was asked.
tag() { "$py" -c 'import json, sys
side, config = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    if line.startswith("{"):
        row = json.loads(line); row.update(side=side, config=config); print(json.dumps(row), flush=True)' "$1" "$2"; }
# measure SIDE CONFIG COMMAND...: the command's JSON lines, tagged, into the raw file. A command that gives no result
# (a driver that refuses a kernel, a peer's missing build) becomes one row saying so, with its exit status and last
# line, and the run goes on; a result printed before a failing exit (a crash at teardown) is kept as it is.
measure() {
  local side="$1" config="$2" rc=0 before
  shift 2
  "$@" > "$work/out" 2> "$work/err" || rc=$?
  cat "$work/err" >&2
  before=$(wc -l < "$raw")
  tag "$side" "$config" < "$work/out" >> "$raw" || log "$side $config: a line of its output was not JSON"
  if [ "$(wc -l < "$raw")" = "$before" ]; then
    "$py" -c 'import json, sys
lines = open(sys.argv[1], errors="replace").read().strip().splitlines() or ["no message"]
print(json.dumps({"skipped": f"no result (exit {sys.argv[2]}): " + lines[-1][:200]}))' "$work/err" "$rc" |
      tag "$side" "$config" >> "$raw" || log "$side $config: no result, and its failure could not be recorded"
  fi
}

{
  echo "{\"facts\": true, \"date\": \"$(date -u +%Y-%m-%d)\", \"commit\": \"${GPU_SH_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}\","
  echo " \"gpu\": \"$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)\","
  echo " \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"cores\": $(nproc),"
  echo " \"torch\": \"$("$py" -c 'import torch; print(torch.__version__, torch.version.cuda)')\","
  echo " \"batch\": $batch, \"seq\": $seq, \"steps\": $steps}"
} | tr -d '\n' > "$raw"
echo >> "$raw"

log "GPT-2 124M's shape with random weights (qlora init --preset gpt2)"
"$qlora" init --preset gpt2 --out "$work/gpt2" > /dev/null

log "matmul: ours (WGSL), then PyTorch's at the sizes ours chose (1024³ and 4096³ on a GPU)"
measure ours matmul "$qlora" bench --matmul --backend gpu --json
sizes=$("$py" -c 'import json, sys
print(",".join(sorted({str(json.loads(l)["size"]) for l in open(sys.argv[1]) if "\"kernel\"" in l}, key=int)))' "$raw")
# `qlora bench --matmul` takes 1024³ and 4096³ on a GPU and 256³, 512³ on a CPU adapter: wgpu found no GPU's Vulkan
# driver (a container without NVIDIA's graphics capability falls back to lavapipe), and such a run is no record.
if [ "$sizes" != "1024,4096" ]; then
  echo "gpu.sh: our side ran on a CPU adapter or not at all (no GPU Vulkan driver found?): a smoke run, nothing is recorded" >&2
  record=0
fi
measure peer matmul "$py" "$here/torch_matmul.py" --device "$device" --sizes "${sizes:-1024,4096}"

# name | method | format | targets | extra
configs=(
  "lora-c_attn-fp32|lora|fp32|qkv|"
  "qlora-nf4-dq-all|qlora|nf4|qkv,o,fc,proj|--double-quant"
)
for c in "${configs[@]}"; do
  IFS='|' read -r name method format targets extra <<< "$c"
  common=(--model "$work/gpt2" --method "$method" --format "$format" --targets "$targets" --rank 8
    --batch "$batch" --seq "$seq" --steps "$steps")
  [ -n "$extra" ] && common+=("$extra")
  log "GPT-2 step, $name: ours"
  measure ours "$name" "$qlora" bench --backend gpu --json "${common[@]}"
  log "GPT-2 step, $name: transformers + PEFT"
  if [ "$format" != fp32 ] && ! "$py" -c 'import bitsandbytes' 2>/dev/null; then
    echo "{\"skipped\": \"bitsandbytes is not installed\"}" | tag peer "$name" >> "$raw"
  else
    measure peer "$name" "$py" "$here/peft_step.py" "${common[@]}" --threads "$(nproc)" --device "$device"
  fi
done

# What each kernel of the QLoRA step costs on paper beside what it takes on this GPU, dispatch by dispatch (GPU
# timestamps): what the paper count leaves out (launches, barriers, idle lanes) over the step's ~600 dispatches.
log "GPT-2 step, qlora-nf4-dq-all: each kernel timed alone (qlora bench --profile --time-kernels)"
profile="$work/profile.txt"
"$qlora" bench --backend gpu --profile --time-kernels --model "$work/gpt2" --method qlora --format nf4 \
  --targets qkv,o,fc,proj --double-quant --rank 8 --batch "$batch" --seq "$seq" --steps 5 > "$profile" ||
  echo "(qlora bench --profile --time-kernels failed; its message is in the log)" >> "$profile"

section="$work/section.md"
"$py" "$here/gpu_report.py" "$raw" > "$section"
cat "$section"
slug=$("$py" -c 'import json, re, sys
f = json.loads(open(sys.argv[1]).readline())
print(f["date"] + "-" + (re.sub(r"[^a-z0-9]+", "-", f["gpu"].split(",")[0].lower()).strip("-") or "no-gpu"))' "$raw")
if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$raw" "$out/gpu-$slug.jsonl"
  cp "$section" "$out/gpu-$slug.md"
  cp "$profile" "$out/gpu-$slug-profile.txt"
fi
touch "$work/done"
if [ "$record" = 1 ]; then
  cp "$raw" "$root/docs/bench/gpu-$slug.jsonl"
  cp "$profile" "$root/docs/bench/gpu-$slug-profile.txt"
  "$py" - "$root/BENCHMARKS.md" "$section" <<'EOF'
import sys
path, section = sys.argv[1], open(sys.argv[2]).read()
marker = "<!-- bench/gpu.sh records its runs below this line, newest first -->\n"
text = open(path).read()
assert marker in text, f"{path} lost the marker line bench/gpu.sh inserts after"
open(path, "w").write(text.replace(marker, marker + "\n" + section, 1))
EOF
  log "recorded in BENCHMARKS.md and docs/bench/gpu-$slug.jsonl (on the first record, drop its \"Not measured yet\" line)"
fi
