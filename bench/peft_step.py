"""The training step of Hugging Face transformers + PEFT (+ bitsandbytes for nf4), timed the way `qlora bench` times
ours: the same model directory, batch, sequence, rank, adapted modules, gradient clipping and AdamW; median seconds
per step after warm-up steps. Prints one JSON line. Run by bench/side-by-side.sh inside its own virtual environment
(the CPU) and by bench/gpu.sh (`--device cuda`).
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
import transformers
import peft
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

# Our target names and the GPT-2 modules they are (PEFT adapts the fused c_attn whole, as our `qkv` does).
MODULES = {"qkv": r"attn\.c_attn", "o": r"attn\.c_proj", "fc": r"mlp\.c_fc", "proj": r"mlp\.c_proj"}


def modules(targets: str) -> str:
    return r".*\.(" + "|".join(MODULES[t] for t in targets.split(",")) + ")"


def load(a):
    if a.model is None:
        # A GPT-2-shaped model with our byte vocabulary, randomly initialised: speed does not depend on the values.
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_layer=a.layers, n_head=a.heads, n_embd=a.embd, n_positions=a.ctx, vocab_size=256,
                         attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, activation_function="gelu_new")
        assert a.format == "fp32", "random-shape models are benchmarked with an fp32 base only"
        return GPT2LMHeadModel(cfg).to(a.device)
    return load_dir(a.model, a.format, a.double_quant, a.device)


def load_dir(model_dir: str, fmt: str, double_quant: bool, device: str):
    # Dropout is off in the shipped config, as in our engine; eager attention is what a CPU user gets by default for
    # GPT-2 when sdpa is unavailable, so we take the library's default instead of choosing for it.
    if fmt == "fp32":
        return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).to(device)
    from transformers import BitsAndBytesConfig

    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=fmt,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.float32,
    )
    return AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=q, torch_dtype=torch.float32,
                                                device_map=device)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", help="a model directory; without it, a random model of the shape below")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--embd", type=int, default=256)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--method", choices=["lora", "qlora", "full"], default="lora")
    p.add_argument("--format", default="fp32", help="fp32, or nf4/fp4 through bitsandbytes")
    p.add_argument("--double-quant", action="store_true", help="bitsandbytes' double quantization of the absmax")
    p.add_argument("--targets", default="qkv,o,fc,proj", help="our names: qkv, o, fc, proj")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (bench/gpu.sh)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = load(a)
    if a.method != "full":
        cfg = LoraConfig(r=a.rank, lora_alpha=a.rank, lora_dropout=0.0, bias="none", target_modules=modules(a.targets),
                         fan_in_fan_out=True)
        model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    x = torch.randint(0, vocab, (a.batch, a.seq)).to(a.device)

    def step() -> None:
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), x.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        # Reading the loss waits for every kernel queued before it (one CUDA stream), so a step's time is all of it.
        loss.detach().item()

    times = []
    for i in range(a.steps + 2):
        t0 = time.perf_counter()
        step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "tokens_per_s": a.batch * a.seq / med, "ms_per_step": med * 1e3, "method": a.method, "format": a.format,
        "batch": a.batch, "seq": a.seq, "rank": a.rank, "threads": a.threads,
        "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu", "trainable": sum(p.numel() for p in params),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }))


if __name__ == "__main__":
    main()
