//! The matrix multiplies: plain f32 (`shaders/matmul.wgsl`) and against a frozen base weight in its storage format
//! (`shaders/dequant.wgsl` + `shaders/matmul_dequant.wgsl`), both tiled by `shaders/matmul_tiles.wgsl`. Pipelines
//! are compiled once, when a call first needs them; a call is prepared once (uniforms and bind groups) and recorded
//! into any number of command encoders.

use super::{groups, Category, Cost, Gpu, GpuBuffer, View};
use crate::quant::{codebooks, Format, QuantizedTensor, Scales, Stored};
use crate::Result;

const MATMUL_WGSL: &str = include_str!("../../shaders/matmul.wgsl");
const DEQUANT_WGSL: &str = include_str!("../../shaders/dequant.wgsl");
const MATMUL_DEQUANT_WGSL: &str = include_str!("../../shaders/matmul_dequant.wgsl");
const MATMUL_TILES_WGSL: &str = include_str!("../../shaders/matmul_tiles.wgsl");

/// A prepared dispatch: pipeline, bind groups, workgroup counts, its uniform (rewritable between steps), and what it
/// costs on paper (`cost`).
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_groups: Vec<wgpu::BindGroup>,
    workgroups: (u32, u32, u32),
    uniform: Option<wgpu::Buffer>,
    cost: Cost,
}

impl Dispatch {
    pub(crate) fn new(
        pipeline: wgpu::ComputePipeline,
        bind_groups: Vec<wgpu::BindGroup>,
        workgroups: (u32, u32, u32),
        uniform: Option<wgpu::Buffer>,
        cost: Cost,
    ) -> Self {
        Dispatch { pipeline, bind_groups, workgroups, uniform, cost }
    }

    /// Its FLOPs and bytes, counted from its shapes when it was prepared.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Rewrites the uniform parameters (e.g. the learning rate and step of AdamW) without creating anything.
    pub fn write_uniform<T: bytemuck::Pod>(&self, gpu: &Gpu, value: &T) {
        if let Some(u) = &self.uniform {
            gpu.queue.write_buffer(u, 0, bytemuck::bytes_of(value));
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        for (i, bg) in self.bind_groups.iter().enumerate() {
            pass.set_bind_group(i as u32, bg, &[]);
        }
        let (x, y, z) = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Records dispatches into one compute pass of `enc`.
pub fn submit_in_pass(enc: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
    for d in dispatches {
        d.record(&mut pass);
    }
}

/// Records dispatches into one compute pass and submits them.
pub fn submit(gpu: &Gpu, dispatches: &[&Dispatch]) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    submit_in_pass(&mut enc, dispatches);
    gpu.queue.submit([enc.finish()]);
}

fn entries<'a>(uniform: &'a wgpu::Buffer, bufs: &[View<'a>]) -> Vec<wgpu::BindGroupEntry<'a>> {
    let mut v = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    v.extend(
        bufs.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.binding() }),
    );
    v
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    trans: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    c_offset: u32,
    alpha: f32,
    beta: f32,
    a_offset: u32,
    b_offset: u32,
}

/// The three entry points of matmul_tiles.wgsl: one column of at most 16 rows per invocation (`thin_rows`), 16×16
/// output tiles (`small_tiles`) and 64×64 tiles with an 8×8 block of outputs per invocation (`large_tiles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tiling {
    Thin,
    Small,
    Large,
}

impl Tiling {
    const LARGE: u32 = 64;
    /// Rows an invocation of `thin_rows` holds (THIN in matmul_tiles.wgsl), and its workgroup's width.
    const THIN_ROWS: u32 = 16;
    const THIN_WIDTH: u32 = 64;

    /// The tiling for an m×n output and its workgroup grid. A few rows (a batch of a few tokens, generation's
    /// one): a column per invocation, without the barriers that dominate a tiled kernel's time when most of its tile
    /// is padding. Large tiles once both sides fill one: on thinner outputs most of a 64-wide tile would compute
    /// padding. (`Matmul::prepare` turns many rows onto a few columns into a few rows first.)
    fn pick(m: u32, n: u32) -> (Tiling, (u32, u32, u32)) {
        if m <= Self::THIN_ROWS {
            (Tiling::Thin, (groups(n, Self::THIN_WIDTH), groups(m, Self::THIN_ROWS), 1))
        } else if m >= Self::LARGE && n >= Self::LARGE {
            (Tiling::Large, (groups(n, Self::LARGE), groups(m, Self::LARGE), 1))
        } else {
            (Tiling::Small, (groups(n, 16), groups(m, 16), 1))
        }
    }

    fn entry_point(self) -> &'static str {
        match self {
            Tiling::Thin => "thin_rows",
            Tiling::Small => "small_tiles",
            Tiling::Large => "large_tiles",
        }
    }
}

/// Pipelines of one shader module, each compiled the first time a call needs it: a run at a few rows never compiles
/// the 64×64 tiling, and a model in one storage format compiles that format's decoder only. (Compiling is what a
/// trainer's first step waits for, seconds on a CPU-emulated GPU.) `K` tells pipelines apart: the tiling and the
/// pipeline constants.
struct LazyPipelines<K> {
    module: wgpu::ShaderModule,
    label: &'static str,
    compiled: std::sync::Mutex<Vec<(K, wgpu::ComputePipeline)>>,
}

impl<K: Copy + PartialEq> LazyPipelines<K> {
    fn new(module: wgpu::ShaderModule, label: &'static str) -> Self {
        LazyPipelines { module, label, compiled: Default::default() }
    }

    /// The pipeline of `entry` with `constants`, compiled on first use.
    fn get(&self, gpu: &Gpu, key: K, entry: &str, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = compiled.iter().find(|(k, _)| *k == key) {
            return p.clone();
        }
        let pipeline = gpu.pipeline_at(self.label, &self.module, entry, constants);
        compiled.push((key, pipeline.clone()));
        pipeline
    }
}

/// The f32 matmul pipelines, one per tiling.
pub struct Matmul {
    pipelines: LazyPipelines<Tiling>,
}

/// A matmul call: C[m×n] = alpha·op(A)[m×k]·op(B)[k×n] + beta·C. Each operand is row-major with its own leading
/// dimension (elements between stored rows) and starting element, so column slices (q, k, v of c_attn) and
/// sub-tensors of a flat buffer need no copies.
#[derive(Clone, Copy, Debug)]
pub struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    pub a_offset: u32,
    pub b_offset: u32,
    pub c_offset: u32,
    pub alpha: f32,
    pub beta: f32,
}

impl MatmulShape {
    /// C = op(A)·op(B) with dense operands (leading dimensions implied by the shapes) and no offsets.
    pub fn new(m: u32, k: u32, n: u32, trans_a: bool, trans_b: bool) -> Self {
        MatmulShape {
            m,
            n,
            k,
            trans_a,
            trans_b,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            a_offset: 0,
            b_offset: 0,
            c_offset: 0,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// Plain C[m×n] = A[m×k]·B[k×n].
    pub fn plain(m: u32, k: u32, n: u32) -> Self {
        Self::new(m, k, n, false, false)
    }

    pub fn scaled(self, alpha: f32, beta: f32) -> Self {
        MatmulShape { alpha, beta, ..self }
    }

    /// The same product as Cᵀ = op(B)ᵀ·op(A)ᵀ: the operands swap places and each one's orientation flips; C keeps
    /// its place, stride and offset (the kernel stores transposed).
    fn for_transposed_output(self) -> Self {
        MatmulShape {
            m: self.n,
            n: self.m,
            trans_a: !self.trans_b,
            trans_b: !self.trans_a,
            lda: self.ldb,
            ldb: self.lda,
            a_offset: self.b_offset,
            b_offset: self.a_offset,
            ..self
        }
    }
}

impl Matmul {
    pub fn new(gpu: &Gpu) -> Self {
        let source = format!("{MATMUL_WGSL}\n{MATMUL_TILES_WGSL}");
        Matmul { pipelines: LazyPipelines::new(gpu.shader("matmul.wgsl", &source), "matmul") }
    }

    pub fn prepare(&self, gpu: &Gpu, s: MatmulShape, a: View, b: View, c: View) -> Dispatch {
        // Many rows and a few columns (a LoRA factor of rank ≤ 16 over a batch): 16 × 16 tiles would be mostly
        // padding and barriers, so the kernel computes Cᵀ = op(B)ᵀ·op(A)ᵀ — a few rows, a column per invocation —
        // and stores it transposed.
        let transposed = s.n <= Tiling::THIN_ROWS && s.m > Tiling::THIN_ROWS;
        let t = if transposed { s.for_transposed_output() } else { s };
        let params = MatmulParams {
            m: t.m,
            n: t.n,
            k: t.k,
            trans: t.trans_a as u32 | (t.trans_b as u32) << 1 | (transposed as u32) << 2,
            lda: t.lda,
            ldb: t.ldb,
            ldc: t.ldc,
            c_offset: t.c_offset,
            alpha: t.alpha,
            beta: t.beta,
            a_offset: t.a_offset,
            b_offset: t.b_offset,
        };
        let u = gpu.uniform("matmul params", &params);
        let (tiling, grid) = Tiling::pick(params.m, params.n);
        let pipeline = self.pipelines.get(gpu, tiling, tiling.entry_point(), &[]);
        let operands = if transposed { [b, a, c] } else { [a, b, c] };
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("matmul"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries(&u, &operands),
        });
        let cost = Cost::matmul("matmul", s.m, s.k, s.n, 4 * s.k as u64 * s.n as u64, s.beta != 0.0);
        Dispatch::new(pipeline, vec![bg], grid, Some(u), cost)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct QuantParams {
    offset: f32,
    _pad: [u32; 3],
    codebook: [f32; 16],
    dynamic_map: [f32; 256],
}

/// A frozen base weight on the GPU in its storage format: packed values and constants (the decode tables ride in
/// its uniform).
pub struct GpuQuantWeight {
    pub out_features: u32,
    pub in_features: u32,
    /// dequant.wgsl's FORMAT and DOUBLE_QUANT: the pipeline constants of the kernels that read this weight.
    format_id: u32,
    double_quant: bool,
    params: wgpu::Buffer,
    words: GpuBuffer,
    scales: GpuBuffer,
    qabs: GpuBuffer,
}

/// The ledger category of a quantization-constant buffer: the real thing, or a placeholder bound in its place.
fn placeholder_or(real: bool) -> Category {
    if real {
        Category::QuantConstants
    } else {
        Category::Scratch
    }
}

fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (i, b)| w | (*b as u32) << (8 * i))).collect()
}

fn pack_halves(halves: &[u16]) -> Vec<u32> {
    halves.chunks(2).map(|c| c[0] as u32 | (c.get(1).copied().unwrap_or(0) as u32) << 16).collect()
}

impl GpuQuantWeight {
    /// The stored values (packed words; two halves per word for fp16), e.g. for a gather reading rows of it.
    pub fn values(&self) -> View<'_> {
        self.words.all()
    }

    /// Bytes of the weight as stored: its values and, where the format has them, its quantization constants.
    pub fn stored_bytes(&self) -> u64 {
        let constants = |b: &GpuBuffer| if b.category() == Category::QuantConstants { b.size() } else { 0 };
        self.words.size() + constants(&self.scales) + constants(&self.qabs)
    }

    /// Uploads a Linear `[out, in]` weight quantized as bitsandbytes lays it out.
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        q: &QuantizedTensor,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        assert_eq!(q.len, out_features * in_features, "weight size");
        let format = q.storage.format;
        let (words, scales): (Vec<u32>, Option<&Scales>) = match &q.stored {
            Stored::F32(v) => (v.iter().map(|x| x.to_bits()).collect(), None),
            Stored::F16(v) => (pack_halves(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()), None),
            Stored::Bf16(v) => (pack_halves(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()), None),
            Stored::Int8 { values, scales } => {
                (pack_bytes(&values.iter().map(|v| *v as u8).collect::<Vec<_>>()), Some(scales))
            }
            Stored::Packed4 { bytes, scales } => (pack_bytes(bytes), Some(scales)),
        };
        let (scale_values, qabs, offset, dq) = match scales {
            None => (vec![0.0f32], vec![0u32], 0.0, 0),
            Some(Scales::F32(a)) => (a.clone(), vec![0u32], 0.0, 0),
            Some(Scales::Double { codes, nested_absmax, offset }) => {
                (nested_absmax.clone(), pack_bytes(codes), *offset, 1)
            }
        };
        let format_id = match format {
            Format::Fp32 => 0,
            Format::Fp16 => 1,
            Format::Bf16 => 2,
            Format::Int8 => 3,
            Format::Int4 => 4,
            Format::Fp4 => 5,
            Format::Nf4 => 6,
        };
        Ok(GpuQuantWeight {
            out_features: out_features as u32,
            in_features: in_features as u32,
            format_id,
            double_quant: dq == 1,
            params: gpu.uniform(
                "quant params",
                &QuantParams {
                    offset,
                    _pad: [0; 3],
                    codebook: QuantizedTensor::codebook4(format),
                    dynamic_map: codebooks::DYNAMIC_SIGNED_8BIT,
                },
            ),
            words: gpu.upload(&format!("{label} values"), &words, Category::BaseWeights)?,
            // A format without scales (or without double quantization) binds a one-value placeholder instead: not a
            // quantization constant, so it is not counted as one.
            scales: gpu.upload(&format!("{label} absmax"), &scale_values, placeholder_or(scales.is_some()))?,
            qabs: gpu.upload(&format!("{label} absmax codes"), &qabs, placeholder_or(dq == 1))?,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DequantParams {
    m: u32,
    n: u32,
    k: u32,
    in_features: u32,
    use_bias: u32,
    beta: f32,
    ldx: u32,
    ldy: u32,
    x_offset: u32,
    y_offset: u32,
    _pad: [u32; 2],
}

/// Where a row-major matrix sits in its buffer: its first element and the elements between rows.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub offset: u32,
    pub ld: u32,
}

impl Strided {
    /// A dense matrix of `cols` columns at the start of its buffer.
    pub fn dense(cols: u32) -> Self {
        Strided { offset: 0, ld: cols }
    }
}

/// The fused dequantize + matmul pipelines: forward (x·Wᵀ) and backward (dy·W) are one shader with the pipeline
/// constant `TRANSPOSE_W` set either way, and the weight's storage format and double quantization are pipeline
/// constants too, so each pipeline decodes one format without branching on it per value.
pub struct MatmulDequant {
    pipelines: LazyPipelines<DequantKey>,
}

/// What tells two fused-matmul pipelines apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DequantKey {
    tiling: Tiling,
    transpose_w: bool,
    format_id: u32,
    double_quant: bool,
}

impl MatmulDequant {
    pub fn new(gpu: &Gpu) -> Self {
        let source = format!("{DEQUANT_WGSL}\n{MATMUL_DEQUANT_WGSL}\n{MATMUL_TILES_WGSL}");
        MatmulDequant { pipelines: LazyPipelines::new(gpu.shader("matmul_dequant.wgsl", &source), "matmul_dequant") }
    }

    /// Forward: `y[m×out] = x[m×in]·Wᵀ + bias` (bias optional).
    pub fn prepare_forward(
        &self,
        gpu: &Gpu,
        w: &GpuQuantWeight,
        m: u32,
        x: View,
        bias: Option<View>,
        y: View,
    ) -> Dispatch {
        let dense = (Strided::dense(w.in_features), Strided::dense(w.out_features));
        self.prepare_forward_strided(gpu, w, m, x, dense.0, bias, y, dense.1)
    }

    /// [`MatmulDequant::prepare_forward`] on sub-matrices: x's rows start at `xs.offset`, `xs.ld` apart, and y's
    /// likewise (the tied head: a chunk of rows in, its columns of the logits out).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_forward_strided(
        &self,
        gpu: &Gpu,
        w: &GpuQuantWeight,
        m: u32,
        x: View,
        xs: Strided,
        bias: Option<View>,
        y: View,
        ys: Strided,
    ) -> Dispatch {
        let p = DequantParams {
            m,
            n: w.out_features,
            k: w.in_features,
            in_features: w.in_features,
            use_bias: bias.is_some() as u32,
            beta: 0.0,
            ldx: xs.ld,
            ldy: ys.ld,
            x_offset: xs.offset,
            y_offset: ys.offset,
            _pad: [0; 2],
        };
        self.prepare(gpu, true, "matmul_dequant forward", w, p, x, bias.unwrap_or(x), y)
    }

    /// Backward to the input: `dx[m×in] (+)= dy[m×out]·W` (accumulates when `accumulate`).
    pub fn prepare_backward(
        &self,
        gpu: &Gpu,
        w: &GpuQuantWeight,
        m: u32,
        dy: View,
        dx: View,
        accumulate: bool,
    ) -> Dispatch {
        let dense = (Strided::dense(w.out_features), Strided::dense(w.in_features));
        self.prepare_backward_strided(gpu, w, m, dy, dense.0, dx, dense.1, accumulate)
    }

    /// [`MatmulDequant::prepare_backward`] on sub-matrices (see [`MatmulDequant::prepare_forward_strided`]).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_backward_strided(
        &self,
        gpu: &Gpu,
        w: &GpuQuantWeight,
        m: u32,
        dy: View,
        dys: Strided,
        dx: View,
        dxs: Strided,
        accumulate: bool,
    ) -> Dispatch {
        let p = DequantParams {
            m,
            n: w.in_features,
            k: w.out_features,
            in_features: w.in_features,
            use_bias: 0,
            beta: if accumulate { 1.0 } else { 0.0 },
            ldx: dys.ld,
            ldy: dxs.ld,
            x_offset: dys.offset,
            y_offset: dxs.offset,
            _pad: [0; 2],
        };
        self.prepare(gpu, false, "matmul_dequant backward", w, p, dy, dy, dx)
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &self,
        gpu: &Gpu,
        transpose_w: bool,
        kernel: &'static str,
        w: &GpuQuantWeight,
        p: DequantParams,
        x: View,
        bias: View,
        y: View,
    ) -> Dispatch {
        let u = gpu.uniform("matmul_dequant params", &p);
        let (tiling, grid) = Tiling::pick(p.m, p.n);
        let key = DequantKey { tiling, transpose_w, format_id: w.format_id, double_quant: w.double_quant };
        let constants = [
            ("TRANSPOSE_W", transpose_w as u32 as f64),
            ("FORMAT", w.format_id as f64),
            ("DOUBLE_QUANT", w.double_quant as u32 as f64),
        ];
        let pipeline = self.pipelines.get(gpu, key, tiling.entry_point(), &constants);
        let g0 = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("matmul_dequant io"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries(&u, &[x, bias, y]),
        });
        let g1 = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("matmul_dequant weight"),
            layout: &pipeline.get_bind_group_layout(1),
            entries: &entries(&w.params, &[w.words.all(), w.scales.all(), w.qabs.all()]),
        });
        let mut cost = Cost::matmul(kernel, p.m, p.k, p.n, w.stored_bytes(), p.beta != 0.0);
        cost.read += 4 * p.n as u64 * p.use_bias as u64;
        Dispatch::new(pipeline, vec![g0, g1], grid, Some(u), cost)
    }
}
