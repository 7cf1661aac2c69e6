// The models the page offers, by the name a link uses (`model=`; web::link::MODEL_NAMES). Shared by the page and
// the engine's worker. A link names a model, never a URL: the hub's addresses are built here from fixed ids.

/// The Hugging Face hub's file endpoint (it redirects large files to its CDN; the CSP in index.html allows both).
export const HUB = 'https://huggingface.co';

/// Where a hub model's files are kept once downloaded (Cache Storage, keyed by their hub URL).
export const MODEL_CACHE = 'qlora-models-v1';

/// What is fetched of a hub model: its configuration, weights and GPT-2's tokenizer files.
export const HUB_FILES = ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt'];

/// The files a reader may give for their own GPT-2 directory (others are ignored, and the page says which).
export const DIR_FILES = ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt', 'tokenizer.json'];

export const MODELS = {
  shakespeare: { label: 'Shakespeare GPT-2 (1.9 M parameters, ships with this page)' },
  gpt2: { label: 'GPT-2 124M (openai-community/gpt2, from Hugging Face)', repo: 'openai-community/gpt2', licence: 'MIT' },
  distilgpt2: { label: 'DistilGPT2 82M (distilbert/distilgpt2, from Hugging Face)', repo: 'distilbert/distilgpt2', licence: 'Apache-2.0' },
  'gpt2-medium': { label: 'GPT-2 Medium 355M (openai-community/gpt2-medium, from Hugging Face)', repo: 'openai-community/gpt2-medium', licence: 'MIT' },
  'gpt2-large': { label: 'GPT-2 Large 774M (openai-community/gpt2-large, from Hugging Face)', repo: 'openai-community/gpt2-large', licence: 'MIT' },
  files: { label: 'Your own GPT-2 files…' },
};

export const hubUrl = (repo, file) => `${HUB}/${repo}/resolve/main/${file}`;

/// The page's own copy of a model's config.json: the built-in model's, or a hub model's as published (what the page
/// counts with before anything is downloaded). Relative to www/js/.
export const configUrl = (name) => new URL(`../models/${name}/config.json`, import.meta.url);

/// The bytes a hub GPT-2's model.safetensors holds, from its configuration: every parameter in fp32, and each
/// layer's causal-mask buffer (`attn.bias`, n_positions² fp32 values) that transformers saves with GPT-2.
export function hubDownloadBytes(config, params) {
  return 4 * params + 4 * config.n_layer * config.n_positions * config.n_positions;
}

/// GPT-2's parameter count from its configuration (tied head): the embeddings, per layer two LayerNorms, c_attn,
/// c_proj, c_fc and mlp.c_proj with their biases (12·d² + 13·d), and the final LayerNorm.
export function gpt2Params(c) {
  const d = c.n_embd;
  return (c.vocab_size + c.n_positions) * d + c.n_layer * (12 * d * d + 13 * d) + 2 * d;
}
