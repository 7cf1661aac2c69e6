//! A model file streamed straight into a stored base (what the page does with GPT-2): the result is the base a run
//! would have stored from the fp32 model, it names the same fp32 weights, and reading it never holds the fp32 model —
//! peak heap is the stored model plus one linear weight in fp32 (as read, and transposed) and the read buffer.
//!
//! One test in its own binary: the counting allocator sees the whole process, so nothing else may run beside it.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::cpu::stored_base;
use qlora_playground::model::{model_files, Gpt2, Linear, ModelConfig, SafetensorsSource, StoreDtype, TensorId};
use qlora_playground::quant::{Format, Storage};
use qlora_playground::run::base_fingerprint;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes live now and the most live since [`Counting::reset_peak`].
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

impl Counting {
    fn reset_peak() -> usize {
        let now = LIVE.load(Ordering::SeqCst);
        PEAK.store(now, Ordering::SeqCst);
        now
    }

    fn peak() -> usize {
        PEAK.load(Ordering::SeqCst)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// GPT-2's proportions at a smaller size: the block linear weights hold three quarters of the parameters (GPT-2
/// 124M: 85 of 124 M), so that storing them in 4 bits shows in the peak.
fn model() -> Gpt2 {
    let mut cfg = ModelConfig::bytes(6, 6, 384, 64).unwrap();
    cfg.vocab_size = 8_000;
    Gpt2::init(cfg, 11)
}

#[test]
fn a_file_streamed_into_a_storage_format_is_the_stored_base_and_never_holds_the_fp32_model() {
    let fp32 = model();
    let config = fp32.config.to_json("float32", &fp32.tokenizer);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let file_bytes = |dtype| model_files(&fp32, dtype).unwrap().into_iter().find(|(n, _)| *n == "model.safetensors");
    let formats = [(Format::Nf4, true), (Format::Fp4, false), (Format::Int8, false), (Format::Fp16, false)];
    for (dtype, formats) in [(StoreDtype::F32, &formats[..]), (StoreDtype::F16, &formats[..1])] {
        std::fs::write(&path, file_bytes(dtype).unwrap().1).unwrap();
        let open = || {
            let file = std::fs::File::open(&path).unwrap();
            let len = file.metadata().unwrap().len();
            SafetensorsSource::open(&config, file, len).unwrap()
        };
        // The file's values (fp16 rounds them) in fp32: the reference every stored form is made from.
        let reference = open().load(Storage::FP32).unwrap();
        for &(format, dq) in formats {
            let storage = Storage::new(format, dq).unwrap();
            let label = format!("{dtype:?} file into {}", storage.label());
            let mut source = open();
            let before = Counting::reset_peak();
            let streamed = source.load(storage).unwrap();
            let peak = Counting::peak() - before;

            let want = stored_base(&reference, storage);
            assert_eq!(streamed.layout, want.layout, "{label}");
            assert!(streamed.params == want.params, "{label}: the buffer (embedding rounded to 16 bits) differs");
            assert!(streamed.linears == want.linears, "{label}: the stored linear weights differ");
            assert_eq!(base_fingerprint(&streamed), base_fingerprint(&reference), "{label}: another base");

            // Peak: the stored model, the largest linear weight twice in fp32 (as read, and transposed for
            // quantizing) and its quantized copy while it is pushed, one read buffer; 1 MiB for the rest.
            let stored_bytes = 4 * streamed.params.len() + streamed.linears.as_ref().unwrap().bytes() as usize;
            let (d_in, d_out) = Linear::Fc.dims(fp32.config.n_embd);
            let largest_linear = 4 * d_in * d_out;
            let read_buffer = 4 << 20;
            let bound = stored_bytes + 3 * largest_linear + read_buffer + (1 << 20);
            let fp32_bytes = 4 * reference.params.len();
            assert!(peak <= bound, "{label}: peak {peak} bytes > {bound} (stored {stored_bytes}, fp32 {fp32_bytes})");
            assert!(peak < fp32_bytes, "{label}: peak {peak} bytes, as much as the fp32 model's {fp32_bytes}");
            println!(
                "{label}: peak {:.1} MiB; stored model {:.1} MiB; fp32 model {:.1} MiB",
                mib(peak),
                mib(stored_bytes),
                mib(fp32_bytes)
            );

            // A weight read again in fp32 is the file's.
            let id = TensorId::Block(1, Linear::AttnProj.weight());
            assert_eq!(source.tensor(id).unwrap(), reference.tensor(id), "{label}");
        }
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
