//! The GPU training step against the CPU trainer, for every method and storage format, on shapes that are not
//! multiples of the tile size: next-token probabilities within 1e-4 (relative to the largest), every gradient
//! tensor within 1e-3 (relative to its largest element), and a 20-step loss trajectory within 1e-3 absolute.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::{Method, OptimConfig, Trainer};
use qlora_playground::gpu::{Gpu, GpuTrainer};
use qlora_playground::lora::{LoraConfig, Target};
use qlora_playground::model::{Gpt2, ModelConfig};
use qlora_playground::quant::{Format, Storage};
use rand::{RngExt, SeedableRng};

mod gpu_util;

const B: usize = 2;
const T: usize = 7;

fn model() -> Gpt2 {
    let mut m = Gpt2::init(ModelConfig::bytes(2, 3, 24, 16).unwrap(), 7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for v in m.params_mut().iter_mut() {
        *v += rng.random_range(-0.05f32..0.05);
    }
    m
}

fn batch(step: usize) -> (Vec<u32>, Vec<u32>) {
    let text = b"It is a truth universally acknowledged, that a single man in possession of a good fortune";
    let start = (step * 5) % (text.len() - T - 1);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for b in 0..B {
        let s = (start + 11 * b) % (text.len() - T - 1);
        x.extend(text[s..s + T].iter().map(|c| *c as u32));
        y.extend(text[s + 1..s + T + 1].iter().map(|c| *c as u32));
    }
    (x, y)
}

fn optim() -> OptimConfig {
    OptimConfig { lr: 3e-3, min_lr: 3e-4, warmup: 3, steps: 20, weight_decay: 0.01, grad_clip: 1.0 }
}

fn rel(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1e-8f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale
}

fn check(method: Method, storage: Storage, lora: Option<LoraConfig>) {
    check_on(Gpu::new_blocking().expect("a WebGPU adapter (CI installs Mesa's lavapipe)"), method, storage, lora)
}

fn check_on(gpu: Gpu, method: Method, storage: Storage, lora: Option<LoraConfig>) {
    let label = format!("{method} {} {:?}", storage.label(), lora.as_ref().map(|l| l.targets.clone()));
    let m = model();
    let mut cpu = Trainer::new(&m, method, storage, lora.clone(), optim(), 5).unwrap();
    let mut gt = GpuTrainer::new(gpu, &m, method, storage, lora.clone(), optim(), 5, B, T).unwrap();
    // Non-zero B so every adapter gradient is exercised; same values on both executors.
    if method != Method::Full {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let entries = cpu.adapters.as_ref().unwrap().entries.clone();
        for e in &entries {
            for v in &mut cpu.trainable_params_mut()[e.b.clone()] {
                *v = rng.random_range(-0.1f32..0.1);
            }
        }
        gt.set_trainable_params(cpu.trainable_params_mut()).unwrap();
    }
    let (x, y) = batch(0);

    // Probabilities.
    let cpu_loss = cpu.loss(&x, &y, B, T);
    let (gpu_loss, gpu_probs) = pollster::block_on(gt.forward(&x, &y)).unwrap();
    assert!((cpu_loss - gpu_loss).abs() < 1e-4, "{label}: loss {cpu_loss} vs {gpu_loss}");
    let cpu_probs = cpu_probs(&mut cpu, &x, &y);
    let r = rel(&gpu_probs, &cpu_probs);
    assert!(r <= 1e-4, "{label}: probabilities differ by {r:e}");

    // Gradients, tensor by tensor (with dropout when configured).
    let seed = lora.as_ref().filter(|l| l.dropout > 0.0).map(|_| 77);
    cpu.compute_gradients(&x, &y, B, T, seed);
    pollster::block_on(gt.compute_gradients(&x, &y, seed)).unwrap();
    let g_gpu = pollster::block_on(gt.gradients()).unwrap();
    let g_cpu = cpu.grads().to_vec();
    let ranges: Vec<(String, std::ops::Range<usize>)> = match &cpu.adapters {
        Some(ad) => ad
            .entries
            .iter()
            .flat_map(|e| {
                [
                    (format!("{} {} A", e.layer, e.target), e.a.clone()),
                    (format!("{} {} B", e.layer, e.target), e.b.clone()),
                ]
            })
            .collect(),
        None => cpu.model.layout.iter().map(|(id, r)| (cpu.model.layout.hf_name(id), r)).collect(),
    };
    for (name, r) in ranges {
        let e = rel(&g_gpu[r.clone()], &g_cpu[r]);
        assert!(e <= 1e-3, "{label}: gradient {name} differs by {e:e}");
    }

    // 20 steps.
    for step in 0..20 {
        let (x, y) = batch(step);
        let c = cpu.step(&x, &y, B, T);
        let g = pollster::block_on(gt.step(&x, &y)).unwrap();
        assert!((c.loss - g.loss).abs() <= 1e-3, "{label}: step {step} loss {} vs {}", c.loss, g.loss);
        assert!(
            (c.grad_norm - g.grad_norm).abs() <= 1e-3 * c.grad_norm.max(1.0),
            "{label}: step {step} grad norm {} vs {}",
            c.grad_norm,
            g.grad_norm
        );
    }
}

fn cpu_probs(cpu: &mut Trainer, x: &[u32], y: &[u32]) -> Vec<f32> {
    use qlora_playground::cpu::{forward, Activations, Weights};
    let mut acts = Activations::new(&cpu.model.config, cpu.adapters.as_ref(), B, T);
    let w = Weights::of(&cpu.model);
    let _ = y;
    forward(&w, cpu.adapters.as_ref(), &mut acts, x, None, None);
    acts.probs().to_vec()
}

fn all_targets(rank: usize, dropout: f32) -> LoraConfig {
    let targets = [Target::Q, Target::K, Target::V, Target::O, Target::Fc, Target::Proj];
    LoraConfig {
        targets: targets.iter().map(|t| (*t, rank)).collect(),
        alpha: 2.0 * rank as f32,
        rslora: false,
        dropout,
    }
}

#[test]
fn full_fine_tuning_matches_cpu() {
    check(Method::Full, Storage::FP32, None);
}

/// Under a tiny binding limit the parameters go into several shards and the embedding into parts (as GPT-2's do
/// under WebGPU's 128 MiB): the same probabilities, gradients and 20 steps as the CPU, for full fine-tuning under
/// 16 KiB (fp32 embedding in two parts; gradients and AdamW's moments in shards, one global norm) and QLoRA under
/// 8 KiB (fp16 embedding in two parts, whose head gradients add up; the head in chunks of 8 rows; rank 1, so that
/// the adapters fit one binding).
#[test]
fn parameters_in_shards_and_the_embedding_in_parts_match_cpu() {
    let tiny = |kib: u64| {
        let limits =
            qlora_playground::gpu::wgpu::Limits { max_storage_buffer_binding_size: kib << 10, ..Default::default() };
        let gpu = Gpu::with_limits_blocking(limits).unwrap();
        assert_eq!(gpu.limits.max_storage_buffer_binding_size, kib << 10);
        gpu
    };
    check_on(tiny(16), Method::Full, Storage::FP32, None);
    check_on(tiny(8), Method::Qlora, Storage::new(Format::Nf4, true).unwrap(), Some(all_targets(1, 0.0)));
}

#[test]
fn lora_over_every_storage_format_matches_cpu() {
    for format in Format::ALL {
        for dq in [false, true] {
            let Ok(storage) = Storage::new(format, dq) else { continue };
            let method = if format == Format::Fp32 { Method::Lora } else { Method::Qlora };
            check(method, storage, Some(all_targets(3, 0.0)));
        }
    }
}

#[test]
fn fused_qkv_and_dropout_match_cpu() {
    let qkv = LoraConfig { targets: vec![(Target::Qkv, 4), (Target::Proj, 2)], alpha: 4.0, rslora: true, dropout: 0.0 };
    check(Method::Qlora, Storage::new(Format::Nf4, true).unwrap(), Some(qkv));
    check(Method::Lora, Storage::FP32, Some(all_targets(2, 0.2)));
}

/// Submitting a step before the previous one is read back (the page keeps one in flight) trains exactly as awaiting
/// each: submissions run in order and each batch is written between them. Dropout is on, so the per-step masks
/// written while a step is in flight must also land on the right step.
#[test]
fn steps_kept_in_flight_train_exactly_as_steps_awaited_one_by_one() {
    let m = model();
    let storage = Storage::new(Format::Nf4, true).unwrap();
    let new = || {
        let gpu = Gpu::new_blocking().expect("a WebGPU adapter (CI installs Mesa's lavapipe)");
        GpuTrainer::new(gpu, &m, Method::Qlora, storage, Some(all_targets(3, 0.1)), optim(), 5, B, T).unwrap()
    };
    let mut serial = new();
    let one_by_one: Vec<(f64, f32)> = (0..12)
        .map(|i| {
            let (x, y) = batch(i);
            let s = pollster::block_on(serial.step(&x, &y)).unwrap();
            (s.loss, s.grad_norm)
        })
        .collect();
    let mut piped = new();
    let (x, y) = batch(0);
    let mut pending = piped.submit_step(&x, &y).unwrap();
    let mut got = Vec::new();
    for i in 1..=12 {
        let next = if i < 12 {
            let (x, y) = batch(i);
            Some(piped.submit_step(&x, &y).unwrap())
        } else {
            None
        };
        if i == 6 {
            // Two in flight: a third has no staging buffer.
            let (x, y) = batch(99);
            let err = piped.submit_step(&x, &y).err().expect("refused").to_string();
            assert!(err.contains("2 steps are already in flight"), "{err}");
        }
        let s = pollster::block_on(piped.finish_step(pending)).unwrap();
        assert_eq!(s.step, i - 1);
        got.push((s.loss, s.grad_norm));
        match next {
            Some(n) => pending = n,
            None => break,
        }
    }
    assert_eq!(got, one_by_one, "same losses and gradient norms, bit for bit");
    let (a, b) = (pollster::block_on(serial.trainable_params()), pollster::block_on(piped.trainable_params()));
    assert_eq!(a.unwrap(), b.unwrap(), "same trained adapters");
}

#[test]
fn measured_gpu_memory_agrees_with_the_accounting() {
    let m = Gpt2::init(ModelConfig::bytes(2, 4, 64, 64).unwrap(), 1);
    let (b, t) = (4usize, 32usize);
    for (method, storage) in [
        (Method::Full, Storage::FP32),
        (Method::Qlora, Storage::new(Format::Nf4, false).unwrap()),
        (Method::Qlora, Storage::new(Format::Nf4, true).unwrap()),
    ] {
        let lora = (method != Method::Full).then(|| all_targets(4, 0.0));
        let gt = GpuTrainer::new(Gpu::new_blocking().unwrap(), &m, method, storage, lora, optim(), 1, b, t).unwrap();
        gpu_util::assert_memory_agrees(&gt, &m, storage, 4, b, t);
    }
}

#[test]
fn kv_cache_generation_matches_cpu() {
    use qlora_playground::cpu::{forward, generate, quantize_base, Activations, Sampling, Weights};
    use qlora_playground::gpu::GpuGenerator;
    use qlora_playground::lora::Adapters;
    let m = model(); // context 16
    for (storage, with_adapters) in [(Storage::FP32, false), (Storage::new(Format::Nf4, true).unwrap(), true)] {
        let mut base = m.clone();
        quantize_base(&mut base, storage);
        let adapters = with_adapters.then(|| {
            let mut ad = Adapters::init(all_targets(3, 0.0), 2, 24, 4).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            for e in ad.entries.clone() {
                for v in &mut ad.params[e.b.clone()] {
                    *v = rng.random_range(-0.2f32..0.2);
                }
            }
            ad
        });
        let gen = GpuGenerator::new(Gpu::new_blocking().unwrap(), &m, storage, adapters.clone()).unwrap();
        // Probabilities at every position of a prompt, against the CPU forward pass over the prefix.
        let prompt: Vec<u32> = b"To be or not to be".iter().map(|b| *b as u32).collect();
        assert_eq!(base.linears.is_some(), storage != Storage::FP32, "a run stores its base's linears when quantized");
        if base.linears.is_some() {
            // The base as a run stores it goes to the GPU as it is, and gives what quantizing on the way gives.
            let stored = GpuGenerator::new(Gpu::new_blocking().unwrap(), &base, storage, adapters.clone()).unwrap();
            let (a, b) = (pollster::block_on(stored.step(prompt[0], 0)), pollster::block_on(gen.step(prompt[0], 0)));
            assert_eq!(a.unwrap(), b.unwrap(), "{}: the stored base on the GPU", storage.label());
            let other = Storage::new(Format::Int8, false).unwrap();
            let e = GpuGenerator::new(Gpu::new_blocking().unwrap(), &base, other, None).err().unwrap().to_string();
            assert!(e.contains("keeps its linear weights in nf4+dq"), "{e}");
        }
        let w = Weights::of(&base);
        for pos in 0..prompt.len().min(16) {
            let got = pollster::block_on(gen.step(prompt[pos], pos)).unwrap();
            let mut acts = Activations::new(&base.config, adapters.as_ref(), 1, pos + 1);
            forward(&w, adapters.as_ref(), &mut acts, &prompt[..pos + 1], None, None);
            let want = &acts.probs()[pos * 256..(pos + 1) * 256];
            let r = rel(&got, want);
            assert!(r <= 1e-4, "{} position {pos}: probabilities differ by {r:e}", storage.label());
        }
        // Whole generations, past the 16-token context (the window slides), greedy and sampled.
        for sampling in
            [Sampling { temperature: 0.0, top_k: 0, seed: 1 }, Sampling { temperature: 0.9, top_k: 20, seed: 7 }]
        {
            let cpu = generate(&base, adapters.as_ref(), &prompt[..5], 25, sampling);
            let gpu = pollster::block_on(gen.generate(&prompt[..5], 25, sampling)).unwrap();
            assert_eq!(gpu, cpu, "{} {sampling:?}", storage.label());
        }
    }
}

/// The step's matmul dispatches, counted on paper (`qlora bench --backend gpu --profile`), do exactly the products
/// the accounting counts: per token and layer the four linear maps forward and backward to their inputs (and to
/// their weights in full fine-tuning), the tied head likewise, and 6·r·(in + out) per adapted matrix — so no product
/// is done twice or left out, and the profile's FLOPs are the step's.
#[test]
fn a_steps_matmul_dispatches_do_the_products_the_accounting_counts() {
    use qlora_playground::web::accounts::step_flops;
    let m = Gpt2::init(ModelConfig::bytes(2, 4, 64, 64).unwrap(), 1);
    let c = &m.config;
    let (b, t) = (3usize, 20usize);
    let fused =
        LoraConfig { targets: vec![(Target::Qkv, 4), (Target::Proj, 2)], alpha: 4.0, rslora: true, dropout: 0.1 };
    for (method, storage, lora) in [
        (Method::Full, Storage::FP32, None),
        (Method::Lora, Storage::FP32, Some(all_targets(4, 0.0))),
        (Method::Lora, Storage::FP32, Some(fused)),
        (Method::Qlora, Storage::new(Format::Nf4, true).unwrap(), Some(all_targets(8, 0.0))),
    ] {
        let gt = GpuTrainer::new(Gpu::new_blocking().unwrap(), &m, method, storage, lora, optim(), 1, b, t).unwrap();
        let adapter_params: u64 =
            gt.adapters().map_or(0, |a| a.entries.iter().map(|e| (e.rank * (e.d_in + e.d_out)) as u64).sum());
        let costs = gt.step_costs();
        let matmul: u64 = costs.iter().filter(|c| c.kernel.starts_with("matmul")).map(|c| c.flops).sum();
        // The accounting's step less its attention products (4·seq·d per token and layer, each pass).
        let passes = if method == Method::Full { 3.0 } else { 2.0 };
        let attention = (b * t) as f64 * passes * (c.n_layer * 4 * t * c.n_embd) as f64;
        let want = step_flops(c, method, b, t, adapter_params) - attention;
        assert_eq!(matmul as f64, want, "{method} {}", storage.label());
        assert!(costs.iter().all(|c| c.written > 0), "every dispatch writes something: {costs:?}");
    }
}
