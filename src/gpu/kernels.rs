//! The WGSL kernels besides the matmuls (those are in `matmul.rs`). Every kernel file has an explicit bind-group
//! layout (so entry points that use a subset of the bindings share it) and one typed uniform; calls are prepared
//! once — uniform, bind group, workgroup counts — and recorded into each step's compute pass.
//!
//! Every WGSL entry point, the Rust function that records it, its CPU twin and the parity test that holds them
//! together (`tests/gpu_kernels.rs`; tolerance 1e-4 relative to the largest expected magnitude, exact for copies).
//! `tests/kernel_pairs.rs` walks this table: every entry point in `shaders/` has a row, every row names functions
//! that exist, and each parity test calls the function that records its entry point.
//!
//! | shader | entry point | recorded by | CPU twin | parity test |
//! |---|---|---|---|---|
//! | elementwise.wgsl | gelu_forward | `Kernels::gelu_forward` | `cpu::layers::gelu_forward` | `elementwise_kernels_match_cpu` |
//! | elementwise.wgsl | gelu_backward | `Kernels::gelu_backward` | `cpu::layers::gelu_backward` | `elementwise_kernels_match_cpu` |
//! | elementwise.wgsl | residual_forward | `Kernels::residual_forward` | `cpu::layers::residual_forward` | `elementwise_kernels_match_cpu` |
//! | elementwise.wgsl | accumulate | `Kernels::accumulate` | `cpu::executor::linear_backward_with_adapters` | `accumulate_dropout_zero_and_bias_rows_match_cpu` |
//! | elementwise.wgsl | mask_forward | `Kernels::mask_forward` | `cpu::executor::linear_with_adapters` | `accumulate_dropout_zero_and_bias_rows_match_cpu` |
//! | elementwise.wgsl | mask_backward | `Kernels::mask_backward` | `cpu::executor::linear_backward_with_adapters` | `accumulate_dropout_zero_and_bias_rows_match_cpu` |
//! | elementwise.wgsl | zero | `Kernels::zero` | `cpu::train::Trainer::compute_gradients` | `accumulate_dropout_zero_and_bias_rows_match_cpu` |
//! | elementwise.wgsl | broadcast_rows | `Kernels::broadcast_rows` | `cpu::layers::linear_forward` | `accumulate_dropout_zero_and_bias_rows_match_cpu` |
//! | layernorm.wgsl | forward | `Kernels::layernorm_forward` | `cpu::layers::layernorm_forward` | `layernorm_matches_cpu` |
//! | layernorm.wgsl | backward | `Kernels::layernorm_backward` | `cpu::layers::layernorm_backward` | `layernorm_matches_cpu` |
//! | column_sums.wgsl | layernorm_param_grads | `Kernels::layernorm_param_grads` | `cpu::layers::layernorm_backward` | `layernorm_matches_cpu` |
//! | column_sums.wgsl | bias_grad | `Kernels::bias_grad` | `cpu::layers::linear_backward` | `bias_grad_matches_cpu` |
//! | attention.wgsl | forward | `Kernels::attention_forward` | `cpu::layers::attention_forward` | `attention_matches_cpu` |
//! | attention.wgsl | backward_query | `Kernels::attention_backward` | `cpu::layers::attention_backward` | `attention_matches_cpu` |
//! | attention.wgsl | backward_keys | `Kernels::attention_backward` | `cpu::layers::attention_backward` | `attention_matches_cpu` |
//! | attention_decode.wgsl | decode | `Kernels::attention_decode` | `cpu::layers::attention_forward` | `attention_decode_matches_cpu` |
//! | embedding.wgsl | forward | `Kernels::embedding_forward` | `cpu::layers::embedding_forward` | `embedding_matches_cpu` |
//! | embedding.wgsl | backward | `Kernels::embedding_backward` | `cpu::layers::embedding_backward` | `embedding_matches_cpu` |
//! | cross_entropy.wgsl | forward | `Kernels::cross_entropy` | `cpu::layers::softmax_cross_entropy` | `cross_entropy_matches_cpu` |
//! | cross_entropy.wgsl | forward_backward | `Kernels::cross_entropy` | `cpu::layers::softmax_cross_entropy` | `cross_entropy_matches_cpu` |
//! | adamw.wgsl | sum_squares | `Kernels::adamw` | `cpu::optim::grad_norm` | `adamw_with_clipping_matches_cpu` |
//! | adamw.wgsl | finish_norm | `Kernels::adamw` | `cpu::optim::clip_grad_norm` | `adamw_with_clipping_matches_cpu` |
//! | adamw.wgsl | update | `Kernels::adamw` | `cpu::optim::AdamW::step` | `adamw_with_clipping_matches_cpu` |
//! | matmul_tiles.wgsl (matmul) | thin_rows | `Matmul::prepare` | `cpu::matmul::gemm` | `matmul_matches_cpu_in_every_orientation` |
//! | matmul_tiles.wgsl (matmul) | small_tiles | `Matmul::prepare` | `cpu::matmul::gemm` | `matmul_matches_cpu_in_every_orientation` |
//! | matmul_tiles.wgsl (matmul) | large_tiles | `Matmul::prepare` | `cpu::matmul::gemm` | `matmul_matches_cpu_in_every_orientation` |
//! | matmul_tiles.wgsl (matmul_dequant, x·Wᵀ) | thin_rows | `MatmulDequant::prepare_forward` | `cpu::matmul::gemm` | `fused_dequant_matmul_matches_cpu_for_every_format` |
//! | matmul_tiles.wgsl (matmul_dequant, x·Wᵀ) | small_tiles | `MatmulDequant::prepare_forward` | `cpu::matmul::gemm` | `fused_dequant_matmul_matches_cpu_for_every_format` |
//! | matmul_tiles.wgsl (matmul_dequant, x·Wᵀ) | large_tiles | `MatmulDequant::prepare_forward` | `cpu::matmul::gemm` | `fused_dequant_matmul_matches_cpu_for_every_format` |
//! | matmul_tiles.wgsl (matmul_dequant, dy·W) | thin_rows | `MatmulDequant::prepare_backward` | `cpu::matmul::gemm` | `fused_dequant_matmul_matches_cpu_for_every_format` |
//! | matmul_tiles.wgsl (matmul_dequant, dy·W) | small_tiles | `MatmulDequant::prepare_backward` | `cpu::matmul::gemm` | `fused_dequant_matmul_matches_cpu_for_every_format` |
//! | matmul_tiles.wgsl (matmul_dequant, dy·W) | large_tiles | `MatmulDequant::prepare_backward` | `cpu::matmul::gemm` | `fused_dequant_matmul_matches_cpu_for_every_format` |

use super::matmul::Dispatch;
use super::{Category, Cost, Gpu, GpuBuffer, View};

const ELEMENTWISE_WGSL: &str = include_str!("../../shaders/elementwise.wgsl");
const LAYERNORM_WGSL: &str = include_str!("../../shaders/layernorm.wgsl");
const COLUMN_SUMS_WGSL: &str = include_str!("../../shaders/column_sums.wgsl");
const ATTENTION_WGSL: &str = include_str!("../../shaders/attention.wgsl");
const EMBEDDING_WGSL: &str = include_str!("../../shaders/embedding.wgsl");
const CROSS_ENTROPY_WGSL: &str = include_str!("../../shaders/cross_entropy.wgsl");
const ADAMW_WGSL: &str = include_str!("../../shaders/adamw.wgsl");
const ATTENTION_DECODE_WGSL: &str = include_str!("../../shaders/attention_decode.wgsl");

/// How a binding is declared in WGSL.
#[derive(Clone, Copy)]
enum Bind {
    Uniform,
    Read,
    ReadWrite,
}

/// One WGSL file: its layout and a pipeline per entry point.
struct Kernel {
    layout: wgpu::BindGroupLayout,
    pipelines: Vec<(&'static str, wgpu::ComputePipeline)>,
}

impl Kernel {
    fn new(gpu: &Gpu, label: &str, source: &str, binds: &[Bind], entries: &[&'static str]) -> Self {
        let layout_entries: Vec<wgpu::BindGroupLayoutEntry> = binds
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Bind::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = gpu.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &layout_entries,
        });
        let pipeline_layout = gpu.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let module = gpu.shader(label, source);
        let pipelines = entries
            .iter()
            .map(|e| {
                let p = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(e),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(e),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (*e, p)
            })
            .collect();
        Kernel { layout, pipelines }
    }

    fn dispatch(
        &self,
        gpu: &Gpu,
        entry: &str,
        uniform: wgpu::Buffer,
        bufs: &[View],
        workgroups: (u32, u32, u32),
        cost: Cost,
    ) -> Dispatch {
        let pipeline = self.pipelines.iter().find(|(e, _)| *e == entry).expect("entry point compiled").1.clone();
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            bufs.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() }),
        );
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &self.layout,
            entries: &entries,
        });
        Dispatch::new(pipeline, vec![bg], workgroups, Some(uniform), cost)
    }
}

/// Workgroups for `n` groups of work, folded into 2-D when over the 65535-per-dimension limit.
/// Returns (x, y) and the x extent the shader uses to linearise.
fn grid(n: u32) -> (u32, u32) {
    let x = n.clamp(1, 65535);
    (x, n.div_ceil(x).max(1))
}

/// The sizes attention's costs are counted in.
struct AttentionSizes {
    hs: u64,
    /// Causal (query, key) pairs over every sequence and head: B·NH·T(T+1)/2.
    pairs: u64,
    /// Bytes of one [B·T, C] tensor (q, k, v, y or dy).
    x: u64,
    /// Bytes of att [B, T, NH, T].
    square: u64,
}

impl AttentionSizes {
    fn new(b: u32, t: u32, c: u32, nh: u32) -> Self {
        let (b, t, c, nh) = (b as u64, t as u64, c as u64, nh as u64);
        AttentionSizes { hs: c / nh, pairs: b * nh * t * (t + 1) / 2, x: 4 * b * t * c, square: 4 * b * t * nh * t }
    }
}

/// The uniform of elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    n: u32,
    groups_x: u32,
    /// Row width of `broadcast_rows`.
    width: u32,
    _pad: u32,
}

/// The uniform of column_sums.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ColumnSumsParams {
    rows: u32,
    c: u32,
    _pad: [u32; 2],
}

/// The uniform of attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    b: u32,
    t: u32,
    c: u32,
    nh: u32,
}

/// The uniform of cross_entropy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CrossEntropyParams {
    rows: u32,
    v: u32,
    groups_x: u32,
    row0: u32,
    grad_scale: f32,
    _pad: [u32; 3],
}

/// The uniform of the embedding kernel (rewritten per token when decoding).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbeddingParams {
    pub rows: u32,
    pub t: u32,
    pub c: u32,
    pub groups_x: u32,
    /// The position of the first row (decoding writes it before each token).
    pub pos0: u32,
    /// The vocabulary rows of the embedding part bound to the dispatch.
    pub v0: u32,
    pub v1: u32,
    /// 1 for the first part (which writes the position embedding, and its gradient), else 0.
    pub first: u32,
    /// 1 when the part holds fp16 values, two per word (read only), else 0 (fp32).
    pub half: u32,
    pub _pad: [u32; 3],
}

impl EmbeddingParams {
    /// `rows` rows of `c` channels in sequences of `t`, over the embedding part holding `vocab_rows`.
    pub fn new(rows: u32, t: u32, c: u32, vocab_rows: std::ops::Range<usize>) -> Self {
        let (groups_x, _) = grid((rows * c).div_ceil(256));
        let first = (vocab_rows.start == 0) as u32;
        let (v0, v1) = (vocab_rows.start as u32, vocab_rows.end as u32);
        EmbeddingParams { rows, t, c, groups_x, pos0: 0, v0, v1, first, half: 0, _pad: [0; 3] }
    }
}

/// The uniform of the decoding attention kernel (rewritten per token).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DecodeParams {
    pub pos: u32,
    pub c: u32,
    pub nh: u32,
    pub max_t: u32,
}

/// The uniform of layernorm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LayerNormParams {
    rows: u32,
    c: u32,
    /// Forward only.
    eps: f32,
    groups_x: u32,
}

/// AdamW hyper-parameters that stay fixed over a run.
#[derive(Clone, Copy, Debug)]
pub struct AdamHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Global-norm clipping threshold; 0 disables clipping.
    pub max_norm: f32,
}

/// The AdamW uniform as the shader reads it.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamParams {
    n: u32,
    groups_x: u32,
    step: u32,
    partials: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,
    /// Where this shard's partial sums start in the norm buffer (after element 0).
    partial_base: u32,
    _pad: f32,
}

/// One trainable shard for AdamW: its parameters, gradients and moments (`n` floats each).
#[derive(Clone, Copy)]
pub struct AdamShard<'a> {
    pub n: u32,
    pub param: View<'a>,
    pub grad: View<'a>,
    pub m: View<'a>,
    pub v: View<'a>,
}

/// Gradients each workgroup of adamw.wgsl's `sum_squares` adds up (its SLICE).
const NORM_SLICE: usize = 4096;

/// The partial sums of squares `sum_squares` writes for a shard of `n` gradients (one per workgroup).
pub fn norm_partials(n: usize) -> usize {
    n.div_ceil(NORM_SLICE)
}

/// The AdamW dispatches: the global gradient norm (a partial sum per shard, then their total), then one update per
/// shard.
pub struct AdamDispatch {
    pub norm: Vec<Dispatch>,
    update: Vec<(AdamParams, Dispatch)>,
}

impl AdamDispatch {
    /// Sets the step count and learning rate the updates use (before each step).
    pub fn set_step(&self, gpu: &Gpu, step: u32, lr: f32) {
        for (p, d) in &self.update {
            d.write_uniform(gpu, &AdamParams { step, lr, ..*p });
        }
    }

    /// Every dispatch in order: the norm, then the updates.
    pub fn all(&self) -> impl Iterator<Item = &Dispatch> {
        self.norm.iter().chain(self.update.iter().map(|(_, d)| d))
    }
}

/// All pipelines of the non-matmul kernels, compiled once.
pub struct Kernels {
    /// Tiny buffers bound where a kernel's entry point ignores a binding: one buffer must not be bound both
    /// read-only and read-write (or writable twice) in one dispatch.
    dummy_read: GpuBuffer,
    dummy_write: [GpuBuffer; 2],
    elementwise: Kernel,
    layernorm: Kernel,
    column_sums: Kernel,
    attention: Kernel,
    embedding: Kernel,
    cross_entropy: Kernel,
    adamw: Kernel,
    attention_decode: Kernel,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        use Bind::*;
        let dummy = |label| gpu.buffer(label, 16, Category::Scratch, wgpu::BufferUsages::empty()).expect("16 bytes");
        Kernels {
            dummy_read: dummy("unused input"),
            dummy_write: [dummy("unused output"), dummy("unused output")],
            elementwise: Kernel::new(
                gpu,
                "elementwise",
                ELEMENTWISE_WGSL,
                &[Uniform, Read, Read, ReadWrite],
                &[
                    "gelu_forward",
                    "gelu_backward",
                    "residual_forward",
                    "accumulate",
                    "mask_forward",
                    "mask_backward",
                    "zero",
                    "broadcast_rows",
                ],
            ),
            layernorm: Kernel::new(
                gpu,
                "layernorm",
                LAYERNORM_WGSL,
                &[Uniform, Read, Read, Read, ReadWrite, ReadWrite, Read],
                &["forward", "backward"],
            ),
            column_sums: Kernel::new(
                gpu,
                "column_sums",
                COLUMN_SUMS_WGSL,
                &[Uniform, Read, Read, Read, ReadWrite, ReadWrite],
                &["bias_grad", "layernorm_param_grads"],
            ),
            attention: Kernel::new(
                gpu,
                "attention",
                ATTENTION_WGSL,
                &[Uniform, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
                &["forward", "backward_query", "backward_keys"],
            ),
            embedding: Kernel::new(
                gpu,
                "embedding",
                EMBEDDING_WGSL,
                &[Uniform, Read, ReadWrite, ReadWrite, ReadWrite],
                &["forward", "backward"],
            ),
            cross_entropy: Kernel::new(
                gpu,
                "cross_entropy",
                CROSS_ENTROPY_WGSL,
                &[Uniform, ReadWrite, Read, ReadWrite],
                &["forward", "forward_backward"],
            ),
            adamw: Kernel::new(
                gpu,
                "adamw",
                ADAMW_WGSL,
                &[Uniform, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
                &["sum_squares", "finish_norm", "update"],
            ),
            attention_decode: Kernel::new(
                gpu,
                "attention_decode",
                ATTENTION_DECODE_WGSL,
                &[Uniform, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
                &["decode"],
            ),
        }
    }

    /// One decoding step: append k, v of the token at `pos` to the caches and attend over positions 0..=pos.
    /// Rewrite the uniform ([`DecodeParams`]) before each token.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_decode(
        &self,
        gpu: &Gpu,
        c: u32,
        nh: u32,
        max_t: u32,
        out: View,
        qkv: View,
        kcache: View,
        vcache: View,
        att: View,
    ) -> Dispatch {
        let u = gpu.uniform("attention_decode", &DecodeParams { pos: 0, c, nh, max_t });
        // Counted at the last position of the window (the uniform moves it token by token): one query against
        // max_t keys and values.
        let (c64, t) = (c as u64, max_t as u64);
        let cost = Cost::new(
            "attention_decode decode",
            4 * t * c64 + 4 * t * nh as u64,
            4 * (3 * c64 + 2 * t * c64),
            4 * (3 * c64 + t * nh as u64),
        );
        self.attention_decode.dispatch(
            gpu,
            "decode",
            u,
            &[qkv, kcache, vcache, att, out],
            (nh.div_ceil(64), 1, 1),
            cost,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn elementwise(
        &self,
        gpu: &Gpu,
        entry: &str,
        n: u32,
        a: View,
        b: View,
        out: View,
        width: u32,
        cost: Cost,
    ) -> Dispatch {
        let (x, y) = grid(n.div_ceil(256));
        let u = gpu.uniform("elementwise", &ElementwiseParams { n, groups_x: x, width, _pad: 0 });
        self.elementwise.dispatch(gpu, entry, u, &[a, b, out], (x, y, 1), cost)
    }

    /// out = gelu_new(inp).
    pub fn gelu_forward(&self, gpu: &Gpu, n: u32, inp: View, out: View) -> Dispatch {
        // gelu_new: x³, a multiply-add, a scale, tanh, an add and two multiplies.
        let cost = Cost::elementwise("elementwise gelu_forward", n, 1, 9);
        self.elementwise(gpu, "gelu_forward", n, inp, inp, out, 1, cost)
    }

    /// dinp = gelu_new'(inp) · dout, written outright.
    pub fn gelu_backward(&self, gpu: &Gpu, n: u32, dinp: View, inp: View, dout: View) -> Dispatch {
        // tanh as forward, then its derivative through the chain rule (~16 operations), times dout.
        let cost = Cost::elementwise("elementwise gelu_backward", n, 2, 17);
        self.elementwise(gpu, "gelu_backward", n, inp, dout, dinp, 1, cost)
    }

    /// out = a + b.
    pub fn residual_forward(&self, gpu: &Gpu, n: u32, out: View, a: View, b: View) -> Dispatch {
        self.elementwise(
            gpu,
            "residual_forward",
            n,
            a,
            b,
            out,
            1,
            Cost::elementwise("elementwise residual_forward", n, 2, 1),
        )
    }

    /// out = a · mask (the dropout mask holds 0 or 1/(1−p)).
    pub fn mask_forward(&self, gpu: &Gpu, n: u32, out: View, a: View, mask: View) -> Dispatch {
        self.elementwise(
            gpu,
            "mask_forward",
            n,
            a,
            mask,
            out,
            1,
            Cost::elementwise("elementwise mask_forward", n, 2, 1),
        )
    }

    /// out += a · mask.
    pub fn mask_backward(&self, gpu: &Gpu, n: u32, out: View, a: View, mask: View) -> Dispatch {
        let cost = Cost::elementwise("elementwise mask_backward", n, 3, 2);
        self.elementwise(gpu, "mask_backward", n, a, mask, out, 1, cost)
    }

    /// out = 0 (the CPU executor's `fill(0.0)` before an accumulating kernel).
    pub fn zero(&self, gpu: &Gpu, n: u32, out: View) -> Dispatch {
        let cost = Cost::elementwise("elementwise zero", n, 0, 0);
        self.elementwise(gpu, "zero", n, self.dummy_read.all(), self.dummy_read.all(), out, 1, cost)
    }

    /// `out[r, i] = bias[i]` for every row (the start of a linear layer's output).
    pub fn broadcast_rows(&self, gpu: &Gpu, rows: u32, width: u32, out: View, bias: View) -> Dispatch {
        let n = rows as u64 * width as u64;
        let cost = Cost::new("elementwise broadcast_rows", 0, 4 * width as u64, 4 * n);
        self.elementwise(gpu, "broadcast_rows", rows * width, bias, bias, out, width, cost)
    }

    /// out += a.
    pub fn accumulate(&self, gpu: &Gpu, n: u32, out: View, a: View) -> Dispatch {
        self.elementwise(gpu, "accumulate", n, a, a, out, 1, Cost::elementwise("elementwise accumulate", n, 2, 1))
    }

    #[allow(clippy::too_many_arguments)]
    fn layernorm(
        &self,
        gpu: &Gpu,
        entry: &str,
        rows: u32,
        c: u32,
        eps: f32,
        x: View,
        w: View,
        b: View,
        out: View,
        stats: View,
        dy: View,
        cost: Cost,
    ) -> Dispatch {
        let (gx, gy) = grid(rows);
        let u = gpu.uniform("layernorm", &LayerNormParams { rows, c, eps, groups_x: gx });
        self.layernorm.dispatch(gpu, entry, u, &[x, w, b, out, stats, dy], (gx, gy, 1), cost)
    }

    /// out = LayerNorm(inp)·w + b; saves (mean, rstd) per row in `stats`.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_forward(
        &self,
        gpu: &Gpu,
        rows: u32,
        c: u32,
        eps: f32,
        out: View,
        stats: View,
        inp: View,
        w: View,
        b: View,
    ) -> Dispatch {
        // Mean, variance (a subtract and a multiply-add), normalise (subtract, multiply), scale and shift.
        let (n, r, c64) = (rows as u64 * c as u64, rows as u64, c as u64);
        let cost = Cost::new("layernorm forward", 7 * n, 4 * n + 8 * c64, 4 * n + 8 * r);
        self.layernorm(gpu, "forward", rows, c, eps, inp, w, b, out, stats, inp, cost)
    }

    /// dinp += input gradient of the LayerNorm.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_backward(
        &self,
        gpu: &Gpu,
        rows: u32,
        c: u32,
        dinp: View,
        dout: View,
        inp: View,
        w: View,
        stats: View,
    ) -> Dispatch {
        // Two row sums of dout·w and dout·w·norm, then each input's gradient from them, added to dinp.
        let (n, r, c64) = (rows as u64 * c as u64, rows as u64, c as u64);
        let cost = Cost::new("layernorm backward", 12 * n, 12 * n + 4 * c64 + 8 * r, 4 * n);
        self.layernorm(gpu, "backward", rows, c, 0.0, inp, w, w, dinp, stats, dout, cost)
    }

    /// dw += Σ_rows norm·dout, db += Σ_rows dout (the LayerNorm's parameter gradients).
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_param_grads(
        &self,
        gpu: &Gpu,
        rows: u32,
        c: u32,
        dw: View,
        db: View,
        dout: View,
        inp: View,
        stats: View,
    ) -> Dispatch {
        let u = gpu.uniform("column_sums", &ColumnSumsParams { rows, c, _pad: [0; 2] });
        let (n, r, c64) = (rows as u64 * c as u64, rows as u64, c as u64);
        let cost = Cost::new("column_sums layernorm_param_grads", 5 * n, 8 * n + 8 * r + 8 * c64, 8 * c64);
        let bufs = [dout, inp, stats, dw, db];
        self.column_sums.dispatch(gpu, "layernorm_param_grads", u, &bufs, (c.div_ceil(64), 1, 1), cost)
    }

    /// db += Σ_rows dout (a linear layer's bias gradient).
    pub fn bias_grad(&self, gpu: &Gpu, rows: u32, c: u32, db: View, dout: View) -> Dispatch {
        let u = gpu.uniform("column_sums", &ColumnSumsParams { rows, c, _pad: [0; 2] });
        self.column_sums.dispatch(
            gpu,
            "bias_grad",
            u,
            &[dout, self.dummy_read.all(), self.dummy_read.all(), self.dummy_write[0].all(), db],
            (c.div_ceil(64), 1, 1),
            Cost::new("column_sums bias_grad", rows as u64 * c as u64, 4 * (rows as u64 + 1) * c as u64, 4 * c as u64),
        )
    }

    fn attention_grid(b: u32, t: u32, nh: u32) -> (u32, u32, u32) {
        let groups = (b * t * nh).div_ceil(64);
        (groups.min(65535), groups.div_ceil(65535), 1)
    }

    /// Causal attention: probabilities into `att` [B, T, NH, T], output into `out` [B·T, C].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_forward(
        &self,
        gpu: &Gpu,
        b: u32,
        t: u32,
        c: u32,
        nh: u32,
        out: View,
        att: View,
        qkv: View,
    ) -> Dispatch {
        let u = gpu.uniform("attention", &AttentionParams { b, t, c, nh });
        let a = AttentionSizes::new(b, t, c, nh);
        // Per causal pair: q·k, the softmax (max, exp, sum, divide) and p·v; att is written whole, zeros included.
        let cost = Cost::new("attention forward", (4 * a.hs + 4) * a.pairs, 3 * a.x, a.x + a.square);
        self.attention.dispatch(
            gpu,
            "forward",
            u,
            &[qkv, att, out, self.dummy_write[0].all(), self.dummy_write[1].all()],
            Self::attention_grid(b, t, nh),
            cost,
        )
    }

    /// dqkv = attention gradient, written outright (two dispatches; `dpre` is scratch of the size of `att`).
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        &self,
        gpu: &Gpu,
        b: u32,
        t: u32,
        c: u32,
        nh: u32,
        dqkv: View,
        dout: View,
        qkv: View,
        att: View,
        dpre: View,
    ) -> [Dispatch; 2] {
        let g = Self::attention_grid(b, t, nh);
        let mk = |entry: &str, cost: Cost| {
            let u = gpu.uniform("attention", &AttentionParams { b, t, c, nh });
            self.attention.dispatch(gpu, entry, u, &[qkv, att, dout, dqkv, dpre], g, cost)
        };
        let a = AttentionSizes::new(b, t, c, nh);
        // Per causal pair, dy·v and the softmax's backward into dpre, then dq = dpre·k; reads k, v, att and dy.
        let query =
            Cost::new("attention backward_query", (4 * a.hs + 5) * a.pairs, 3 * a.x + 4 * a.pairs, a.x + 4 * a.pairs);
        // Per causal pair, dk = dpre·q and dv = att·dy; reads q, dy, dpre and att.
        let keys = Cost::new("attention backward_keys", 4 * a.hs * a.pairs, 2 * a.x + 8 * a.pairs, 2 * a.x);
        [mk("backward_query", query), mk("backward_keys", keys)]
    }

    /// `out[r] = wte[tokens[r]] + wpe[r mod T]`, over the embedding part `p` names (its first part writes wpe;
    /// record every part, in order).
    pub fn embedding_forward(
        &self,
        gpu: &Gpu,
        p: EmbeddingParams,
        out: View,
        tokens: View,
        wte: View,
        wpe: View,
    ) -> Dispatch {
        let (x, y) = grid((p.rows * p.c).div_ceil(256));
        let u = gpu.uniform("embedding", &p);
        // Every part passes over the whole output (the first starts it from wpe, the others add to it); the token
        // rows it gathers from wte are counted with the first part, in the part's storage (fp32, or fp16 words).
        let n = p.rows as u64 * p.c as u64;
        let first = p.first as u64;
        let wte_bytes = if p.half != 0 { 2 } else { 4 };
        let cost = Cost::new("embedding forward", n, 4 * p.rows as u64 + 4 * n + first * wte_bytes * n, 4 * n);
        self.embedding.dispatch(gpu, "forward", u, &[tokens, wte, wpe, out], (x, y, 1), cost)
    }

    /// `dwte[tokens[r]] += dout[r]` for the tokens in the part `p` names, and in its first part
    /// `dwpe[r mod T] += dout[r]`.
    pub fn embedding_backward(
        &self,
        gpu: &Gpu,
        p: EmbeddingParams,
        dwte: View,
        dwpe: View,
        dout: View,
        tokens: View,
    ) -> Dispatch {
        let c = p.c;
        let u = gpu.uniform("embedding", &p);
        // Each part reads the tokens and dout; the gathered wte rows (read and written) count with the first part,
        // which also adds into wpe.
        let n = p.rows as u64 * c as u64;
        let first = p.first as u64;
        let cost =
            Cost::new("embedding backward", (1 + first) * n, 4 * p.rows as u64 + 4 * n + first * 8 * n, first * 8 * n);
        self.embedding.dispatch(gpu, "backward", u, &[tokens, dwte, dwpe, dout], (c.div_ceil(64), 1, 1), cost)
    }

    /// Over one chunk of `rows` logits rows (batch rows `row0..row0 + rows`): softmax in place and `−log p[target]`
    /// per row into `losses[row0..]`; with `grad_scale`, then `(p − onehot)·grad_scale` in place (the fused head's
    /// gradient, read by its backward matmuls).
    #[allow(clippy::too_many_arguments)]
    pub fn cross_entropy(
        &self,
        gpu: &Gpu,
        rows: u32,
        v: u32,
        row0: u32,
        grad_scale: Option<f32>,
        probs: View,
        targets: View,
        losses: View,
    ) -> Dispatch {
        let (x, y) = grid(rows);
        let params =
            CrossEntropyParams { rows, v, groups_x: x, row0, grad_scale: grad_scale.unwrap_or(0.0), _pad: [0; 3] };
        let u = gpu.uniform("cross_entropy", &params);
        let entry = if grad_scale.is_some() { "forward_backward" } else { "forward" };
        // Max, exp, sum and divide per logit, and with the gradient a subtract and a scale more; in place.
        let (n, r) = (rows as u64 * v as u64, rows as u64);
        let cost = match grad_scale {
            None => Cost::new("cross_entropy forward", 4 * n, 4 * n + 4 * r, 4 * n + 4 * r),
            Some(_) => Cost::new("cross_entropy forward_backward", 6 * n, 4 * n + 4 * r, 4 * n + 4 * r),
        };
        self.cross_entropy.dispatch(gpu, entry, u, &[probs, targets, losses], (x, y, 1), cost)
    }

    /// Gradient norm (two reductions) then the AdamW update with clipping, over every shard of the trainable
    /// parameters: each shard's partial sums of squares land side by side in `norm_buf` (1 + Σ [`norm_partials`]), one
    /// pass adds them into element 0 — the squared global norm before clipping — and each shard is updated with it.
    pub fn adamw(&self, gpu: &Gpu, hyper: AdamHyper, shards: &[AdamShard], norm_buf: View) -> AdamDispatch {
        let total: u32 = shards.iter().map(|s| norm_partials(s.n as usize) as u32).sum();
        let base = AdamParams {
            n: 0,
            groups_x: 0,
            step: 0,
            partials: total,
            lr: 0.0,
            beta1: hyper.beta1,
            beta2: hyper.beta2,
            eps: hyper.eps,
            weight_decay: hyper.weight_decay,
            max_norm: hyper.max_norm,
            partial_base: 0,
            _pad: 0.0,
        };
        let mut norm = Vec::new();
        let mut update = Vec::new();
        let mut partial_base = 0;
        for sh in shards {
            let partials = norm_partials(sh.n as usize) as u32;
            let (x, y) = grid(partials);
            let p = AdamParams { n: sh.n, groups_x: x, partial_base, ..base };
            let (ux, uy) = grid(sh.n.div_ceil(256));
            let up = AdamParams { groups_x: ux, ..p };
            let bufs = [sh.param, sh.grad, sh.m, sh.v, norm_buf];
            let n = sh.n as u64;
            let sum_squares = Cost::new("adamw sum_squares", 2 * n, 4 * n, 4 * partials as u64);
            // Clip, decay, both moments, their bias corrections, the square root and the step: reads p, g, m, v
            // (and the norm), writes p, m, v.
            let step = Cost::new("adamw update", 16 * n, 16 * n + 4, 12 * n);
            norm.push(self.adamw.dispatch(gpu, "sum_squares", gpu.uniform("adamw", &p), &bufs, (x, y, 1), sum_squares));
            update.push((up, self.adamw.dispatch(gpu, "update", gpu.uniform("adamw", &up), &bufs, (ux, uy, 1), step)));
            partial_base += partials;
        }
        let first = shards.first().expect("at least one trainable shard");
        let bufs = [first.param, first.grad, first.m, first.v, norm_buf];
        let finish = Cost::new("adamw finish_norm", total as u64, 4 * total as u64, 4);
        norm.push(self.adamw.dispatch(gpu, "finish_norm", gpu.uniform("adamw", &base), &bufs, (1, 1, 1), finish));
        AdamDispatch { norm, update }
    }
}
