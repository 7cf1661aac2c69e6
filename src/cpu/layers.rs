//! Forward and backward of every GPT-2 layer over flat row-major buffers, side by side (llm.c style).
//! Shapes: B batch, T positions, C width, NH heads, hs = C/NH, V vocabulary; `BT = B·T` rows.
//! Backward functions *accumulate* (`+=`) into their gradient buffers.

use super::matmul::{gemm, Mat};
use rayon::prelude::*;

/// Rows handed to one rayon task by the row-wise kernels.
const ROW_CHUNK: usize = 16;

// ---------------------------------------------------------------- embedding

/// `out[b,t] = wte[token] + wpe[t]`.
pub fn embedding_forward(out: &mut [f32], tokens: &[u32], wte: &[f32], wpe: &[f32], t_len: usize, c: usize) {
    out.par_chunks_mut(c).enumerate().for_each(|(row, o)| {
        let tok = tokens[row] as usize;
        let t = row % t_len;
        for i in 0..c {
            o[i] = wte[tok * c + i] + wpe[t * c + i];
        }
    });
}

pub fn embedding_backward(dwte: &mut [f32], dwpe: &mut [f32], dout: &[f32], tokens: &[u32], t_len: usize, c: usize) {
    for (row, d) in dout.chunks(c).enumerate() {
        let tok = tokens[row] as usize;
        let t = row % t_len;
        for i in 0..c {
            dwte[tok * c + i] += d[i];
            dwpe[t * c + i] += d[i];
        }
    }
}

// ---------------------------------------------------------------- layer norm

/// LayerNorm over the last dimension; saves each row's mean and 1/std for the backward pass.
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    w: &[f32],
    b: &[f32],
    c: usize,
    eps: f32,
) {
    out.par_chunks_mut(c).zip(mean.par_iter_mut()).zip(rstd.par_iter_mut()).enumerate().for_each(
        |(row, ((o, m), r))| {
            let x = &inp[row * c..(row + 1) * c];
            let mu = x.iter().sum::<f32>() / c as f32;
            let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
            let s = 1.0 / (var + eps).sqrt();
            for i in 0..c {
                o[i] = (x[i] - mu) * s * w[i] + b[i];
            }
            *m = mu;
            *r = s;
        },
    );
}

/// Input gradient always; weight and bias gradients when `dparams` is given (frozen LayerNorms skip them).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    dinp: &mut [f32],
    dparams: Option<(&mut [f32], &mut [f32])>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
) {
    dinp.par_chunks_mut(c).enumerate().for_each(|(row, dx)| {
        let x = &inp[row * c..(row + 1) * c];
        let dy = &dout[row * c..(row + 1) * c];
        let (mu, s) = (mean[row], rstd[row]);
        let mut dnorm_mean = 0.0f32;
        let mut dnorm_norm_mean = 0.0f32;
        for i in 0..c {
            let norm = (x[i] - mu) * s;
            let dnorm = w[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= c as f32;
        dnorm_norm_mean /= c as f32;
        for i in 0..c {
            let norm = (x[i] - mu) * s;
            let dnorm = w[i] * dy[i];
            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    });
    if let Some((dw, db)) = dparams {
        let rows = dout.len() / c;
        for row in 0..rows {
            let x = &inp[row * c..(row + 1) * c];
            let dy = &dout[row * c..(row + 1) * c];
            for i in 0..c {
                dw[i] += (x[i] - mean[row]) * rstd[row] * dy[i];
                db[i] += dy[i];
            }
        }
    }
}

// ---------------------------------------------------------------- linear (Conv1D: weight [in, out])

/// `out[BT×OC] = inp[BT×C] · W[C×OC] + bias`.
pub fn linear_forward(out: &mut [f32], inp: &[f32], w: Mat, bias: &[f32], rows: usize, c: usize, oc: usize) {
    for o in out.chunks_mut(oc) {
        o.copy_from_slice(bias);
    }
    gemm(rows, c, oc, 1.0, Mat::new(inp, c), w, 1.0, out, oc);
}

/// `dinp += dout · Wᵀ`; when `dparams` is given also `dW += inpᵀ · dout` and `dbias += Σ_rows dout`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dinp: &mut [f32],
    dparams: Option<(&mut [f32], &mut [f32])>,
    dout: &[f32],
    inp: &[f32],
    w: Mat,
    rows: usize,
    c: usize,
    oc: usize,
) {
    gemm(rows, oc, c, 1.0, Mat::new(dout, oc), w.transposed(), 1.0, dinp, c);
    if let Some((dw, db)) = dparams {
        gemm(c, rows, oc, 1.0, Mat::t(inp, c), Mat::new(dout, oc), 1.0, dw, oc);
        for d in dout.chunks(oc) {
            for (b, v) in db.iter_mut().zip(d) {
                *b += v;
            }
        }
    }
}

// ---------------------------------------------------------------- attention

/// `a · b` over eight running sums, so the compiler can keep them in one SIMD register (a single running f32 sum
/// must be added in order and stays scalar).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Causal multi-head self-attention from the fused `qkv[BT×3C]` (q | k | v columns).
/// Saves the softmax probabilities `att[B, T, NH, T]` (row t holds weights over positions ≤ t; the rest is 0).
/// Per sequence and head it is three matrix products on strided views of `qkv` (S = Q·Kᵀ, then P·V after the causal
/// softmax): the full T×T square costs twice the causal half in multiply-adds but runs in the matmul kernels.
pub fn attention_forward(out: &mut [f32], att: &mut [f32], qkv: &[f32], t_len: usize, c: usize, nh: usize) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    let row = nh * t_len; // att elements per position
    out.par_chunks_mut(t_len * c).zip(att.par_chunks_mut(t_len * row)).enumerate().for_each(|(b, (y, a))| {
        let x = &qkv[b * t_len * 3 * c..(b + 1) * t_len * 3 * c];
        for h in 0..nh {
            let (q, k, v) = (&x[h * hs..], &x[c + h * hs..], &x[2 * c + h * hs..]);
            let p = &mut a[h * t_len..];
            gemm(t_len, hs, t_len, scale, Mat::new(q, 3 * c), Mat::t(k, 3 * c), 0.0, p, row);
            for t in 0..t_len {
                // Causal: position t attends to 0..=t.
                let r = &mut p[t * row..][..t_len];
                softmax_in_place(&mut r[..=t]);
                r[t + 1..].fill(0.0);
            }
            gemm(t_len, t_len, hs, 1.0, Mat::new(p, row), Mat::new(v, 3 * c), 0.0, &mut y[h * hs..], c);
        }
    });
}

/// Writes into `dqkv` the gradient of [`attention_forward`], per sequence and head as matrix products:
/// dP = dY·Vᵀ, dV = Pᵀ·dY, dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √hs, dQ = dS·K, dK = dSᵀ·Q. Each element of `dqkv` is
/// one head's column of q, k or v, written by one product, so nothing needs zeroing first (as on the GPU, where a
/// zeroing pass is a pass over memory).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    att: &[f32],
    b_len: usize,
    t_len: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    let row = nh * t_len;
    debug_assert_eq!(dqkv.len(), b_len * t_len * 3 * c);
    dqkv.par_chunks_mut(t_len * 3 * c).enumerate().for_each(|(b, dx)| {
        let x = &qkv[b * t_len * 3 * c..(b + 1) * t_len * 3 * c];
        let dy = &dout[b * t_len * c..(b + 1) * t_len * c];
        let a = &att[b * t_len * row..(b + 1) * t_len * row];
        let mut ds = vec![0.0f32; t_len * t_len];
        for h in 0..nh {
            let (q, k, v) = (&x[h * hs..], &x[c + h * hs..], &x[2 * c + h * hs..]);
            let (p, dyh) = (&a[h * t_len..], &dy[h * hs..]);
            gemm(t_len, hs, t_len, 1.0, Mat::new(dyh, c), Mat::t(v, 3 * c), 0.0, &mut ds, t_len);
            gemm(t_len, t_len, hs, 1.0, Mat::t(p, row), Mat::new(dyh, c), 0.0, &mut dx[2 * c + h * hs..], 3 * c);
            for t in 0..t_len {
                let (pr, dr) = (&p[t * row..][..t_len], &mut ds[t * t_len..][..t_len]);
                let dot = dot(&pr[..=t], &dr[..=t]);
                for s in 0..=t {
                    dr[s] = pr[s] * (dr[s] - dot) * scale;
                }
                dr[t + 1..].fill(0.0);
            }
            gemm(t_len, t_len, hs, 1.0, Mat::new(&ds, t_len), Mat::new(k, 3 * c), 0.0, &mut dx[h * hs..], 3 * c);
            gemm(t_len, t_len, hs, 1.0, Mat::t(&ds, t_len), Mat::new(q, 3 * c), 0.0, &mut dx[c + h * hs..], 3 * c);
        }
    });
}

// ---------------------------------------------------------------- gelu_new

const GELU_K: f32 = 0.797_884_6; // √(2/π)

/// `e^x` for the softmaxes and gelu_new, in straight-line arithmetic the compiler vectorizes (libm's `expf` is a
/// call per element). x = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r⁷/7! (truncation below 1e-8
/// relative), 2^n built in the exponent bits. Within a few ulp of `f32::exp` over [−87, 88]; arguments are clamped
/// to that range (below it the result is 2⁻¹²⁶ instead of a smaller number, above it 2¹²⁷·e^r instead of ∞: neither
/// changes a softmax or a tanh), and NaN stays NaN.
#[inline]
pub fn exp_approx(x: f32) -> f32 {
    // ln 2 in two parts: n·LN2_HI is exact for the |n| ≤ 127 used here, LN2_LO carries the rest.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // NaN casts to 0 (scale 1) and p is already NaN.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// tanh through one exp: libm's `tanhf` (via `expm1f`) took a third of a training step. The absolute error is a
/// few ulp of 1, which is what gelu_new (`1 + tanh`) and its derivative (`1 − tanh²`) see; NaN stays NaN and ±∞
/// gives ±1.
#[inline]
pub fn tanh_via_exp(u: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp_approx(2.0 * u))
}

/// `gelu_new(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`, as transformers' `NewGELUActivation`.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    out.par_chunks_mut(4096).zip(inp.par_chunks(4096)).for_each(|(o, x)| {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = 0.5 * x * (1.0 + tanh_via_exp(GELU_K * (x + 0.044715 * x * x * x)));
        }
    });
}

/// Writes dinp = gelu_new'(inp) · dout (outright, as the GPU kernel does: no zeroing pass first).
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    dinp.par_chunks_mut(4096).zip(inp.par_chunks(4096)).zip(dout.par_chunks(4096)).for_each(|((d, x), dy)| {
        for ((d, &x), &dy) in d.iter_mut().zip(x).zip(dy) {
            let u = GELU_K * (x + 0.044715 * x * x * x);
            let th = tanh_via_exp(u);
            let sech2 = 1.0 - th * th;
            let grad = 0.5 * (1.0 + th) + 0.5 * x * sech2 * GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
            *d = grad * dy;
        }
    });
}

// ---------------------------------------------------------------- residual

pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

// ---------------------------------------------------------------- logits and cross-entropy

/// Logits `lnf · wteᵀ` (the tied LM head), then softmax probabilities in place of the logits.
pub fn lm_head_forward(probs: &mut [f32], lnf: &[f32], wte: &[f32], rows: usize, c: usize, v: usize) {
    gemm(rows, c, v, 1.0, Mat::new(lnf, c), Mat::t(wte, c), 0.0, probs, v);
    probs.par_chunks_mut(v.max(1) * ROW_CHUNK).for_each(|chunk| {
        for row in chunk.chunks_mut(v) {
            softmax_in_place(row);
        }
    });
}

/// Softmax of one row in place, shifted by its maximum so that no exponential overflows.
fn softmax_in_place(row: &mut [f32]) {
    let maxv = row.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
    let mut sum = 0.0f32;
    for x in row.iter_mut() {
        *x = exp_approx(*x - maxv);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// The tied head and the cross-entropy, fused over chunks of `logits.len() / v` rows so that only one chunk's logits
/// exist at once (GPT-2's 50,257-token head would need `rows × V` floats: 103 MB at 4 × 128). Returns the mean
/// cross-entropy in nats (accumulated in f64). With `grad`, the gradient through the head as well, computed from the
/// same chunk while its probabilities are at hand: `dlogits = (softmax − onehot)/rows`, then `dlnf = dlogits·wte`
/// (overwritten) and `dwte += dlogitsᵀ·lnf` (full fine-tuning) — so the backward pass never recomputes the head.
pub fn head_cross_entropy(
    logits: &mut [f32],
    lnf: &[f32],
    wte: &[f32],
    targets: &[u32],
    c: usize,
    v: usize,
    mut grad: Option<HeadGrad>,
) -> f64 {
    let rows = targets.len();
    let chunk = (logits.len() / v.max(1)).clamp(1, rows.max(1));
    let inv = 1.0 / rows as f32;
    let mut total = 0.0f64;
    for start in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - start);
        let (x, tg) = (&lnf[start * c..(start + n) * c], &targets[start..start + n]);
        let part = &mut logits[..n * v];
        gemm(n, c, v, 1.0, Mat::new(x, c), Mat::t(wte, c), 0.0, part, v);
        total += softmax_cross_entropy(part, tg, v, grad.is_some().then_some(inv));
        if let Some(g) = grad.as_mut() {
            gemm(n, v, c, 1.0, Mat::new(part, v), Mat::new(wte, c), 0.0, &mut g.dlnf[start * c..(start + n) * c], c);
            if let Some(dwte) = g.dwte.as_deref_mut() {
                gemm(v, n, c, 1.0, Mat::t(part, v), Mat::new(x, c), 1.0, dwte, c);
            }
        }
    }
    total / rows as f64
}

/// Per row of `logits` (`[rows, V]`): softmax in place and the row's loss `−log p[target]`; with `grad_scale`, then
/// `(p − onehot)·grad_scale` in place of the probabilities. Returns the sum of the rows' losses (f64).
pub fn softmax_cross_entropy(logits: &mut [f32], targets: &[u32], v: usize, grad_scale: Option<f32>) -> f64 {
    let losses: Vec<f64> = logits
        .par_chunks_mut(v)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            softmax_in_place(row);
            let loss = -(row[t as usize].max(f32::MIN_POSITIVE) as f64).ln();
            if let Some(scale) = grad_scale {
                row[t as usize] -= 1.0;
                row.iter_mut().for_each(|p| *p *= scale);
            }
            loss
        })
        .collect();
    // Summed in order: rayon's parallel sum splits where work stealing falls, so its f64 total could differ from run
    // to run, and runs are reproducible bit for bit.
    losses.iter().sum()
}

/// Where [`head_cross_entropy`] writes the gradient through the head.
pub struct HeadGrad<'a> {
    /// `[rows, C]`, overwritten.
    pub dlnf: &'a mut [f32],
    /// `[V, C]`, accumulated; only when the embedding is trained.
    pub dwte: Option<&'a mut [f32]>,
}

#[cfg(test)]
mod tanh_tests {
    use super::{exp_approx, tanh_via_exp};

    #[test]
    fn exp_approx_is_within_a_few_ulp_of_libm() {
        let mut worst = 0.0f32;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let (got, want) = (exp_approx(x), x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst <= 4.0 * f32::EPSILON, "max relative error {worst:e}");
        assert!(exp_approx(f32::NAN).is_nan());
        assert!(exp_approx(f32::NEG_INFINITY) < 1e-37 && exp_approx(f32::INFINITY) > 1e38);
        assert_eq!(exp_approx(0.0), 1.0);
    }

    #[test]
    fn tanh_via_exp_is_within_a_few_ulp_of_one_of_libm() {
        let mut worst = 0.0f32;
        for i in -200_000..=200_000 {
            let u = i as f32 * 1e-4;
            worst = worst.max((tanh_via_exp(u) - u.tanh()).abs());
        }
        assert!(worst <= 4.0 * f32::EPSILON, "max |error| {worst:e}");
        assert_eq!(
            (tanh_via_exp(f32::INFINITY), tanh_via_exp(f32::NEG_INFINITY), tanh_via_exp(100.0)),
            (1.0, -1.0, 1.0)
        );
        assert!(tanh_via_exp(f32::NAN).is_nan());
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;

    /// The fused head gives the same loss and gradients whatever the chunk, and equals the unfused computation:
    /// all logits, softmax, loss, then `dlnf = dlogits·wte` and `dwte = dlogitsᵀ·lnf`.
    #[test]
    fn chunked_head_equals_the_whole_logits_computation() {
        let (rows, c, v) = (7usize, 5usize, 11usize);
        let val = |i: usize, k: f32| (i as f32 * k).sin() * 0.7;
        let lnf: Vec<f32> = (0..rows * c).map(|i| val(i, 1.3)).collect();
        let wte: Vec<f32> = (0..v * c).map(|i| val(i, 0.77)).collect();
        let targets: Vec<u32> = (0..rows).map(|r| ((r * 5 + 3) % v) as u32).collect();

        let mut probs = vec![0.0; rows * v];
        lm_head_forward(&mut probs, &lnf, &wte, rows, c, v);
        let want_loss: f64 =
            targets.iter().enumerate().map(|(r, &t)| -(probs[r * v + t as usize] as f64).ln()).sum::<f64>() / 7.0;
        let mut dlogits = probs.clone();
        for (r, &t) in targets.iter().enumerate() {
            dlogits[r * v + t as usize] -= 1.0;
        }
        dlogits.iter_mut().for_each(|d| *d /= rows as f32);
        let mut want_dlnf = vec![0.0; rows * c];
        gemm(rows, v, c, 1.0, Mat::new(&dlogits, v), Mat::new(&wte, c), 0.0, &mut want_dlnf, c);
        let mut want_dwte = vec![0.5; v * c];
        gemm(v, rows, c, 1.0, Mat::t(&dlogits, v), Mat::new(&lnf, c), 1.0, &mut want_dwte, c);

        for chunk in [1, 3, 7, 50] {
            let mut scratch = vec![0.0; chunk * v];
            let loss_only = head_cross_entropy(&mut scratch, &lnf, &wte, &targets, c, v, None);
            let (mut dlnf, mut dwte) = (vec![9.0; rows * c], vec![0.5; v * c]);
            let grad = HeadGrad { dlnf: &mut dlnf, dwte: Some(&mut dwte) };
            let loss = head_cross_entropy(&mut scratch, &lnf, &wte, &targets, c, v, Some(grad));
            assert!((loss - want_loss).abs() < 1e-6 && loss == loss_only, "chunk {chunk}: {loss} vs {want_loss}");
            for (got, want) in [(&dlnf, &want_dlnf), (&dwte, &want_dwte)] {
                let err = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(err < 1e-6, "chunk {chunk}: gradient differs by {err:e}");
            }
        }
    }
}
