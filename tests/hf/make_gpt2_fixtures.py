"""Makes tests/fixtures/hf-gpt2/: a GPT-2 with GPT-2's real 50,257-token vocabulary, randomly initialised and saved by
transformers itself, with what transformers, bitsandbytes and PEFT compute on it (run by hand; CI only reads the
results).

  python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install torch transformers peft safetensors bitsandbytes==0.50.2
  cargo build --release
  /tmp/pyref/bin/python tests/hf/make_gpt2_fixtures.py

1. config.json + model.safetensors: GPT2LMHeadModel(vocab 50,257, 2 layers, width 8, 64 positions) as
   save_pretrained writes it (F32, `transformer.` names, lm_head tied and absent). The tokenizer files are not
   copied: the tests put the repository's assets/gpt2/ files beside them (the same bytes as the hub's).
2. expected.json: for a mixed-script text, transformers' ids and loss; the loss with the four block linears stored as
   NF4 with double quantization the way transformers + bitsandbytes store GPT-2's Conv1D weights (transposed to
   [out, in], quantize_4bit with blocks of 64, read back as `nf4_dq` says); greedy generation's ids from a prompt (with
   the smallest gap between the best and second-best logit, so a test knows the choice is not a tie); and the loss
   PEFT gives with adapter/ (written by our `qlora finetune` on this model).
"""
import json, os, shutil, subprocess, tempfile
import bitsandbytes.functional as F
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fx = os.path.join(root, "tests", "fixtures", "hf-gpt2")
qlora = os.environ.get("QLORA", os.path.join(root, "target", "release", "qlora"))
TEXT = "Ünïcode, 日本語 and emoji 👍🏽 — don't worry:\n\tThe quick brown fox jumps over the lazy dog.<|endoftext|>Done."
PROMPT = "The meaning of life is"

def make_model(seed):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=50257, n_positions=64, n_embd=8, n_layer=2, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "ln" in n or "bias" in n:  # off their trivial init, so the tests exercise them
                p.add_(0.1 * torch.randn_like(p))
        model.transformer.wte.weight.mul_(20)  # logits spread out, so greedy choices are rarely near ties
        for block in model.transformer.h:  # block linears that matter, so 4-bit storage changes the loss visibly
            for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                lin.weight.mul_(25)
    return model

def model_dir():
    """The fixture plus the repository's tokenizer files, as a Hugging Face GPT-2 directory holds them."""
    d = tempfile.mkdtemp()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(fx, f), d)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(root, "assets", "gpt2", f), d)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "bos_token": "<|endoftext|>",
                   "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, f)
    return d

def greedy(model, tok):
    """Greedy generation's new ids, and the smallest gap between the best and second-best logit along the way."""
    prompt = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        gen = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=50256)
        logits = model(gen[:, :-1]).logits[0, prompt.shape[1] - 1:]
    top2 = logits.topk(2, dim=-1).values
    return gen[0, prompt.shape[1]:].tolist(), (top2[:, 0] - top2[:, 1]).min().item()

# The first seed whose greedy choices are all clear (a gap of 0.01 or more), so a test of them cannot hinge on
# rounding.
os.makedirs(fx, exist_ok=True)
for seed in range(7, 100):
    model = make_model(seed)
    model.save_pretrained(fx)
    d = model_dir()
    tok = AutoTokenizer.from_pretrained(d)
    new, gap = greedy(model, tok)
    if gap >= 1e-2:
        break
    shutil.rmtree(d)
if os.path.exists(os.path.join(fx, "generation_config.json")):
    os.remove(os.path.join(fx, "generation_config.json"))
ids = tok.encode(TEXT)
assert len(ids) <= model.config.n_positions
x = torch.tensor([ids])
with torch.no_grad():
    loss = model(x, labels=x).loss.item()

def nf4_dq(w):
    """bitsandbytes' NF4 + double quantization of w, read back: quantize_4bit's packed codes and 8-bit absmax,
    decoded as its CUDA kernel decodes them (code × absmax per block of 64, the absmax from dequantize_blockwise plus
    the offset). bitsandbytes 0.50.2's CPU dequantize_4bit is not used: it scales blocks wrongly for tensors whose
    rows are shorter than a block (seen on [8, 32] and [16, 16]; [32, 8] and longer rows are right), as this
    fixture's c_proj [8, 32] is."""
    packed, state = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    flat = packed.flatten()
    nibbles = torch.stack([(flat >> 4) & 15, flat & 15], 1).flatten().long()[: w.numel()]
    absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
    values = state.code[nibbles] * absmax.repeat_interleave(64)[: w.numel()]
    return values.reshape(w.shape)

# NF4 + double quantization of the block linears, as bitsandbytes stores them for transformers.
q = GPT2LMHeadModel.from_pretrained(fx).eval()
with torch.no_grad():
    for block in q.transformer.h:
        for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            w = lin.weight.data.t().contiguous()  # Conv1D [in, out] → Linear [out, in]
            lin.weight.data = nf4_dq(w).t().contiguous()
    loss_nf4_dq = q(x, labels=x).loss.item()

# An adapter from our CLI, loaded by PEFT.
data = os.path.join(d, "train.txt")
with open(data, "w") as f:
    f.write("The harbour lights of Marseille glowed while the boats came home. " * 30)
adapter = os.path.join(fx, "adapter")
subprocess.run([qlora, "finetune", "--model", d, "--data", data, "--method", "lora", "--targets", "q,v,o,fc,proj",
                "--rank", "4", "--alpha", "8", "--steps", "30", "--lr", "1e-2", "--batch", "2", "--seq", "16",
                "--seed", "3", "--out", adapter], check=True, stdout=subprocess.DEVNULL)
from peft import PeftModel
peft_model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(fx), adapter).eval()
with torch.no_grad():
    peft_loss = peft_model(x, labels=x).loss.item()

import bitsandbytes, peft, transformers
json.dump({"text": TEXT, "ids": ids, "loss": loss, "loss_nf4_dq": loss_nf4_dq, "prompt": PROMPT,
           "greedy_ids": new, "greedy_min_gap": gap, "seed": seed, "peft_loss": peft_loss,
           "made_by": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                      f"bitsandbytes {bitsandbytes.__version__}, peft {peft.__version__}"},
          open(os.path.join(fx, "expected.json"), "w"), indent=1, ensure_ascii=True)
print("loss", loss, "nf4+dq", loss_nf4_dq, "peft", peft_loss, "gap", gap)
shutil.rmtree(d)
