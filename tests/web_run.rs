//! The page's run (`web::Run`) natively: a forced divergence restores the last good state on either executor, and
//! the start is scored the same whether before or after the first steps.
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

/// The page takes the first step before scoring step 0: the late score must be the one an early one would give, and
/// must leave the trained parameters as they were.
fn start_scored_late_equals_start_scored_first(method: &str, gpu: impl Fn() -> Option<Gpu>) {
    let format = if method == "qlora" { "nf4" } else { "fp32" };
    let s = Settings {
        method: method.into(),
        format: format.into(),
        dq: method == "qlora",
        task: "even".into(),
        ..settings()
    };
    let mut first = Run::new(&tiny(), s.clone(), None, gpu()).unwrap();
    let early = pollster::block_on(first.validate()).unwrap();
    let mut late = Run::new(&tiny(), s, None, gpu()).unwrap();
    for _ in 0..3 {
        pollster::block_on(late.step()).unwrap();
    }
    let before = pollster::block_on(late.validate()).unwrap();
    let start = late.validate_start().expect("kept until asked for");
    assert_eq!(start.step, 0);
    assert_eq!(start.val_loss, early.val_loss, "{method}");
    assert_eq!(start.accuracy, early.accuracy, "{method}");
    assert!(late.validate_start().is_none(), "given once");
    let after = pollster::block_on(late.validate()).unwrap();
    assert_eq!((after.step, after.val_loss), (before.step, before.val_loss), "{method}: training state kept");
    assert_ne!(after.val_loss, early.val_loss, "{method}: three steps changed the model");
}

#[test]
fn start_is_scored_the_same_after_the_first_steps() {
    for method in ["lora", "full"] {
        start_scored_late_equals_start_scored_first(method, || None);
    }
    start_scored_late_equals_start_scored_first("qlora", || Some(Gpu::new_blocking().unwrap()));
}

/// A lost GPU device (destroyed here, as a driver reset or a sleeping laptop loses it): the next step falls back to
/// the CPU trainer from the last snapshot, takes the step there and leaves a notice.
#[test]
fn a_lost_device_moves_the_run_to_the_cpu_from_the_last_snapshot() {
    let gpu = Gpu::new_blocking().expect("a Vulkan adapter (lavapipe on machines without a GPU)");
    let mut run = Run::new(&tiny(), settings(), None, Some(gpu)).unwrap();
    for _ in 0..3 {
        pollster::block_on(run.step()).unwrap();
    }
    pollster::block_on(run.validate()).unwrap(); // the snapshot at step 3
    pollster::block_on(run.step()).unwrap();
    run.lose_device_for_test().unwrap();
    let s = pollster::block_on(run.step()).expect("the step is taken on the CPU");
    assert_eq!((s.step, run.backend(), run.step_index()), (3, "cpu", 4));
    let notice = run.take_notice().expect("a notice");
    assert!(notice.contains("device was lost") && notice.contains("from step 3, the last snapshot"), "{notice}");
    assert!(run.take_notice().is_none(), "said once");
    assert!(pollster::block_on(run.validate()).unwrap().val_loss.is_finite());
}
