//! What the page shows about the adapter and the base: singular values of each adapter's update s·B·A (its
//! effective rank), and the distribution of a base weight against the levels of the 4-bit formats.

use crate::lora::{AdapterEntry, Adapters};
use crate::model::Linear;
use crate::quant::{Format, QuantizedTensor, Storage};
use serde::Serialize;

/// Singular values of one adapter's update, largest first.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterSpectrum {
    pub layer: usize,
    pub target: String,
    pub singular_values: Vec<f32>,
}

/// Singular values of s·B·A for every adapter. B·A has rank ≤ r, so they come from r×r matrices: with A·Aᵀ = U·D·Uᵀ
/// and S = U·√D·Uᵀ, the squared singular values of B·A are the eigenvalues of S·(BᵀB)·S — never the d_out×d_in product.
pub fn adapter_spectra(adapters: &Adapters) -> Vec<AdapterSpectrum> {
    adapters
        .entries
        .iter()
        .map(|e| AdapterSpectrum {
            layer: e.layer,
            target: e.target.name().to_string(),
            singular_values: singular_values(adapters, e),
        })
        .collect()
}

fn singular_values(adapters: &Adapters, e: &AdapterEntry) -> Vec<f32> {
    let r = e.rank;
    let (a, b) = (&adapters.params[e.a.clone()], &adapters.params[e.b.clone()]);
    // Gram matrices in f64: A is r×d_in, B is d_out×r (row-major).
    let mut aat = vec![0.0f64; r * r];
    let mut btb = vec![0.0f64; r * r];
    for i in 0..r {
        for j in 0..r {
            aat[i * r + j] = (0..e.d_in).map(|k| a[i * e.d_in + k] as f64 * a[j * e.d_in + k] as f64).sum();
            btb[i * r + j] = (0..e.d_out).map(|k| b[k * r + i] as f64 * b[k * r + j] as f64).sum();
        }
    }
    let (d, u) = symmetric_eigen(&aat, r);
    // S = U·√D·Uᵀ
    let mut s = vec![0.0f64; r * r];
    for i in 0..r {
        for j in 0..r {
            s[i * r + j] = (0..r).map(|k| u[i * r + k] * d[k].max(0.0).sqrt() * u[j * r + k]).sum();
        }
    }
    let sb = matmul(&s, &btb, r);
    let m = matmul(&sb, &s, r);
    let (ev, _) = symmetric_eigen(&m, r);
    let scale = adapters.scaling(e).abs() as f64;
    let mut sv: Vec<f32> = ev.iter().map(|x| (x.max(0.0).sqrt() * scale) as f32).collect();
    sv.sort_by(|x, y| y.total_cmp(x));
    sv
}

fn matmul(x: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let xv = x[i * n + k];
            for j in 0..n {
                out[i * n + j] += xv * y[k * n + j];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (columns of the returned matrix) of a symmetric n×n matrix by cyclic Jacobi
/// rotations; n ≤ 64 here, where this converges in a handful of sweeps.
fn symmetric_eigen(m: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = m.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * norm.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// A base weight seen through the block-wise formats: the histogram of its values divided by their block's absmax
/// (the quantity the 4-bit codebooks are laid over), the levels of each 4-bit format on that scale, and each storage
/// format's error on this very tensor.
#[derive(Clone, Debug, Serialize)]
pub struct WeightHistogram {
    pub tensor: String,
    pub bins: usize,
    /// Counts of w/absmax(block) in `bins` equal bins over [−1, 1].
    pub counts: Vec<u32>,
    pub levels: Vec<FormatLevels>,
    pub errors: Vec<FormatError>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FormatLevels {
    pub format: String,
    pub levels: Vec<f32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FormatError {
    pub format: String,
    pub bits_per_param: f64,
    pub rmse: f64,
    pub max_abs: f64,
}

/// The block linear weight `tensor` of a base in fp32 (GPT-2's Conv1D `[in, out]`, as the file holds it, of the
/// linear map `linear` in a model `n_embd` wide), taken as a Linear `[out, in]` weight as bitsandbytes sees it.
pub fn weight_histogram(tensor: String, weight: &[f32], linear: Linear, n_embd: usize, bins: usize) -> WeightHistogram {
    let (d_in, d_out) = linear.dims(n_embd);
    let lin = Linear::transpose(weight, d_in, d_out);
    let bins = bins.clamp(8, 512);
    let mut counts = vec![0u32; bins];
    for block in lin.chunks(64) {
        let absmax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if absmax == 0.0 {
            continue;
        }
        for v in block {
            let x = (v / absmax).clamp(-1.0, 1.0);
            let i = (((x + 1.0) / 2.0) * bins as f32) as usize;
            counts[i.min(bins - 1)] += 1;
        }
    }
    let levels = [Format::Nf4, Format::Fp4]
        .into_iter()
        .map(|f| FormatLevels { format: f.name().into(), levels: QuantizedTensor::codebook4(f).to_vec() })
        .chain(std::iter::once(FormatLevels {
            format: "int4".into(),
            levels: (-7..=7).map(|k| k as f32 / 7.0).collect(),
        }))
        .collect();
    // fp32 first: the reference every error is measured against (0 by definition), with its 32 bits per weight.
    let errors = Format::ALL
        .into_iter()
        .flat_map(|f| [(f, false), (f, true)])
        .filter(|(f, dq)| !*dq || f.supports_double_quant())
        .map(|(f, dq)| {
            let st = Storage::new(f, dq).expect("supported");
            let q = QuantizedTensor::quantize(&lin, st);
            let e = q.error(&lin);
            FormatError {
                format: st.label(),
                bits_per_param: st.bits_per_param(lin.len() as u64),
                rmse: e.rmse,
                max_abs: e.max_abs,
            }
        })
        .collect();
    WeightHistogram { tensor, bins, counts, levels, errors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{LoraConfig, Target};
    use crate::model::{Gpt2, TensorId};

    /// Singular values of the dense s·B·A, from the eigenvalues of its d_in×d_in Gram matrix (small sizes only).
    fn dense_singular_values(ad: &Adapters, e: &AdapterEntry) -> Vec<f32> {
        let d = ad.delta(e);
        let n = e.d_in;
        let mut g = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                g[i * n + j] = (0..e.d_out).map(|k| d[k * n + i] as f64 * d[k * n + j] as f64).sum();
            }
        }
        let (ev, _) = symmetric_eigen(&g, n);
        let mut sv: Vec<f32> = ev.iter().map(|x| x.max(0.0).sqrt() as f32).collect();
        sv.sort_by(|x, y| y.total_cmp(x));
        sv.truncate(e.rank);
        sv
    }

    #[test]
    fn adapter_spectrum_equals_the_dense_update_s_singular_values() {
        let cfg = LoraConfig::uniform(&[Target::Q, Target::Fc], 5, 10.0);
        let mut ad = Adapters::init(cfg, 2, 16, 1).unwrap();
        // B is zero at initialisation (all singular values 0); give it values so the check means something.
        for (i, v) in ad.params.iter_mut().enumerate() {
            *v += ((i * 7919 % 101) as f32 / 101.0 - 0.5) * 0.3;
        }
        let spectra = adapter_spectra(&ad);
        assert_eq!(spectra.len(), 4);
        for (s, e) in spectra.iter().zip(&ad.entries) {
            let want = dense_singular_values(&ad, e);
            assert_eq!(s.singular_values.len(), 5);
            assert!(s.singular_values[0] > 0.1);
            for (g, w) in s.singular_values.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * want[0], "{:?} vs {want:?}", s.singular_values);
            }
            // Independent of any eigen solver: the squares of the singular values add up to ‖s·B·A‖²_F.
            let frobenius: f64 = ad.delta(e).iter().map(|v| (*v as f64).powi(2)).sum();
            let squares: f64 = s.singular_values.iter().map(|v| (*v as f64).powi(2)).sum();
            assert!((squares - frobenius).abs() <= 1e-4 * frobenius, "{squares} vs ‖ΔW‖² {frobenius}");
        }
        // A rank-one update s·b·aᵀ has one singular value, s·|b|·|a|; at initialisation (b = 0) it is 0.
        let cfg = LoraConfig::uniform(&[Target::O], 1, 3.0);
        let mut ad1 = Adapters::init(cfg, 1, 8, 2).unwrap();
        assert_eq!(adapter_spectra(&ad1)[0].singular_values, vec![0.0]);
        let e = ad1.entries[0].clone();
        let norm = |r: std::ops::Range<usize>, p: &[f32]| p[r].iter().map(|v| v * v).sum::<f32>().sqrt();
        for (i, v) in ad1.params[e.b.clone()].iter_mut().enumerate() {
            *v = (i % 5) as f32 * 0.1 - 0.2;
        }
        let want = e.scaling * norm(e.a.clone(), &ad1.params) * norm(e.b.clone(), &ad1.params);
        let got = adapter_spectra(&ad1)[0].singular_values[0];
        assert!((got - want).abs() <= 1e-5 * want, "σ₁ {got} vs s·|b|·|a| {want}");
    }

    #[test]
    fn histogram_counts_every_value_and_nf4_beats_int4_on_a_gaussian_like_weight() {
        let m = Gpt2::init(crate::model::ModelConfig::bytes(1, 2, 64, 16).unwrap(), 3);
        let id = TensorId::Block(0, Linear::Fc.weight());
        let h = weight_histogram(m.layout.hf_name(id), m.tensor(id), Linear::Fc, 64, 64);
        assert_eq!(h.counts.iter().sum::<u32>() as usize, 64 * 256);
        let err = |f: &str| h.errors.iter().find(|e| e.format == f).unwrap().rmse;
        assert!(err("nf4") < err("int4") && err("int8") < err("nf4") && err("fp16") < err("int8"));
        assert_eq!((h.errors[0].format.as_str(), h.errors[0].rmse, h.errors[0].bits_per_param), ("fp32", 0.0, 32.0));
        assert_eq!(h.levels[0].levels.len(), 16);
    }
}
