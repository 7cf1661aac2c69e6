"""Makes the Hugging Face parity fixtures in tests/fixtures/ (run by hand; CI only reads the results).

  python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install torch transformers peft safetensors numpy
  cargo build --release
  /tmp/pyref/bin/python tests/hf/make_fixtures.py

1. hf-tiny/: a randomly initialised transformers GPT2LMHeadModel (byte vocabulary, 2 layers, width 32) saved with
   save_pretrained, and expected.safetensors: its logits and mean loss on a fixed byte sequence.
2. peft-adapter/: an adapter trained by `qlora finetune --method lora` on that model, and peft_expected.json: the
   loss PEFT's PeftModel.from_pretrained gives on the same sequence with it.
"""
import json, os, subprocess, sys
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fx = os.path.join(root, "fixtures")
qlora = os.path.join(os.path.dirname(root), "target", "release", "qlora")
TEXT = b"To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer"

torch.manual_seed(0)
cfg = GPT2Config(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
model = GPT2LMHeadModel(cfg).eval()
with torch.no_grad():  # move LayerNorm and biases off their trivial init so the test exercises them
    for n, p in model.named_parameters():
        if "ln" in n or "bias" in n:
            p.add_(0.1 * torch.randn_like(p))
model.save_pretrained(os.path.join(fx, "hf-tiny"))
tokens = torch.tensor([list(TEXT[:32])])
with torch.no_grad():
    out = model(tokens, labels=tokens)
save_file({"tokens": tokens[0].to(torch.int64), "logits": out.logits[0].contiguous(), "loss": out.loss.reshape(1)},
          os.path.join(fx, "hf-tiny", "expected.safetensors"))
print("hf loss", out.loss.item())

# An adapter from our CLI, loaded by PEFT.
data = os.path.join(fx, "peft-train.txt")
with open(data, "w") as f:
    f.write("Anna sat by the window and counted the boats in the harbour. " * 40)
subprocess.run([qlora, "finetune", "--model", os.path.join(fx, "hf-tiny"), "--data", data, "--method", "lora",
                "--targets", "q,v,o,fc,proj", "--rank", "4", "--alpha", "8", "--steps", "40", "--lr", "1e-2",
                "--batch", "4", "--seq", "16", "--seed", "3", "--out", os.path.join(fx, "peft-adapter")], check=True,
               stdout=subprocess.DEVNULL)
from peft import PeftModel
peft_model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(os.path.join(fx, "hf-tiny")),
                                       os.path.join(fx, "peft-adapter")).eval()
with torch.no_grad():
    ploss = peft_model(tokens, labels=tokens).loss.item()
json.dump({"tokens": TEXT[:32].decode(), "loss": ploss, "peft": __import__("peft").__version__,
           "transformers": __import__("transformers").__version__, "torch": torch.__version__},
          open(os.path.join(fx, "peft_expected.json"), "w"), indent=2)
print("peft loss", ploss)
