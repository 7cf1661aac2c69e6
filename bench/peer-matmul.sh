#!/usr/bin/env bash
# Our f32 WGSL matmul beside Burn's (CubeCL → WGSL, autotuned) on the same WebGPU adapter, in one run
# (bench/peer-matmul: a bench-only tool outside the crate, with its own lock file). Arguments: repetitions (default 5).
# On a machine without a GPU the adapter is Mesa's lavapipe (Vulkan on the CPU): a ratio of two WGSL kernels on the
# same emulated device, not a speed claim for real GPUs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo build --quiet --release --manifest-path "$here/peer-matmul/Cargo.toml"
XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" exec "$here/peer-matmul/target/release/peer-matmul" "$@"
