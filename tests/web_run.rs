//! The page's run (`web::Run`) natively: a forced divergence restores the last good state on either executor.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::gpu::Gpu;
use qlora_playground::model::{Gpt2, ModelConfig};
use qlora_playground::web::{Run, Settings};

fn tiny() -> Gpt2 {
    Gpt2::init(ModelConfig::bytes(2, 2, 32, 32).unwrap(), 4)
}

fn settings() -> Settings {
    Settings { r: 4, steps: 30, batch: 2, seq: 16, ..Default::default() }
}

fn diverge_and_restore(gpu: Option<Gpu>) {
    let mut run = Run::new(&tiny(), settings(), None, gpu).unwrap();
    for _ in 0..3 {
        pollster::block_on(run.step()).unwrap();
    }
    let good = pollster::block_on(run.validate()).unwrap();
    assert_eq!(good.step, 3);
    for _ in 0..2 {
        pollster::block_on(run.step()).unwrap();
    }
    pollster::block_on(run.inject_nan()).unwrap();
    let err = pollster::block_on(run.step()).unwrap_err().to_string();
    assert!(err.contains("diverged at step 6") && err.contains("back at step 3"), "{err}");
    assert!(err.contains("learning rate below"), "{err}");
    assert_eq!(run.step_index(), 3);
    let again = pollster::block_on(run.validate()).unwrap();
    assert_eq!(again.val_loss, good.val_loss, "the restored state is the validated one");
    let next = pollster::block_on(run.step()).unwrap();
    assert!(next.loss.is_finite() && next.step == 3);
}

#[test]
fn forced_divergence_restores_the_last_good_state_on_the_cpu() {
    diverge_and_restore(None);
}

#[test]
fn forced_divergence_restores_the_last_good_state_on_the_gpu() {
    diverge_and_restore(Some(Gpu::new_blocking().expect("a Vulkan adapter (lavapipe on machines without a GPU)")));
}
