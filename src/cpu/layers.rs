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
pub fn linear_forward(out: &mut [f32], inp: &[f32], w: &[f32], bias: &[f32], rows: usize, c: usize, oc: usize) {
    for o in out.chunks_mut(oc) {
        o.copy_from_slice(bias);
    }
    gemm(rows, c, oc, 1.0, Mat::new(inp, c), Mat::new(w, oc), 1.0, out, oc);
}

/// `dinp += dout · Wᵀ`; when `dparams` is given also `dW += inpᵀ · dout` and `dbias += Σ_rows dout`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dinp: &mut [f32],
    dparams: Option<(&mut [f32], &mut [f32])>,
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    rows: usize,
    c: usize,
    oc: usize,
) {
    gemm(rows, oc, c, 1.0, Mat::new(dout, oc), Mat::t(w, oc), 1.0, dinp, c);
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
pub fn attention_forward(out: &mut [f32], att: &mut [f32], qkv: &[f32], t_len: usize, c: usize, nh: usize) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    out.par_chunks_mut(c).zip(att.par_chunks_mut(nh * t_len)).enumerate().for_each(|(row, (y, a))| {
        let b = row / t_len;
        let t = row % t_len;
        let base = b * t_len * 3 * c;
        for h in 0..nh {
            let q = &qkv[base + t * 3 * c + h * hs..][..hs];
            let arow = &mut a[h * t_len..(h + 1) * t_len];
            let mut maxv = f32::NEG_INFINITY;
            for s in 0..=t {
                let k = &qkv[base + s * 3 * c + c + h * hs..][..hs];
                let dot = dot(q, k) * scale;
                arow[s] = dot;
                maxv = maxv.max(dot);
            }
            let mut sum = 0.0f32;
            for v in arow[..=t].iter_mut() {
                *v = (*v - maxv).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            for v in arow[..=t].iter_mut() {
                *v *= inv;
            }
            arow[t + 1..].fill(0.0);
            let yh = &mut y[h * hs..(h + 1) * hs];
            yh.fill(0.0);
            for s in 0..=t {
                let v = &qkv[base + s * 3 * c + 2 * c + h * hs..][..hs];
                let p = arow[s];
                for i in 0..hs {
                    yh[i] += p * v[i];
                }
            }
        }
    });
}

/// Accumulates into `dqkv` the gradient of [`attention_forward`].
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
    // Each (batch, head) pair owns disjoint columns of dqkv; compute them locally, then scatter.
    let parts: Vec<(usize, usize, Vec<f32>)> = (0..b_len * nh)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / nh, bh % nh);
            let base = b * t_len * 3 * c;
            let mut local = vec![0.0f32; t_len * 3 * hs]; // per position: dq | dk | dv for this head
            let mut datt = vec![0.0f32; t_len];
            for t in 0..t_len {
                let arow = &att[((b * t_len + t) * nh + h) * t_len..][..t_len];
                let dy = &dout[(b * t_len + t) * c + h * hs..][..hs];
                // datt[s] = dy · v_s ; dv_s += att[t,s] · dy
                for s in 0..=t {
                    let v = &qkv[base + s * 3 * c + 2 * c + h * hs..][..hs];
                    datt[s] = dot(dy, v);
                    let dv = &mut local[s * 3 * hs + 2 * hs..][..hs];
                    for i in 0..hs {
                        dv[i] += arow[s] * dy[i];
                    }
                }
                // softmax backward: dpre[s] = att[s] (datt[s] − Σ att·datt)
                let dot: f32 = (0..=t).map(|s| arow[s] * datt[s]).sum();
                let q = &qkv[base + t * 3 * c + h * hs..][..hs];
                for s in 0..=t {
                    let dpre = arow[s] * (datt[s] - dot) * scale;
                    let k = &qkv[base + s * 3 * c + c + h * hs..][..hs];
                    for i in 0..hs {
                        local[t * 3 * hs + i] += dpre * k[i];
                        local[s * 3 * hs + hs + i] += dpre * q[i];
                    }
                }
            }
            (b, h, local)
        })
        .collect();
    for (b, h, local) in parts {
        for t in 0..t_len {
            let row = &mut dqkv[(b * t_len + t) * 3 * c..][..3 * c];
            for part in 0..3 {
                let dst = &mut row[part * c + h * hs..][..hs];
                let src = &local[t * 3 * hs + part * hs..][..hs];
                for i in 0..hs {
                    dst[i] += src[i];
                }
            }
        }
    }
}

// ---------------------------------------------------------------- gelu_new

const GELU_K: f32 = 0.797_884_6; // √(2/π)

/// tanh through one `exp`: libm's `tanhf` (via `expm1f`) took a third of a training step. The absolute error is a
/// few ulp of 1, which is what gelu_new (`1 + tanh`) and its derivative (`1 − tanh²`) see; NaN stays NaN and ±∞
/// gives ±1.
#[inline]
pub fn tanh_via_exp(u: f32) -> f32 {
    1.0 - 2.0 / (1.0 + (2.0 * u).exp())
}

/// `gelu_new(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))`, as transformers' `NewGELUActivation`.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    out.par_chunks_mut(4096).zip(inp.par_chunks(4096)).for_each(|(o, x)| {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = 0.5 * x * (1.0 + tanh_via_exp(GELU_K * (x + 0.044715 * x * x * x)));
        }
    });
}

pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    dinp.par_chunks_mut(4096).zip(inp.par_chunks(4096)).zip(dout.par_chunks(4096)).for_each(|((d, x), dy)| {
        for ((d, &x), &dy) in d.iter_mut().zip(x).zip(dy) {
            let u = GELU_K * (x + 0.044715 * x * x * x);
            let th = tanh_via_exp(u);
            let sech2 = 1.0 - th * th;
            let grad = 0.5 * (1.0 + th) + 0.5 * x * sech2 * GELU_K * (1.0 + 3.0 * 0.044715 * x * x);
            *d += grad * dy;
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
            let maxv = row.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
            let mut sum = 0.0f32;
            for x in row.iter_mut() {
                *x = (*x - maxv).exp();
                sum += *x;
            }
            let inv = 1.0 / sum;
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
    });
}

/// Mean cross-entropy in nats over the rows, accumulated in f64 so the mean over many tokens stays exact.
pub fn cross_entropy(probs: &[f32], targets: &[u32], v: usize) -> f64 {
    let total: f64 =
        probs.chunks(v).zip(targets).map(|(p, &t)| -(p[t as usize].max(f32::MIN_POSITIVE) as f64).ln()).sum();
    total / targets.len() as f64
}

/// `dlogits = (probs − onehot) / rows`, written in place of `probs`.
pub fn cross_entropy_backward(probs: &mut [f32], targets: &[u32], v: usize) {
    let inv = 1.0 / targets.len() as f32;
    probs.par_chunks_mut(v).zip(targets.par_iter()).for_each(|(p, &t)| {
        p[t as usize] -= 1.0;
        for x in p.iter_mut() {
            *x *= inv;
        }
    });
}

/// Through the tied head: `dlnf = dlogits · wte`, and `dwte += dlogitsᵀ · lnf` when `dwte` is given.
pub fn lm_head_backward(
    dlnf: &mut [f32],
    dwte: Option<&mut [f32]>,
    dlogits: &[f32],
    lnf: &[f32],
    wte: &[f32],
    rows: usize,
    c: usize,
    v: usize,
) {
    gemm(rows, v, c, 1.0, Mat::new(dlogits, v), Mat::new(wte, c), 1.0, dlnf, c);
    if let Some(dwte) = dwte {
        gemm(v, rows, c, 1.0, Mat::t(dlogits, v), Mat::new(lnf, c), 1.0, dwte, c);
    }
}

#[cfg(test)]
mod tanh_tests {
    use super::tanh_via_exp;

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
