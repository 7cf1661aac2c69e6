#!/usr/bin/env bash
# Our CPU training step against Hugging Face transformers + PEFT (+ bitsandbytes) on the same machine, the same model
# shape, batch, sequence, rank, adapted modules and thread count. Creates its own Python virtual environment
# (bench/.venv, from bench/requirements.txt) the first time. Extra arguments go to bench/side_by_side.py
# (e.g. --threads 2 --rounds 5 --shapes shipped,gpt2-small).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  echo "side-by-side: creating $venv (torch, transformers, peft, bitsandbytes; a few GB, once)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
(cd "$root" && cargo build --quiet --release --bin qlora)
exec "$venv/bin/python" "$here/side_by_side.py" --qlora "$root/target/release/qlora" --root "$root" "$@"
