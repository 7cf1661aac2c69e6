//! The page's run (`run::Run`) natively: a forced divergence restores the last good state on either executor, the
//! start is scored the same whether before or after the first steps, a saved run resumes exactly, and an exported
//! run's PEFT adapter is the run's.
#![cfg(not(target_arch = "wasm32"))]

use qlora_playground::gpu::Gpu;
use qlora_playground::model::{model_files, Gpt2, ModelConfig, SafetensorsSource, StoreDtype};
use qlora_playground::run::{Checkpoint, Run, Settings};
use qlora_playground::web::archive;

fn tiny() -> Gpt2 {
    Gpt2::init(ModelConfig::bytes(2, 2, 32, 32).unwrap(), 4)
}

fn settings() -> Settings {
    Settings { r: 4, steps: 30, batch: 2, seq: 16, ..Default::default() }
}

fn diverge_and_restore(gpu: Option<Gpu>) {
    let mut run = Run::new(tiny(), settings(), None, gpu).unwrap();
    for _ in 0..3 {
        pollster::block_on(run.step(false)).unwrap();
    }
    let good = pollster::block_on(run.validate()).unwrap();
    assert_eq!(good.step, 3);
    for _ in 0..2 {
        pollster::block_on(run.step(false)).unwrap();
    }
    pollster::block_on(run.inject_nan()).unwrap();
    let err = pollster::block_on(run.step(false)).unwrap_err().to_string();
    assert!(err.contains("diverged at step 6") && err.contains("back at step 3"), "{err}");
    assert!(err.contains("learning rate below"), "{err}");
    assert_eq!(run.step_index(), 3);
    let again = pollster::block_on(run.validate()).unwrap();
    assert_eq!(again.val_loss, good.val_loss, "the restored state is the validated one");
    let next = pollster::block_on(run.step(false)).unwrap();
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
    let mut first = Run::new(tiny(), s.clone(), None, gpu()).unwrap();
    let early = pollster::block_on(first.validate()).unwrap();
    let mut late = Run::new(tiny(), s, None, gpu()).unwrap();
    for _ in 0..3 {
        pollster::block_on(late.step(false)).unwrap();
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
    let mut run = Run::new(tiny(), settings(), None, Some(gpu)).unwrap();
    for _ in 0..3 {
        pollster::block_on(run.step(false)).unwrap();
    }
    pollster::block_on(run.validate()).unwrap(); // the snapshot at step 3
    pollster::block_on(run.step(false)).unwrap();
    run.lose_device_for_test().unwrap();
    let s = pollster::block_on(run.step(false)).expect("the step is taken on the CPU");
    assert_eq!((s.step, run.backend(), run.step_index()), (3, "cpu", 4));
    let notice = run.take_notice().expect("a notice");
    assert!(notice.contains("device was lost") && notice.contains("from step 3, the last snapshot"), "{notice}");
    assert!(run.take_notice().is_none(), "said once");
    assert!(pollster::block_on(run.validate()).unwrap().val_loss.is_finite());
}

/// A device lost before the first step, while the model was being uploaded (a tab in the background, a driver
/// reset during a long load): the run still starts, and its first step is taken on the CPU from step 0 with the
/// same notice as a loss mid-run.
#[test]
fn a_device_lost_while_the_model_uploads_starts_the_run_on_the_cpu() {
    let gpu = lavapipe();
    gpu.device.destroy();
    let mut run = Run::new(tiny(), settings(), None, Some(gpu)).expect("the run starts");
    let s = pollster::block_on(run.step(false)).expect("the step is taken on the CPU");
    assert_eq!((s.step, run.backend(), run.step_index()), (0, "cpu", 1));
    let notice = run.take_notice().expect("a notice");
    assert!(notice.contains("device was lost") && notice.contains("from step 0"), "{notice}");
    let mut cpu_only = Run::new(tiny(), settings(), None, None).unwrap();
    assert_eq!(pollster::block_on(cpu_only.step(false)).unwrap().loss, s.loss, "the CPU's step, from the start");
}

fn lavapipe() -> Gpu {
    Gpu::new_blocking().expect("a Vulkan adapter (lavapipe on machines without a GPU)")
}

fn qlora() -> Settings {
    Settings { method: "qlora".into(), format: "nf4".into(), dq: true, steps: 9, ..settings() }
}

/// The page keeps one GPU step in flight (`step(true)`). Its results arrive once each and in order, the run trains
/// exactly as one awaited step by step, a checkpoint taken with a step in flight holds that step's state, `drain`
/// hands over a step left in flight, and the run finishes when its last step is reported.
#[test]
fn a_step_kept_in_flight_changes_nothing_but_the_waiting() {
    let base = tiny();
    let mut serial = Run::new(&base, qlora(), None, Some(lavapipe())).unwrap();
    let mut want = losses(&mut serial, 5);
    let serial_at_5 = pollster::block_on(serial.checkpoint()).unwrap();
    want.extend(losses(&mut serial, 4));

    let mut piped = Run::new(&base, qlora(), None, Some(lavapipe())).unwrap();
    let mut got = Vec::new();
    let take = |run: &mut Run, got: &mut Vec<f64>| {
        let s = pollster::block_on(run.step(true)).unwrap();
        assert_eq!(s.step, got.len(), "results in order, once each");
        got.push(s.loss);
    };
    for _ in 0..4 {
        take(&mut piped, &mut got);
    }
    // Steps 0-3 reported, step 4 in flight: the checkpoint settles it and saves the state after it.
    assert_eq!(piped.step_index(), 4);
    let at_5 = pollster::block_on(piped.checkpoint()).unwrap();
    assert_eq!((at_5.step, at_5.batches_word_pos), (5, serial_at_5.batches_word_pos));
    assert_eq!(at_5.params, serial_at_5.params);
    take(&mut piped, &mut got); // step 4, settled by the checkpoint
    take(&mut piped, &mut got); // step 5; step 6 goes in flight
    let drained = pollster::block_on(piped.drain()).unwrap().expect("step 6 was in flight");
    assert_eq!(drained.step, 6);
    got.push(drained.loss);
    assert!(pollster::block_on(piped.drain()).unwrap().is_none(), "handed over once");
    while !piped.finished() {
        take(&mut piped, &mut got);
    }
    assert_eq!(got, want, "the same run, bit for bit");
    assert_eq!(piped.step_index(), 9);
    let err = pollster::block_on(piped.step(true)).unwrap_err().to_string();
    assert!(err.contains("finished its 9 steps"), "{err}");
}

/// A step that diverges while the next is in flight: the next is dropped, the last good state comes back, and the
/// run goes on from there.
#[test]
fn a_divergence_with_a_step_in_flight_restores_the_last_good_state() {
    let mut run = Run::new(tiny(), qlora(), None, Some(lavapipe())).unwrap();
    for _ in 0..3 {
        pollster::block_on(run.step(false)).unwrap();
    }
    let good = pollster::block_on(run.validate()).unwrap();
    pollster::block_on(run.inject_nan()).unwrap();
    let err = pollster::block_on(run.step(true)).unwrap_err().to_string();
    assert!(err.contains("diverged at step 4") && err.contains("back at step 3"), "{err}");
    assert_eq!(run.step_index(), 3);
    assert!(pollster::block_on(run.drain()).unwrap().is_none(), "the step in flight was dropped");
    assert_eq!(pollster::block_on(run.validate()).unwrap().val_loss, good.val_loss);
    let next = pollster::block_on(run.step(true)).unwrap();
    assert!(next.loss.is_finite() && next.step == 3);
}

/// A device lost with a step in flight: that step is taken on the CPU from the last snapshot.
#[test]
fn a_device_lost_with_a_step_in_flight_moves_the_run_to_the_cpu() {
    let mut run = Run::new(tiny(), qlora(), None, Some(lavapipe())).unwrap();
    for _ in 0..3 {
        pollster::block_on(run.step(false)).unwrap();
    }
    pollster::block_on(run.validate()).unwrap(); // the snapshot at step 3
    assert_eq!(pollster::block_on(run.step(true)).unwrap().step, 3); // step 4 in flight
    run.lose_device_for_test().unwrap();
    let s = pollster::block_on(run.step(true)).expect("the step is taken on the CPU");
    assert_eq!((s.step, run.backend(), run.step_index()), (3, "cpu", 4));
    assert!(run.take_notice().expect("a notice").contains("from step 3, the last snapshot"));
}

/// Losses of `n` steps.
fn losses(run: &mut Run, n: usize) -> Vec<f64> {
    (0..n).map(|_| pollster::block_on(run.step(false)).unwrap().loss).collect()
}

/// A run saved after 4 steps and resumed (from the checkpoint's bytes, as the page's autosave and import do) takes
/// the next steps exactly as the run that never stopped: same batches, parameters, AdamW state and schedule.
fn resumed_equals_uninterrupted(s: Settings, text: Option<&str>, gpu: impl Fn() -> Option<Gpu>) {
    let base = tiny();
    let mut straight = Run::new(&base, s.clone(), text, gpu()).unwrap();
    let all = losses(&mut straight, 7);
    let mut first = Run::new(&base, s.clone(), text, gpu()).unwrap();
    assert_eq!(losses(&mut first, 4), all[..4]);
    let bytes = pollster::block_on(first.checkpoint()).unwrap().to_bytes().unwrap();
    drop(first);
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!((checkpoint.step, &checkpoint.settings), (4, &s));
    let mut resumed = Run::resume(&base, &checkpoint, text, gpu()).unwrap();
    assert_eq!(resumed.step_index(), 4);
    assert!(resumed.validate_start().is_none(), "step 0 was scored before the save");
    assert_eq!(losses(&mut resumed, 3), all[4..], "{} {}", s.method, s.format);
}

#[test]
fn a_resumed_run_continues_exactly_on_the_cpu() {
    resumed_equals_uninterrupted(settings(), None, || None);
    let full = Settings { method: "full".into(), format: "fp32".into(), dq: false, ..settings() };
    resumed_equals_uninterrupted(full, None, || None);
    let own = Settings { task: "text".into(), ..settings() };
    resumed_equals_uninterrupted(own, Some(&"To be, or not to be, that is the question. ".repeat(40)), || None);
}

#[test]
fn a_resumed_run_continues_exactly_on_the_gpu() {
    let qlora = Settings { method: "qlora".into(), format: "nf4".into(), dq: true, ..settings() };
    resumed_equals_uninterrupted(qlora, None, || Some(Gpu::new_blocking().unwrap()));
}

#[test]
fn a_checkpoint_only_resumes_on_its_own_base_and_settings() {
    let mut run = Run::new(tiny(), settings(), None, None).unwrap();
    losses(&mut run, 2);
    let checkpoint = pollster::block_on(run.checkpoint()).unwrap();
    let other = Gpt2::init(ModelConfig::bytes(2, 2, 32, 32).unwrap(), 5);
    let err = Run::resume(&other, &checkpoint, None, None).err().unwrap().to_string();
    assert!(err.contains("different base model"), "{err}");
    let wider_rank = Checkpoint { settings: Settings { r: 8, ..settings() }, ..checkpoint.clone() };
    let err = Run::resume(tiny(), &wider_rank, None, None).err().unwrap().to_string();
    assert!(err.contains("trainable values but its settings train"), "{err}");
    let own = Checkpoint { settings: Settings { task: "text".into(), ..settings() }, ..checkpoint };
    let err = Run::resume(tiny(), &own, None, None).err().unwrap().to_string();
    assert!(err.contains("paste or drop a text"), "{err}");
}

/// The page streams a large model straight into the base format its settings chose: a run on that base takes the
/// steps a run on the fp32 base takes, on either executor, and their saved runs resume on each other (the stored
/// base names the fp32 weights it came from).
#[test]
fn a_run_on_a_base_streamed_into_its_format_trains_as_on_the_fp32_base() {
    let base = tiny();
    let file =
        model_files(&base, StoreDtype::F32).unwrap().into_iter().find(|(n, _)| *n == "model.safetensors").unwrap().1;
    let config = base.config.to_json("float32", &base.tokenizer);
    let s = qlora();
    let mut source = SafetensorsSource::open(&config, std::io::Cursor::new(&file), file.len() as u64).unwrap();
    let streamed = source.load(s.base_storage().unwrap()).unwrap();
    assert!(streamed.linears.is_some());
    for gpu in [None, Some(lavapipe as fn() -> Gpu)] {
        let gpu = || gpu.map(|g| g());
        let mut on_fp32 = Run::new(&base, s.clone(), None, gpu()).unwrap();
        let mut on_stored = Run::new(&streamed, s.clone(), None, gpu()).unwrap();
        assert_eq!(losses(&mut on_stored, 3), losses(&mut on_fp32, 3));
        let saved = pollster::block_on(on_stored.checkpoint()).unwrap();
        let mut resumed = Run::resume(&base, &saved, None, gpu()).unwrap();
        assert_eq!(losses(&mut resumed, 2), losses(&mut on_fp32, 2));
    }
    // A run in another format needs the base read again: the stored one cannot give its fp32 weights back.
    let int8 = Settings { format: "int8".into(), dq: false, ..qlora() };
    let err = Run::new(&streamed, int8, None, None).err().unwrap().to_string();
    assert!(err.contains("read it again from its file"), "{err}");
}

/// The exported zip: its PEFT adapter is the run's adapters (the same merged weights), its state resumes the run,
/// and a full fine-tuning run exports a transformers model directory instead.
#[test]
fn an_exported_run_holds_a_peft_adapter_and_resumes() {
    let base = tiny();
    let mut run = Run::new(&base, Settings { ranks: "fc:2".into(), ..settings() }, None, None).unwrap();
    losses(&mut run, 3);
    let weights = pollster::block_on(run.weight_files()).unwrap();
    let state = pollster::block_on(run.checkpoint()).unwrap().to_bytes().unwrap();
    let zip = archive::export_run(&state, &weights, r#"{"history":[]}"#, None).unwrap();
    let back = archive::read_archive(&zip).unwrap();
    assert_eq!(back.state, state);
    assert_eq!(back.run_json.as_deref(), Some(r#"{"history":[]}"#));
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&zip)).unwrap();
    let mut names: Vec<&str> = z.file_names().collect();
    names.sort();
    assert_eq!(
        names,
        ["README.txt", "adapter_config.json", "adapter_model.safetensors", "run.json", "state.safetensors"]
    );
    let mut read = |name: &str| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name(name).unwrap(), &mut out).unwrap();
        out
    };
    let cfg = String::from_utf8(read("adapter_config.json")).unwrap();
    let peft = qlora_playground::lora::load_adapter_bytes(&cfg, &read("adapter_model.safetensors"), 2, 32).unwrap();
    let mut merged_ours = base.clone();
    let mut merged_peft = base.clone();
    let checkpoint = Checkpoint::from_bytes(&state).unwrap();
    let mut resumed = Run::resume(&base, &checkpoint, None, None).unwrap();
    let ours = pollster::block_on(resumed.adapters()).unwrap().expect("a LoRA run");
    qlora_playground::lora::merge(&mut merged_ours, &ours).unwrap();
    qlora_playground::lora::merge(&mut merged_peft, &peft).unwrap();
    let worst =
        merged_ours.params.iter().zip(merged_peft.params.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-6, "PEFT's adapter merges to the run's weights (worst difference {worst})");

    let mut full =
        Run::new(&base, Settings { method: "full".into(), format: "fp32".into(), dq: false, ..settings() }, None, None)
            .unwrap();
    losses(&mut full, 1);
    let files = pollster::block_on(full.weight_files()).unwrap();
    assert_eq!(files.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["config.json", "model.safetensors"]);
    let model =
        qlora_playground::model::load_model_bytes(std::str::from_utf8(&files[0].1).unwrap(), &files[1].1).unwrap();
    assert_ne!(model.params, base.params, "the trained weights, not the base");
    assert_eq!(
        *model.params,
        Checkpoint::from_bytes(&pollster::block_on(full.checkpoint()).unwrap().to_bytes().unwrap()).unwrap().params
    );
}

/// "Adapter storage" measures a claim without changing the run: the loss with A and B rounded through bf16 (the QLoRA
/// paper's dtype), fp16 or int4 (the claim that QLoRA quantizes them) is reported beside the fp32 loss, departs from
/// it far less for 16 bits than for 4, and leaves the trained adapters as they were.
#[test]
fn adapter_storage_reports_the_rounded_loss_and_keeps_the_trained_adapters() {
    let mut departures = Vec::new();
    for astore in ["none", "fp16", "bf16", "int4"] {
        let s = Settings { adapter_storage: astore.into(), steps: 40, ..qlora() };
        let mut run = Run::new(tiny(), s, None, None).unwrap();
        losses(&mut run, 40);
        let v = pollster::block_on(run.validate()).unwrap();
        match v.val_loss_adapter_rounded {
            None => assert_eq!(astore, "none", "{astore} gave no rounded loss"),
            Some(rounded) => {
                assert!(rounded.is_finite(), "{astore}: {rounded}");
                departures.push((astore, (rounded - v.val_loss).abs()));
            }
        }
        let again = pollster::block_on(run.validate()).unwrap();
        assert_eq!(again.val_loss, v.val_loss, "{astore}: measuring the rounded adapters changed the trained ones");
    }
    // 16-bit rounding barely moves the loss; int4's does (which of fp16 and bf16 moves it less is not asked: at these
    // sizes their order is rounding noise).
    let d: Vec<f64> = departures.iter().map(|(_, d)| *d).collect();
    assert!(d[2] > 1e-4 && d[0] < d[2] / 3.0 && d[1] < d[2] / 3.0, "fp16, bf16 ≪ int4 departures: {departures:?}");
}
