//! A run's resumable state as one safetensors file (`state.safetensors`): the trainable parameters and AdamW's two
//! moments as f32 tensors, and in the header the settings, the step, where the batch sampler stands and a
//! fingerprint of the base model. The page autosaves it to IndexedDB and puts it in exported runs; a run resumed from
//! it takes the same next steps, bit for bit, as the run that wrote it.

use super::settings::Settings;
use crate::model::{read_safetensors_f32, read_safetensors_metadata, write_safetensors_with, Gpt2, StoreDtype};
use crate::{ensure, Error, Result};

/// The `format` header value that marks our state files (safetensors' own `format` key says "pt").
const KIND: &str = "qlora-playground-run-state";
/// Bumped when the meaning of a field changes; older files are refused with a message, never misread.
const VERSION: u32 = 1;

const PARAMS: &str = "trainable";
const ADAM_M: &str = "adam.m";
const ADAM_V: &str = "adam.v";

/// Everything needed to continue a run where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub settings: Settings,
    /// Steps taken (also AdamW's step count: the two never differ in our runs).
    pub step: usize,
    /// Position of the batch sampler's ChaCha stream, in 32-bit words.
    pub batches_word_pos: u128,
    /// [`base_fingerprint`] of the base model the run trained on.
    pub base: u32,
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// CRC-32 of the base model's configuration and fp32 weights (those it was stored from, when it keeps its linear
/// weights in a storage format): a run only continues on the model it trained on.
pub fn base_fingerprint(base: &Gpt2) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(base.config.to_json("float32", &base.tokenizer).as_bytes());
    let weights = base.weights_digest();
    h.combine(&crc32fast::Hasher::new_with_initial_len(weights.crc, weights.bytes));
    h.finalize()
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors = [(PARAMS, &self.params), (ADAM_M, &self.m), (ADAM_V, &self.v)]
            .map(|(name, values)| (name.to_string(), vec![values.len()], values.as_slice()));
        let meta = [
            ("qlora_playground", KIND.to_string()),
            ("version", VERSION.to_string()),
            ("step", self.step.to_string()),
            ("batches_word_pos", self.batches_word_pos.to_string()),
            ("base_crc32", self.base.to_string()),
            ("settings", serde_json::to_string(&self.settings).expect("settings serialize")),
        ];
        write_safetensors_with(&tensors, StoreDtype::F32, &meta)
    }

    /// Reads a state file, refusing anything that is not one of ours, of this version, and whole.
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let ctx = |e: Error| e.context("run state");
        let meta = read_safetensors_metadata(bytes).map_err(ctx)?;
        let field = |key: &str| {
            meta.get(key).ok_or_else(|| Error::new(format!("run state: the header has no {key:?} (not a saved run)")))
        };
        ensure!(field("qlora_playground")? == KIND, "run state: not a qlora-playground run");
        let version: u32 = field("version")?.parse().map_err(|_| Error::new("run state: version is not a number"))?;
        ensure!(
            version == VERSION,
            "run state: saved by a version of the playground whose format ({version}) this one ({VERSION}) cannot read"
        );
        let number = |key: &str| -> Result<u128> {
            field(key)?.parse().map_err(|_| Error::new(format!("run state: {key} is not a whole number")))
        };
        let step = usize::try_from(number("step")?).map_err(|_| Error::new("run state: step is too large"))?;
        let batches_word_pos = number("batches_word_pos")?;
        let base =
            u32::try_from(number("base_crc32")?).map_err(|_| Error::new("run state: base_crc32 is too large"))?;
        let settings: Settings = serde_json::from_str(field("settings")?)
            .map_err(|e| Error::new(format!("run state: the settings are not valid: {e}")))?;
        let mut tensors = read_safetensors_f32(bytes).map_err(ctx)?;
        let mut take = |name: &str| -> Result<Vec<f32>> {
            let i = tensors
                .iter()
                .position(|(n, _, _)| n == name)
                .ok_or_else(|| Error::new(format!("run state: no tensor {name:?}")))?;
            Ok(tensors.swap_remove(i).2)
        };
        let (params, m, v) = (take(PARAMS)?, take(ADAM_M)?, take(ADAM_V)?);
        ensure!(
            params.len() == m.len() && m.len() == v.len(),
            "run state: {} parameters but optimizer moments of {} and {}",
            params.len(),
            m.len(),
            v.len()
        );
        ensure!(step <= settings.steps, "run state: step {step} is past the run's {} steps", settings.steps);
        Ok(Checkpoint { settings, step, batches_word_pos, base, params, m, v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            settings: Settings { r: 4, steps: 50, ..Default::default() },
            step: 7,
            batches_word_pos: (1u128 << 70) + 3,
            base: 0xdead_beef,
            params: vec![1.0, -2.5, 3.25],
            m: vec![0.1, 0.2, 0.3],
            v: vec![1e-8, 2e-8, f32::MIN_POSITIVE],
        }
    }

    #[test]
    fn a_checkpoint_reads_back_exactly() {
        let c = sample();
        assert_eq!(Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap(), c);
    }

    #[test]
    fn foreign_truncated_and_inconsistent_files_are_refused_with_a_reason() {
        let bytes = sample().to_bytes().unwrap();
        let err = |b: &[u8]| Checkpoint::from_bytes(b).unwrap_err().to_string();
        assert!(err(&bytes[..bytes.len() - 5]).contains("not a valid safetensors file"));
        assert!(err(b"").contains("not a valid safetensors file"));
        // A model file is a valid safetensors file but not a run.
        let model = crate::model::write_safetensors(&[("wte".into(), vec![2], &[1.0, 2.0][..])], StoreDtype::F32);
        assert!(err(&model.unwrap()).contains("not a saved run"));
        // The same file from a future format version (the header edited in place, same length).
        let at = bytes.windows(13).position(|w| w == b"\"version\":\"1\"").expect("version in the header");
        let mut newer = bytes.clone();
        newer[at + 11] = b'9';
        assert!(err(&newer).contains("format (9)"), "{}", err(&newer));
        let past = Checkpoint { step: 51, ..sample() };
        assert!(err(&past.to_bytes().unwrap()).contains("past the run's 50 steps"));
        let ragged = Checkpoint { m: vec![0.0; 2], ..sample() };
        assert!(err(&ragged.to_bytes().unwrap()).contains("optimizer moments"));
    }
}
