//! The tied head on the GPU: logits = lnf·wteᵀ, computed per embedding part (each part writes its columns), and in
//! training fused with the cross-entropy over chunks of rows, as `cpu::layers::head_cross_entropy` does: for each
//! chunk, the logits, the softmax, loss and gradient in place (`cross_entropy.wgsl`), then `dlnf = dlogits·wte` and,
//! in full fine-tuning, `dwte += dlogitsᵀ·lnf` — so only one chunk of `rows × V` logits ever exists.

use super::forward::Recorder;
use super::matmul::{Dispatch, MatmulShape};
use super::GpuBuffer;
use crate::model::head_chunk_rows;

/// The buffers the loss reads and writes: the targets and one loss per row.
pub(super) struct LossBuffers<'a> {
    pub targets: &'a GpuBuffer,
    pub losses: &'a GpuBuffer,
}

impl<'a> Recorder<'a> {
    /// Rows per chunk of the fused head (the activations' logits buffer holds one chunk).
    pub(super) fn head_chunk(&self) -> usize {
        head_chunk_rows(self.w.cfg.vocab_size, self.acts.rows)
    }

    /// `logits[..rows] = lnf[row0..row0 + rows]·wteᵀ`, one matmul per embedding part.
    pub(super) fn head_logits(&self, out: &mut Vec<Dispatch>, row0: usize, rows: usize) {
        let (w, a) = (self.w, self.acts);
        let (c, v) = (w.cfg.n_embd as u32, w.cfg.vocab_size as u32);
        for (part, _) in w.wte_parts() {
            let s = MatmulShape {
                a_offset: row0 as u32 * c,
                b_offset: part.place.offset as u32,
                ldc: v,
                c_offset: part.rows.start as u32,
                ..MatmulShape::new(rows as u32, c, part.rows.len() as u32, false, true)
            };
            out.push(self.mm.prepare(self.gpu, s, a.lnf.all(), w.params[part.place.shard].all(), a.logits.all()));
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
            for (i, (part, _)) in w.wte_parts().enumerate() {
                let n = part.rows.len() as u32;
                // dlnf[chunk] (+)= dlogits[:, part]·wte[part]
                let s = MatmulShape {
                    lda: v,
                    a_offset: part.rows.start as u32,
                    b_offset: part.place.offset as u32,
                    c_offset: row0 as u32 * c,
                    ..MatmulShape::plain(rows, n, c)
                }
                .scaled(1.0, if i == 0 { 0.0 } else { 1.0 });
                out.push(self.mm.prepare(self.gpu, s, a.logits.all(), w.params[part.place.shard].all(), dlnf.all()));
                if w.full {
                    // dwte[part] += dlogits[:, part]ᵀ·lnf[chunk]
                    let s = MatmulShape {
                        lda: v,
                        a_offset: part.rows.start as u32,
                        b_offset: row0 as u32 * c,
                        c_offset: part.place.offset as u32,
                        ..MatmulShape::new(n, rows, c, true, false)
                    }
                    .scaled(1.0, 1.0);
                    let g = &self.grads()[part.place.shard];
                    out.push(self.mm.prepare(self.gpu, s, a.logits.all(), a.lnf.all(), g.all()));
                }
            }
        }
    }
}
