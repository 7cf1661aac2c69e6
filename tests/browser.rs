//! The page's wasm CPU code and its wasm-bindgen API in a real browser (headless Chromium or Firefox). The WebGPU
//! executor's scenarios are in browser_kernels.rs, browser_training.rs, browser_generation.rs, browser_run.rs and
//! browser_pipeline.rs. Run with the rest by `wasm-pack test --headless --chrome` (or `--firefox`); the runner gives
//! each test file 20 s, so each GPU scenario has a file of its own.
#![cfg(target_arch = "wasm32")]

mod browser_util;

use browser_util::values;
use qlora_playground::cpu::{gemm, Mat};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The CPU executor's matrix multiply as the page runs it (src/cpu/packed.rs: the wasm-SIMD micro-kernel) against a
/// sum in f64, in every orientation, with beta = 0 over NaN and beta ≠ 0, on shapes with partial micro-tiles, several
/// row blocks and two depth blocks, A packed and A read in place (outputs ≤ 16 wide), into an output whose leading
/// dimension leaves a gap that must stay untouched.
#[wasm_bindgen_test]
fn cpu_matrix_multiply_matches_a_plain_sum_in_the_browser() {
    for (m, k, n) in [(1, 1, 1), (3, 5, 7), (130, 33, 65), (67, 300, 29), (67, 300, 13), (256, 192, 72)] {
        let (a, b) = (values(m * k, 3), values(k * n, 4));
        let ldc = n + 3;
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let am = if ta { Mat::t(&a, m) } else { Mat::new(&a, k) };
            let bm = if tb { Mat::t(&b, k) } else { Mat::new(&b, n) };
            for (alpha, beta, before) in [(1.0f32, 0.0f32, f32::NAN), (0.5, 2.0, 1.0)] {
                let mut c = vec![before; (m - 1) * ldc + n];
                gemm(m, k, n, alpha, am, bm, beta, &mut c, ldc);
                for i in 0..m {
                    for j in 0..ldc.min(c.len() - i * ldc) {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert_eq!(
                                got.to_bits(),
                                before.to_bits(),
                                "{m}x{k}x{n}: the gap at ({i}, {j}) was written"
                            );
                            continue;
                        }
                        let sum: f64 = (0..k)
                            .map(|p| {
                                let x = if ta { a[p * m + i] } else { a[i * k + p] };
                                let y = if tb { b[j * k + p] } else { b[p * n + j] };
                                x as f64 * y as f64
                            })
                            .sum();
                        let want = alpha as f64 * sum + if beta == 0.0 { 0.0 } else { beta as f64 * before as f64 };
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + k as f64),
                            "{m}x{k}x{n} ta={ta} tb={tb} beta={beta} at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// The benchmark page's multiply-add ceiling does the work it is timed for: each of its twelve f32x4 chains runs
/// a ← a·x + y for every round, which in exact arithmetic has a closed form.
#[wasm_bindgen_test]
fn the_multiply_add_peak_runs_every_round_of_every_chain() {
    use qlora_playground::cpu::products::{madd_peak, PEAK_CHAINS};
    let (x, y) = (0.999_999f32 as f64, 1e-6f32 as f64);
    for rounds in [10_000usize, 100_000] {
        // a_n = x^n·a_0 + y·(1 − x^n)/(1 − x), chain i starting at a_0 = i; lanes 0 and 3 of each chain are summed.
        // f32 rounding leaves the sum within 6e-4 of it (checked in numpy); skipping the rounds would be 8e-3 off.
        let xn = x.powi(rounds as i32);
        let want: f64 = (0..PEAK_CHAINS).map(|i| 2.0 * (xn * i as f64 + y * (1.0 - xn) / (1.0 - x))).sum();
        let got = madd_peak(rounds) as f64;
        assert!((got - want).abs() <= 2e-3 * want.abs(), "{rounds} rounds: {got} vs {want}");
    }
}

/// The wasm-bindgen API the page's worker calls: bad input becomes a JavaScript error with one clear message.
#[wasm_bindgen_test]
async fn page_api_reports_bad_input_as_errors() {
    use qlora_playground::web::api::{accounting, cpu_madd_peak, cpu_matmul, parse_query_js, Playground};
    use wasm_bindgen::JsValue;
    let config = include_str!("../www/models/shakespeare/config.json");
    let message = |e: wasm_bindgen::JsError| js_sys::Error::from(JsValue::from(e)).message().as_string().unwrap();
    // A truncated safetensors file and a config that is not JSON.
    let weights = include_bytes!("../www/models/shakespeare/model.safetensors");
    let e = Playground::new(config, &weights[..1000]).err().expect("truncated weights are refused");
    assert!(message(e).contains("model.safetensors"));
    let e = Playground::new("{nope", weights).err().expect("bad config is refused");
    assert!(message(e).contains("config.json"));
    // A garbage query parses (with messages); settings that do not validate are refused by accounting.
    let parsed = parse_query_js(config, "?r=999&zz=1").unwrap();
    let errors = js_sys::Reflect::get(&parsed, &"errors".into()).unwrap();
    assert_eq!(js_sys::Array::from(&errors).length(), 2);
    let settings = js_sys::Reflect::get(&parsed, &"settings".into()).unwrap();
    js_sys::Reflect::set(&settings, &"r".into(), &JsValue::from(0)).unwrap();
    let e = accounting(config, settings).expect_err("rank 0 is refused");
    assert!(message(e).contains("rank r must be between 1 and 64"));
    // User text that is not UTF-8, or empty.
    let mut pg = Playground::new(config, weights).unwrap();
    assert!(message(pg.set_user_text(&[0x66, 0xff, 0x66]).unwrap_err()).contains("not UTF-8"));
    assert!(message(pg.set_user_text(b"  \n").unwrap_err()).contains("empty"));
    assert_eq!(pg.set_user_text("To be, or not to be".as_bytes()).unwrap(), 19);
    let too_big = vec![b'a'; 16 * 1024 * 1024 + 1];
    assert!(message(pg.set_user_text(&too_big).unwrap_err()).contains("16 MiB"));
    // Absurd generation requests.
    let e = pg.generate("To be", 1_000_000, 0.0, 0, 0, true).await.expect_err("a million tokens are refused");
    assert!(message(e).contains("at most 1024"));
    let e = pg.generate("To be", 8, f32::NAN, 0, 0, true).await.expect_err("NaN temperature is refused");
    assert!(message(e).contains("temperature"));
    // The benchmark page's matrix products: empty or huge sides and absurd repetitions are refused.
    for (m, k, n, reps) in [(0, 8, 8, 1), (8, 5000, 8, 1), (8, 8, 8, 0), (8, 8, 8, 1_000_000)] {
        let e = cpu_matmul(m, k, n, false, reps).expect_err("refused");
        assert!(message(e).contains("sides are 1 to 4096"), "{m}×{k}×{n} × {reps}");
    }
    for rounds in [0, (1 << 30) + 1] {
        assert!(message(cpu_madd_peak(rounds).expect_err("refused")).contains("1 to 1073741824 rounds"));
    }
    // 2×3 (rows 1..6 as the API fills them) times 3×2: a sum small enough to hold exactly.
    let sum = cpu_matmul(2, 3, 2, false, 1).unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (
        (0..6).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect(),
        (0..6).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect(),
    );
    let want: f32 = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| (0..3).map(|p| a[i * 3 + p] * b[p * 2 + j]).sum::<f32>())
        .sum();
    assert!((sum - want).abs() < 1e-5, "{sum} vs {want}");
}

/// The page's saved runs through the wasm API: a checkpoint and an exported zip both continue the run at its step in
/// another Playground; a generation in chunks equals the one-shot one; a file that is no run, and a run too large for
/// a tab, are refused with a message.
#[wasm_bindgen_test]
async fn page_api_saves_resumes_and_refuses_oversized_runs() {
    use qlora_playground::model::{model_files, Gpt2, ModelConfig, StoreDtype};
    use qlora_playground::web::api::{defaults, Playground};
    use wasm_bindgen::JsValue;
    let config = include_str!("../www/models/shakespeare/config.json");
    let weights = include_bytes!("../www/models/shakespeare/model.safetensors");
    let message = |e: wasm_bindgen::JsError| js_sys::Error::from(JsValue::from(e)).message().as_string().unwrap();
    let get = |v: &JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).unwrap();
    let settings = defaults(config).unwrap();
    for (k, v) in [("batch", 1), ("seq", 8), ("steps", 5)] {
        js_sys::Reflect::set(&settings, &k.into(), &JsValue::from(v)).unwrap();
    }
    let mut pg = Playground::new(config, weights).unwrap();
    pg.start(settings.clone(), false).await.unwrap();
    for _ in 0..2 {
        pg.step(false).await.unwrap();
    }
    let state = pg.checkpoint().await.unwrap();
    let zip = pg.export_run(r#"{"history":{"steps":[],"vals":[]}}"#).await.unwrap();
    let mut other = Playground::new(config, weights).unwrap();
    let e = other.import_run(b"hello", false).await.expect_err("not a run");
    assert!(message(e).contains("neither an exported run"));
    let resumed = other.import_run(&zip, false).await.unwrap();
    assert_eq!(get(&resumed, "step").as_f64(), Some(2.0));
    assert!(get(&resumed, "run_json").as_string().unwrap().contains("history"));
    let resumed = other.resume(&state, None, false).await.unwrap();
    assert_eq!(get(&resumed, "step").as_f64(), Some(2.0));
    let next = other.step(false).await.unwrap();
    assert_eq!(get(&next, "step").as_f64(), Some(2.0), "the third step comes next");

    // A generation in chunks (as the page streams it) is the one-shot generation, for the base and the tuned model.
    other.generate_begin("To be", 20, 0.8, 5, 3).unwrap();
    let mut last = JsValue::NULL;
    for _ in 0..3 {
        last = other.generate_more(7).await.unwrap();
    }
    assert_eq!((get(&last, "done").as_f64(), get(&last, "total").as_f64()), (Some(20.0), Some(20.0)));
    for (key, tuned) in [("base", false), ("tuned", true)] {
        let whole = other.generate("To be", 20, 0.8, 5, 3, tuned).await.unwrap();
        assert_eq!(get(&last, key).as_string().unwrap(), whole, "{key}");
    }
    assert!(message(other.generate_more(7).await.expect_err("finished")).contains("no generation in progress"));

    // A long context with many heads: the attention probabilities of batch 64 × 1024² × 16 heads exceed a tab.
    let long = Gpt2::init(ModelConfig::bytes(1, 16, 64, 1024).unwrap(), 0);
    let files = model_files(&long, StoreDtype::F32).unwrap();
    let mut pg = Playground::new(std::str::from_utf8(&files[0].1).unwrap(), &files[1].1).unwrap();
    for (k, v) in [("batch", 64), ("seq", 1024)] {
        js_sys::Reflect::set(&settings, &k.into(), &JsValue::from(v)).unwrap();
    }
    let e = pg.start(settings, false).await.expect_err("over the budget");
    let m = message(e);
    // What a run may have is what the tab's engine has left beside the loaded base.
    let budget = format!(
        "more than the {} a tab can give it",
        qlora_playground::figures::mib(qlora_playground::web::run_budget(&long.config))
    );
    assert!(m.contains(&budget) && m.contains("try a batch of"), "{m}");
}
