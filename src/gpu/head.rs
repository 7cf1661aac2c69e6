//! The tied head on the GPU: logits = lnf·wteᵀ, computed per embedding part (each part writes its columns), and in
//! training fused with the cross-entropy over chunks of rows, as `cpu::layers::head_cross_entropy` does: for each
//! chunk, the logits, the softmax, loss and gradient in place (`cross_entropy.wgsl`), then `dlnf = dlogits·wte` and,
//! in full fine-tuning, `dwte += dlogitsᵀ·lnf` — so only one chunk of `rows × V` logits ever exists.

use super::forward::Recorder;
use super::matmul::{Dispatch, MatmulShape, Strided};
use super::weights::WteStore;
use super::{Gpu, GpuBuffer};
use crate::model::head_chunk_rows;

/// Bytes of logits the fused head holds at once (83 rows at GPT-2's vocabulary): on a GPU each chunk costs only a
/// few more dispatches, so the scratch stays small.
const HEAD_CHUNK_BYTES: usize = 16 << 20;

/// Rows per chunk of the fused head on `gpu`: [`HEAD_CHUNK_BYTES`] of logits, or one binding if that is smaller.
pub(super) fn head_rows(gpu: &Gpu, vocab: usize, rows: usize) -> usize {
    let budget = (HEAD_CHUNK_BYTES as u64).min(gpu.limits.max_storage_buffer_binding_size) as usize;
    head_chunk_rows(vocab, rows, budget)
}

/// The buffers the loss reads and writes: the targets and one loss per row.
pub(super) struct LossBuffers<'a> {
    pub targets: &'a GpuBuffer,
    pub losses: &'a GpuBuffer,
}

impl<'a> Recorder<'a> {
    /// Rows per chunk of the fused head (the activations' logits buffer holds one chunk).
    pub(super) fn head_chunk(&self) -> usize {
        head_rows(self.gpu, self.w.cfg.vocab_size, self.acts.rows)
    }

    /// `logits[..rows] = lnf[row0..row0 + rows]·wteᵀ`, one matmul per embedding part.
    pub(super) fn head_logits(&self, out: &mut Vec<Dispatch>, row0: usize, rows: usize) {
        let (w, a) = (self.w, self.acts);
        let (c, v) = (w.cfg.n_embd as u32, w.cfg.vocab_size as u32);
        for part in w.wte_parts() {
            let n = part.rows.len() as u32;
            let (m, col0) = (rows as u32, part.rows.start as u32);
            out.push(match part.store {
                WteStore::F32(place) => {
                    let s = MatmulShape {
                        a_offset: row0 as u32 * c,
                        b_offset: place.offset as u32,
                        ldc: v,
                        c_offset: col0,
                        ..MatmulShape::new(m, c, n, false, true)
                    };
                    self.mm.prepare(self.gpu, s, a.lnf.all(), w.params[place.shard].all(), a.logits.all())
                }
                WteStore::F16(wq) => {
                    let (xs, ys) = (Strided { offset: row0 as u32 * c, ld: c }, Strided { offset: col0, ld: v });
                    self.mmq.prepare_forward_strided(self.gpu, wq, m, a.lnf.all(), xs, None, a.logits.all(), ys)
                }
            });
        }
    }

    /// The mean loss's pieces (a loss per row into `io.losses`) over every chunk of rows; with `dlnf`, the gradient
    /// through the head as well: `dlnf` overwritten, and the embedding's gradient accumulated in full fine-tuning.
    pub(super) fn head_loss(&self, out: &mut Vec<Dispatch>, io: &LossBuffers<'a>, dlnf: Option<&'a GpuBuffer>) {
        let (w, a) = (self.w, self.acts);
        let (c, v) = (w.cfg.n_embd as u32, w.cfg.vocab_size as u32);
        let total = a.rows;
        let chunk = self.head_chunk();
        for row0 in (0..total).step_by(chunk) {
            let rows = chunk.min(total - row0) as u32;
            self.head_logits(out, row0, rows as usize);
            let scale = dlnf.map(|_| 1.0 / total as f32);
            out.push(self.k.cross_entropy(
                self.gpu,
                rows,
                v,
                row0 as u32,
                scale,
                a.logits.all(),
                io.targets.all(),
                io.losses.all(),
            ));
            let Some(dlnf) = dlnf else { continue };
            for (i, part) in w.wte_parts().iter().enumerate() {
                let (n, col0, first) = (part.rows.len() as u32, part.rows.start as u32, i == 0);
                // dlnf[chunk] (+)= dlogits[:, part]·wte[part]
                out.push(match part.store {
                    WteStore::F32(place) => {
                        let s = MatmulShape {
                            lda: v,
                            a_offset: col0,
                            b_offset: place.offset as u32,
                            c_offset: row0 as u32 * c,
                            ..MatmulShape::plain(rows, n, c)
                        }
                        .scaled(1.0, if first { 0.0 } else { 1.0 });
                        self.mm.prepare(self.gpu, s, a.logits.all(), w.params[place.shard].all(), dlnf.all())
                    }
                    WteStore::F16(wq) => {
                        let (dys, dxs) = (Strided { offset: col0, ld: v }, Strided { offset: row0 as u32 * c, ld: c });
                        let (logits, d) = (a.logits.all(), dlnf.all());
                        self.mmq.prepare_backward_strided(self.gpu, wq, rows, logits, dys, d, dxs, !first)
                    }
                });
                if w.full {
                    let WteStore::F32(place) = part.store else { unreachable!("full fine-tuning keeps wte in fp32") };
                    // dwte[part] += dlogits[:, part]ᵀ·lnf[chunk]
                    let s = MatmulShape {
                        lda: v,
                        a_offset: col0,
                        b_offset: row0 as u32 * c,
                        c_offset: place.offset as u32,
                        ..MatmulShape::new(n, rows, c, true, false)
                    }
                    .scaled(1.0, 1.0);
                    let g = &self.grads()[place.shard];
                    out.push(self.mm.prepare(self.gpu, s, a.logits.all(), a.lnf.all(), g.all()));
                }
            }
        }
    }
}
