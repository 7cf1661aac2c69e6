"""Makes tests/fixtures/gpt2-bpe/golden.json: the ids transformers' GPT-2 tokenizer gives for a set of texts (run by
hand; CI only reads the result).

  python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install transformers tokenizers
  /tmp/pyref/bin/python tests/hf/make_bpe_fixtures.py

The tokenizer is built from the repository's own assets/gpt2/{vocab.json,merges.txt} (GPT-2's published files), the
way `AutoTokenizer.from_pretrained("openai-community/gpt2")` builds it. The texts: hand-picked cases (whitespace runs,
newlines, tabs, contractions in any case, digits, accents, CJK, emoji sequences, `<|endoftext|>` in the text, Unicode
spaces) and seeded random strings drawn from the same kinds of characters, so every rule of the pre-tokenizer's
pattern meets its neighbours.
"""
import json, os, random, shutil, tempfile
import tokenizers, transformers
from transformers import AutoTokenizer, GPT2Tokenizer

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = os.path.join(root, "tests", "fixtures", "gpt2-bpe", "golden.json")

with tempfile.TemporaryDirectory() as d:
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(root, "assets", "gpt2", f), d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2"}, f)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "bos_token": "<|endoftext|>",
                   "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, f)
    tok = AutoTokenizer.from_pretrained(d)
    slow = GPT2Tokenizer(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))

CASES = [
    "Hello world",
    "  leading  spaces   and\ttabs\t\t\n\n\nnewlines \n \n",
    "don't I'LL we've they'Re 's 'S 'd 'M 'll 've 're 't",
    "1234567 3.14159 1,000,000 ٣٤٥ １２３ ²³",
    "café naïve Ünïcödé résumé e\u0301 Å",
    "日本語のテキスト 中文 한국어 ภาษาไทย Ελληνικά русский עברית العربية",
    "👩‍👩‍👧‍👦 🇫🇷 👍🏽 ❤️ 1️⃣",
    "a\u0085b\u00a0c\u1680d\u200be\u2028f\u3000g\ufeffh\u2029i\u202fj\u205fk",
    "x<|endoftext|>y <|endoftext|> z<|endoftext|><|endoftext|>\n<|endoftext|>",
    "<|endoftext",
    "\u000b\u000c\u001c\u001d\u001e\u001f end\u0000\u0001\u007f",
    "trailing space ",
    "   ",
    "\r\n\r\n",
    "x \u00a0 y",
    "emoji\U0001F600\U0001F600",
    "def f(x):\n    return x**2  # square\n\n\tpass",
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.",
    "",
]

POOLS = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\u200b", "'", "'s", "'T", "'ll",
         "’", "a", "Z", "é", "ß", "ǅ", "ж", "中", "語", "ー", "ㄱ", "é", "0", "7", "٣", "①", "½", ".", ",", "!", "?",
         "-", "_", "@", "#", "$", "€", "\"", "(", ")", "<|endoftext|>", "😀", "👍🏽", "‍", "🇫", "̀", "\u0301", "\ufeff",
         "\x01", "\x7f", "\U0001D400", "\U00020000"]
rng = random.Random(20261201)
RANDOM = ["".join(rng.choice(POOLS) for _ in range(rng.randint(1, 40))) for _ in range(300)]

texts = CASES + RANDOM
golden = []
for t in texts:
    ids = tok.encode(t, add_special_tokens=False)
    assert ids == slow.encode(t), t
    golden.append({"text": t, "ids": ids, "decoded": tok.decode(ids)})
with open(out, "w") as f:
    # One case a line: a diff shows which texts changed.
    head = {"made_by": f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}",
            "tokenizer": type(tok).__name__}
    f.write(json.dumps(head)[:-1] + ', "cases": [\n')
    f.write(",\n".join(json.dumps(c) for c in golden))
    f.write("\n]}\n")
print("wrote", out, len(golden), "cases")
