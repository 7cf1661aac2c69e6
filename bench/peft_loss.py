"""An exported run's adapter in Hugging Face PEFT + bitsandbytes, next to our CLI: the same loss on the same text.

    bench/.venv/bin/python bench/peft_loss.py RUN.zip [--model www/models/shakespeare] [--text FILE] [--qlora BIN]

Unzips the run (the page's "Export run"), reads its settings from run.json, loads the base as transformers does
(4-bit through BitsAndBytesConfig for a QLoRA run on nf4/fp4, fp32 otherwise), applies the adapter with
PeftModel.from_pretrained, and prints the mean next-byte loss of the first window of the text beside `qlora eval`'s
with the same adapter and base format.

The model runs in training mode (no dropout in GPT-2's config or a run's adapter): in eval mode, bitsandbytes 0.50
takes a bf16 inference path on CPUs with AVX512-BF16, whose rounding moves the loss by ~1e-3.
"""
import argparse
import json
import subprocess
import tempfile
import zipfile
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, BitsAndBytesConfig


def main():
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a zip from the page's Export run")
    ap.add_argument("--model", type=Path, default=root / "www/models/shakespeare")
    ap.add_argument("--text", type=Path, default=root / "README.md", help="the first 256 bytes are scored")
    ap.add_argument("--qlora", type=Path, default=root / "target/release/qlora")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="peft-loss-"))
    with zipfile.ZipFile(a.run) as z:
        z.extractall(work)
    settings = json.loads((work / "run.json").read_text())["settings"]
    if settings["method"] == "full":
        raise SystemExit("a full fine-tuning run exports a model, not an adapter: load it with from_pretrained")
    text = work / "window.txt"
    config = json.loads((a.model / "config.json").read_text())
    text.write_bytes(a.text.read_bytes()[: config["n_positions"]])

    four_bit = settings["format"] in ("nf4", "fp4")
    quant = None
    if four_bit:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=settings["format"],
            bnb_4bit_use_double_quant=settings["dq"],
            bnb_4bit_compute_dtype=torch.float32,
        )
    elif settings["format"] != "fp32":
        raise SystemExit(f"base format {settings['format']}: transformers has no loader for it; use fp32, nf4 or fp4")
    base = AutoModelForCausalLM.from_pretrained(a.model, quantization_config=quant, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, work)
    model.train()
    ids = torch.tensor([list(text.read_bytes())])
    with torch.no_grad():
        logits = model(input_ids=ids[:, :-1]).logits.float()
        theirs = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()

    cmd = [str(a.qlora), "eval", "--model", str(a.model), "--adapter", str(work), "--text-file", str(text),
           "--backend", "cpu", "--json"]
    if settings["format"] != "fp32":
        cmd += ["--format", settings["format"]] + (["--double-quant"] if settings["dq"] else [])
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])["loss"]
    print(json.dumps({"run": a.run.name, "base": settings["format"] + ("+dq" if settings["dq"] else ""),
                      "tokens": ids.shape[1] - 1, "peft_loss": theirs, "qlora_loss": ours,
                      "difference": abs(theirs - ours)}))


if __name__ == "__main__":
    main()
