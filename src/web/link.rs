//! A playground link: the URL query holds only the settings that differ from the defaults, plus a format version `v`,
//! so a copied link reproduces a run (training is deterministic for a seed). Parsing never fails as a whole: each bad
//! parameter is reported with a clear message and replaced by what it follows from or its default, so a mistyped
//! link still opens a working playground.

use crate::data::tasks::{Task, TextTask};
use crate::lora::{parse_targets, Target};
use crate::model::ModelConfig;
use crate::quant::Format;
use crate::run::settings::*;
use crate::train::Method;
use serde::{Deserialize, Serialize};

/// Version of the URL format; bumped when a parameter changes meaning.
pub const URL_VERSION: u32 = 1;

impl Settings {
    /// The URL query of these settings: `v` and every setting that differs from `model`'s default
    /// ([`Settings::defaults_for`]), in a fixed order.
    pub fn to_query(&self, model: &ModelConfig) -> String {
        let d = Settings::defaults_for(model);
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("v", &URL_VERSION.to_string());
        let mut put = |k: &str, differs: bool, v: String| {
            if differs {
                q.append_pair(k, &v);
            }
        };
        put("method", self.method != d.method, self.method.clone());
        put("r", self.r != d.r, self.r.to_string());
        put("ranks", self.ranks != d.ranks, self.ranks.clone());
        put("alpha", self.alpha != d.alpha, self.alpha.to_string());
        put("targets", self.targets != d.targets, self.targets.join(","));
        put("format", self.format != d.format, self.format.clone());
        put("dq", self.dq != d.dq, (self.dq as u8).to_string());
        put("astore", self.adapter_storage != d.adapter_storage, self.adapter_storage.clone());
        put("lr", self.lr != d.lr, self.lr.to_string());
        put("batch", self.batch != d.batch, self.batch.to_string());
        put("seq", self.seq != d.seq, self.seq.to_string());
        put("steps", self.steps != d.steps, self.steps.to_string());
        put("seed", self.seed != d.seed, self.seed.to_string());
        put("task", self.task != d.task, self.task.clone());
        q.finish()
    }
}

/// Page-level options from the URL that are not run settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageOptions {
    /// `embed=1`: the compact layout for iframes.
    pub embed: bool,
    /// `hide=name,name`: controls an embed hides.
    pub hide: Vec<String>,
    /// `backend=cpu` forces the CPU executor (to compare, or where a GPU driver misbehaves), `backend=webgpu` WebGPU
    /// even on a software adapter (which `auto`, the default, passes over for the CPU executor: www/js/processor.js).
    pub backend: Option<String>,
    /// `model=gpt2` / `distilgpt2` / `gpt2-medium` / `gpt2-large` (downloaded from the Hugging Face hub on a click)
    /// or `files` (the reader's own); `None` for the Shakespeare model that ships with the page. Names only: a link
    /// never names a URL to fetch.
    pub model: Option<String>,
}

/// The matrices the page has a box for (the command line also knows `qkv`).
const PAGE_TARGETS: &str = "the matrices to adapt are q, k, v, o, fc and proj (or all), separated by commas";

/// Every parameter a link may carry: the settings ([`Settings::to_query`]'s order), then the page options.
pub const LINK_PARAMETERS: [&str; 19] = [
    "v", "method", "r", "ranks", "alpha", "targets", "format", "dq", "astore", "lr", "batch", "seq", "steps", "seed",
    "task", "model", "backend", "embed", "hide",
];

/// The models a link may name besides the built-in one (`model=`), as the page's picker offers them.
pub const MODEL_NAMES: [&str; 6] = ["shakespeare", "gpt2", "distilgpt2", "gpt2-medium", "gpt2-large", "files"];

/// The result of reading a URL query: settings (defaults where a parameter was bad), page options, and one message per
/// bad parameter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedQuery {
    pub settings: Settings,
    pub page: PageOptions,
    pub errors: Vec<LinkMessage>,
}

/// One thing wrong with a link, and the parameter it is about: the page drops the message once the reader changes
/// that parameter's control.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkMessage {
    /// In lowercase (`r`, `ranks`, `hide`), or "" for a message about no known parameter (an unknown name, a query
    /// too long to read).
    pub param: String,
    pub message: String,
}

impl ParsedQuery {
    /// The messages alone, in the order they were said.
    pub fn messages(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.message.as_str()).collect()
    }
}

/// Reads a URL query (with or without the leading `?`). Unknown parameters, bad values and an unsupported version
/// are reported, never fatal. The result always validates against `model` (bad combinations fall back to defaults).
pub fn parse_query(query: &str, model: &ModelConfig) -> ParsedQuery {
    let mut out = ParsedQuery { settings: Settings::defaults_for(model), ..Default::default() };
    let s = &mut out.settings;
    let mut said: Vec<LinkMessage> = Vec::new();
    let mut say = |param: &str, message: String| said.push(LinkMessage { param: param.into(), message });
    let query = query.strip_prefix('?').unwrap_or(query);
    // Parameters are short; a huge query is garbage, not settings.
    if query.len() > 4096 {
        say("", format!("the link's query is {} characters long; it was ignored", query.len()));
        out.errors = said;
        return out;
    }
    // Settings the link gives (and that were good); the others follow from them.
    let mut given: Vec<String> = Vec::new();
    // A name given more than once (`r=4&r=8`, `R=8`): the last good value counts, as in any query, and the reader is
    // told which, once per name after the whole link is read (`hide=` adds up instead, and is not named).
    let mut seen: Vec<String> = Vec::new();
    let mut repeated: Vec<String> = Vec::new();
    let mut last_good: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim();
        let lower = key.to_ascii_lowercase();
        let first_time = !seen.contains(&lower);
        if first_time {
            seen.push(lower);
        } else if !repeated.contains(&lower) && lower != "hide" && LINK_PARAMETERS.contains(&lower.as_str()) {
            repeated.push(lower);
        }
        // Names in a link are read whatever their case (`model=GPT2-Large`, `backend=CPU`), as the method and the
        // format always were: someone typing a link by hand should not lose a setting to a capital letter.
        let word = value.to_ascii_lowercase();
        let word = word.as_str();
        // What is wrong with this parameter (a list for `hide`, which names several controls).
        let mut errors: Vec<String> = Vec::new();
        let shown: String = value.chars().take(40).collect();
        let bad = |what: &str| format!("link parameter {key}={shown:?} ignored: {what}");
        // Parameter names too (`Steps=40`, `R=4`): the page writes them in lowercase, a hand may not.
        let name = key.to_ascii_lowercase();
        match name.as_str() {
            "v" => {
                if value != URL_VERSION.to_string() {
                    errors.push(bad(&format!("this page reads link version {URL_VERSION}")));
                }
            }
            "method" => match value.parse::<Method>() {
                Ok(m) => s.method = m.name().into(),
                Err(e) => errors.push(bad(&e.to_string())),
            },
            "r" => match value.parse::<usize>() {
                Ok(r) if (1..=MAX_RANK).contains(&r) => s.r = r,
                _ => errors.push(bad(&format!("rank must be a whole number from 1 to {MAX_RANK}"))),
            },
            "ranks" => match parse_ranks(value) {
                // Kept as the page spells it (`Q:2` → `q:2`): the per-matrix boxes and the link read it back.
                Ok(ranks) => s.ranks = ranks.iter().map(|(t, r)| format!("{t}:{r}")).collect::<Vec<_>>().join(","),
                Err(e) => errors.push(bad(&e.to_string())),
            },
            "alpha" => match value.parse::<f32>() {
                Ok(a) if a.is_finite() && a > 0.0 && a <= MAX_ALPHA => s.alpha = a,
                _ => errors.push(bad(&format!("alpha must be a number in (0, {MAX_ALPHA}]"))),
            },
            "targets" => match parse_targets(value) {
                // One adapter on the whole fused c_attn is the command line's; the page has a box per matrix.
                Ok(t) if t.contains(&Target::Qkv) => errors.push(bad(
                    "qkv (one adapter on GPT-2's fused c_attn) is a command-line target; the page adapts q, k and v \
                     as three matrices (targets=q,k,v)",
                )),
                Ok(t) => s.targets = t.iter().map(|t| t.name().to_string()).collect(),
                Err(_) => errors.push(bad(PAGE_TARGETS)),
            },
            "format" => match value.parse::<Format>() {
                Ok(f) => s.format = f.name().into(),
                Err(e) => errors.push(bad(&e.to_string())),
            },
            "dq" => match word {
                "1" | "true" => s.dq = true,
                "0" | "false" => s.dq = false,
                _ => errors.push(bad("dq is 1 or 0")),
            },
            "astore" => match word {
                "none" | "bf16" | "fp16" | "int4" => s.adapter_storage = word.into(),
                _ => errors.push(bad("adapter storage is none, bf16, fp16 or int4")),
            },
            "lr" => match value.parse::<f32>() {
                Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_LR => s.lr = v,
                _ => errors.push(bad(&format!("learning rate must be a number in (0, {MAX_LR}]"))),
            },
            "batch" => match value.parse::<usize>() {
                Ok(v) if (1..=MAX_BATCH).contains(&v) => s.batch = v,
                _ => errors.push(bad(&format!("batch must be a whole number from 1 to {MAX_BATCH}"))),
            },
            "seq" => match value.parse::<usize>() {
                Ok(v) if (8..=model.n_positions).contains(&v) => s.seq = v,
                _ => errors.push(bad(&format!("sequence length must be from 8 to {}", model.n_positions))),
            },
            "steps" => match value.parse::<usize>() {
                Ok(v) if (1..=MAX_STEPS).contains(&v) => s.steps = v,
                _ => errors.push(bad(&format!("steps must be a whole number from 1 to {MAX_STEPS}"))),
            },
            "seed" => match value.parse::<u64>() {
                Ok(v) if v <= u32::MAX as u64 => s.seed = v,
                _ => errors.push(bad("seed must be a whole number from 0 to 4294967295")),
            },
            "task" => {
                let known = word == "text" || TextTask::parse(word).is_some() || Task::parse(word).is_ok();
                if known {
                    s.task = word.into();
                } else {
                    errors.push(bad(&format!("built-in tasks are {}", crate::data::tasks::all_names())));
                }
            }
            "embed" => match word {
                "1" | "true" => out.page.embed = true,
                "0" | "false" => out.page.embed = false,
                _ => errors.push(bad("embed is 1 or 0")),
            },
            "backend" => match word {
                "auto" => out.page.backend = None,
                "cpu" | "webgpu" => out.page.backend = Some(word.into()),
                _ => errors.push(bad("backend is auto, webgpu or cpu")),
            },
            "model" => match word {
                "shakespeare" => out.page.model = None,
                v if MODEL_NAMES.contains(&v) => out.page.model = Some(v.into()),
                _ => errors.push(bad(&format!("models are {}", MODEL_NAMES.join(", ")))),
            },
            "hide" => {
                for name in word.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if SETTING_NAMES.contains(&name) {
                        out.page.hide.push(name.to_string());
                    } else {
                        // Only this name is dropped: the others in the list are hidden.
                        errors.push(format!(
                            "link parameter hide: {name:?} is not a control, so nothing was hidden for it; controls \
                             are {}",
                            SETTING_NAMES.join(", ")
                        ));
                    }
                }
            }
            // Named once, however often the link repeats it.
            _ if !first_time => {}
            _ => {
                let k: String = key.chars().take(40).collect();
                errors.push(format!(
                    "unknown link parameter {k:?} ignored; a link's parameters are {}",
                    LINK_PARAMETERS.join(", ")
                ));
            }
        }
        // Every message of this parameter's round is about it (an unknown name is about none).
        let param = if LINK_PARAMETERS.contains(&name.as_str()) { name.as_str() } else { "" };
        let good = errors.is_empty() && !param.is_empty();
        for message in errors {
            say(param, message);
        }
        if good {
            last_good.retain(|(n, _)| n != &name);
            last_good.push((name.clone(), format!("{key}={shown:?}")));
            given.push(name);
        }
    }
    for name in repeated {
        let message = match last_good.iter().find(|(n, _)| n == &name) {
            Some((_, used)) => {
                format!("link parameter {name} is given more than once; the last good one, {used}, is used")
            }
            None => format!("link parameter {name} is given more than once, and no value of it was good"),
        };
        say(&name, message);
    }
    let given = |k: &str| given.iter().any(|g| g == k);
    for (param, message) in follow_the_links_base(s, given("method"), given("format"), given("dq")) {
        say(param, message);
    }
    if s.method == "full" && s.adapter_storage != "none" {
        say(
            "astore",
            format!("link parameter astore={} ignored: full fine-tuning has no adapters to store", s.adapter_storage),
        );
        s.adapter_storage = "none".into();
    }
    // Each value was fine alone; a combination may still not be (a rank for a matrix the link does not adapt):
    // report the parameter at fault and drop only it.
    let (settled, problems) = s.settle(model);
    for p in problems {
        say(&p.field, format!("link parameter {} ignored: {}", p.field, p.message));
    }
    *s = settled;
    out.errors = said;
    out
}

/// A link names some of method, base format and double quantization; the others follow from what it names, as the
/// page's controls follow each other: `format=int4` is QLoRA on int4 (no double quantization, which int4 lacks),
/// `format=fp16` LoRA on fp16, `method=full` an fp32 base. Only an explicit contradiction (`method=lora&format=nf4`,
/// `format=int4&dq=1`) is reported, and only the parameter at fault is dropped: each message with that parameter.
fn follow_the_links_base(
    s: &mut Settings,
    method_given: bool,
    format_given: bool,
    dq_given: bool,
) -> Vec<(&'static str, String)> {
    let mut said = Vec::new();
    let mut method: Method = s.method.parse().unwrap_or(Method::Qlora);
    let mut format: Format = s.format.parse().unwrap_or(Format::Nf4);
    if format_given && !method_given {
        method = method_for_format(format);
    } else if method_given && !format_given {
        format = method.default_format();
    } else if let Some(why) = method_format_conflict(method, format) {
        said.push(("format", format!("link parameter format={format} ignored: {why}")));
        format = method.default_format();
    }
    let dq_applies = method != Method::Full && format.supports_double_quant();
    if !dq_given {
        s.dq = dq_applies && default_double_quant(format);
    } else if s.dq && !dq_applies {
        said.push((
            "dq",
            format!(
                "link parameter dq=1 ignored: double quantization applies to fp4 and nf4 bases, not to {}",
                if method == Method::Full {
                    "full fine-tuning's fp32 weights".to_string()
                } else {
                    format!("{format}")
                }
            ),
        ));
        s.dq = false;
    }
    s.method = method.name().into();
    s.format = format.name().into();
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig::bytes(4, 4, 192, 256).unwrap()
    }

    #[test]
    fn defaults_validate_and_round_trip_through_the_query() {
        let d = Settings::default();
        d.validate(&cfg()).unwrap();
        assert_eq!(d.to_query(&cfg()), "v=1");
        let mut s = d.clone();
        s.method = "lora".into();
        s.format = "fp16".into();
        s.dq = false;
        s.r = 2;
        s.targets = vec!["q".into(), "v".into()];
        s.lr = 0.0005;
        s.task = "add".into();
        s.seed = 7;
        let q = s.to_query(&cfg());
        assert_eq!(q, "v=1&method=lora&r=2&targets=q%2Cv&format=fp16&dq=0&lr=0.0005&seed=7&task=add");
        let back = parse_query(&format!("?{q}"), &cfg());
        assert!(back.errors.is_empty(), "{:?}", back.errors);
        assert_eq!(back.settings, s);
    }

    #[test]
    fn garbage_parameters_are_reported_one_by_one_and_defaults_kept() {
        let q = "v=9&r=0&lr=NaN&batch=-3&seq=100000&steps=1e9&targets=q,zz&format=nf5&dq=maybe&method=sgd&task=%3Cscript%3E&seed=x&alpha=inf&hide=bogus&embed=2&astore=int3&backend=tpu&what=1&model=https%3A%2F%2Fexample.org%2Fm";
        let p = parse_query(q, &cfg());
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.errors.len(), 19, "{:#?}", p.errors);
        assert!(p.messages().iter().any(|e| e.contains("r=\"0\"") && e.contains("1 to 64")));
        assert!(p
            .messages()
            .iter()
            .any(|e| e.contains("models are shakespeare, gpt2, distilgpt2, gpt2-medium, gpt2-large, files")));
        assert_eq!(p.page.model, None, "a link never names a URL to fetch");
        assert!(p.messages().iter().any(|e| e.contains("unknown link parameter \"what\"")));
        // Each message names the parameter it is about, for the page to drop once the reader changes its control;
        // the unknown one is about none.
        let mut about: Vec<&str> = p.errors.iter().map(|e| e.param.as_str()).collect();
        about.sort();
        let want = [
            "", "alpha", "astore", "backend", "batch", "dq", "embed", "format", "hide", "lr", "method", "model", "r",
            "seed", "seq", "steps", "targets", "task", "v",
        ];
        assert_eq!(about, want, "{:#?}", p.errors);
    }

    #[test]
    fn each_message_names_its_parameter_in_lowercase() {
        let p = parse_query("R=0&R=4&Format=int4&dq=1&ranks=q:2&targets=v&hide=seed,bogus", &cfg());
        let pairs: Vec<(&str, &str)> = p.errors.iter().map(|e| (e.param.as_str(), e.message.as_str())).collect();
        for (param, message) in &pairs {
            let named = match *param {
                "r" => message.starts_with("link parameter R=") || message.starts_with("link parameter r is given"),
                "dq" => message.starts_with("link parameter dq=1 ignored"),
                "ranks" => message.starts_with("link parameter ranks ignored"),
                "hide" => message.contains("\"bogus\""),
                _ => false,
            };
            assert!(named, "{param:?} for {message:?}");
        }
        assert_eq!(pairs.iter().filter(|(param, _)| *param == "r").count(), 2, "{pairs:#?}");
        let huge = parse_query(&"x".repeat(5000), &cfg());
        assert_eq!(huge.errors.iter().map(|e| e.param.as_str()).collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn a_gpt2_size_model_has_laptop_defaults_and_its_links_name_what_differs() {
        let gpt2 = ModelConfig::hf_preset("gpt2", None).unwrap();
        let d = Settings::defaults_for(&gpt2);
        assert_eq!((d.batch, d.seq, d.steps), (4, 64, 100));
        assert_eq!(Settings::defaults_for(&cfg()), Settings::default(), "the built-in model keeps the page defaults");
        assert_eq!(parse_query("v=1", &gpt2).settings, d);
        assert_eq!(d.to_query(&gpt2), "v=1");
        // The built-in model's defaults are explicit settings on GPT-2, and the round trip keeps them.
        let small = Settings::default();
        let q = small.to_query(&gpt2);
        assert_eq!(q, "v=1&batch=8&steps=300");
        assert_eq!(parse_query(&q, &gpt2).settings, small);
        // A faulty value falls back to the model's default.
        let (usable, problems) = Settings { batch: 0, ..d.clone() }.settle(&gpt2);
        assert_eq!((usable.batch, problems.len()), (4, 1));
    }

    #[test]
    fn a_link_names_a_model_by_name_only() {
        for (q, want) in [
            ("model=gpt2", Some("gpt2")),
            ("model=distilgpt2", Some("distilgpt2")),
            ("model=gpt2-large", Some("gpt2-large")),
            ("model=files", Some("files")),
        ] {
            let p = parse_query(q, &cfg());
            assert!(p.errors.is_empty(), "{q}: {:?}", p.errors);
            assert_eq!(p.page.model.as_deref(), want, "{q}");
        }
        assert_eq!(parse_query("model=shakespeare", &cfg()).page.model, None);
        assert_eq!(parse_query("model=gpt2-xl", &cfg()).errors.len(), 1);
    }

    #[test]
    fn a_link_names_only_the_matrices_the_page_has_a_box_for() {
        let p = parse_query("targets=qkv&r=4", &cfg());
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert!(
            p.messages()[0].contains("command-line target") && p.messages()[0].contains("targets=q,k,v"),
            "{:?}",
            p.errors
        );
        assert_eq!((p.settings.targets.clone(), p.settings.r), (Settings::default().targets, 4));
        let p = parse_query("targets=zz", &cfg());
        assert_eq!(p.messages(), [format!("link parameter targets=\"zz\" ignored: {PAGE_TARGETS}")]);
        assert!(!p.messages()[0].contains("qkv"));
        assert_eq!(parse_query("targets=all", &cfg()).settings.targets, Settings::default().targets);
    }

    #[test]
    fn names_in_a_hand_written_link_are_read_whatever_their_case() {
        let p = parse_query(
            "model=GPT2-Large&backend=CPU&embed=TRUE&hide=Seed,ALPHA&method=QLoRA&format=NF4&dq=False&task=Hamlet",
            &cfg(),
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.page.model.as_deref(), Some("gpt2-large"));
        assert_eq!(p.page.backend.as_deref(), Some("cpu"));
        assert!(p.page.embed);
        assert_eq!(p.page.hide, ["seed", "alpha"]);
        assert_eq!((p.settings.method.as_str(), p.settings.format.as_str(), p.settings.dq), ("qlora", "nf4", false));
        assert_eq!(p.settings.task, "hamlet");
        assert_eq!(parse_query("ranks=Q:2,FC:16", &cfg()).settings.ranks, "q:2,fc:16");
        // What is written back is the canonical spelling, so a shared link reads the same as one made by the page.
        assert!(p.settings.to_query(&cfg()).contains("task=hamlet"), "{}", p.settings.to_query(&cfg()));
        // A wrong name is still one message, quoted as the reader typed it.
        let p = parse_query("model=GPT2-XL", &cfg());
        assert_eq!(p.errors.len(), 1);
        assert!(p.messages()[0].contains("\"GPT2-XL\""), "{:?}", p.errors);
        // Parameter names too, and a name given in capitals still counts as given: format=INT4 then takes QLoRA.
        let p = parse_query("V=1&R=4&Steps=40&FORMAT=int4&Model=gpt2", &cfg());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!((p.settings.r, p.settings.steps, p.settings.format.as_str()), (4, 40, "int4"));
        assert_eq!((p.settings.method.as_str(), p.settings.dq), ("qlora", false));
        assert_eq!(p.page.model.as_deref(), Some("gpt2"));
    }

    #[test]
    fn a_parameter_given_twice_is_named_and_the_last_good_value_counts() {
        let p = parse_query("r=4&R=8&r=16&format=nf4&format=int4&steps=30&steps=0&hide=seed&hide=alpha", &cfg());
        assert_eq!((p.settings.r, p.settings.format.as_str(), p.settings.steps), (16, "int4", 30));
        // A bad last value is refused on its own, and the good one before it stays; each repeated name is named once,
        // with the value that counts.
        assert_eq!(
            p.messages(),
            [
                "link parameter steps=\"0\" ignored: steps must be a whole number from 1 to 5000",
                "link parameter r is given more than once; the last good one, r=\"16\", is used",
                "link parameter format is given more than once; the last good one, format=\"int4\", is used",
                "link parameter steps is given more than once; the last good one, steps=\"30\", is used",
            ]
        );
        // `hide=` adds up.
        assert_eq!(p.page.hide, ["seed", "alpha"]);
        // A name the page does not know is named once, however often (and in whatever case) it is repeated.
        let p = parse_query("what=1&r=4&what=2&WHAT=3", &cfg());
        assert_eq!(p.settings.r, 4);
        assert_eq!(p.errors.len(), 1, "{:#?}", p.errors);
        assert!(p.messages()[0].starts_with("unknown link parameter \"what\""), "{:?}", p.messages());
        let p = parse_query("r=0&r=100", &cfg());
        assert_eq!(p.settings.r, Settings::default().r);
        assert!(
            p.messages().last().unwrap().ends_with("given more than once, and no value of it was good"),
            "{:?}",
            p.errors
        );
    }

    #[test]
    fn hiding_a_control_that_does_not_exist_hides_the_others_and_names_only_it() {
        let p = parse_query("embed=1&hide=seed,bogus,alpha", &cfg());
        assert_eq!(p.page.hide, ["seed", "alpha"]);
        assert_eq!(p.errors.len(), 1);
        assert!(p.messages()[0]
            .starts_with("link parameter hide: \"bogus\" is not a control, so nothing was hidden for it"));
        assert!(!p.messages()[0].contains("ignored"), "the rest of hide= was not ignored: {}", p.messages()[0]);
    }

    #[test]
    fn an_unknown_parameter_is_told_the_names_a_link_knows_and_those_names_are_all_read() {
        let p = parse_query("rank=4", &cfg());
        assert_eq!(p.errors.len(), 1);
        assert!(p.messages()[0]
            .starts_with("unknown link parameter \"rank\" ignored; a link's parameters are v, method, r,"));
        // The list is what the parser reads: no name in it is unknown, and every name the page writes is in it.
        for name in LINK_PARAMETERS {
            let p = parse_query(&format!("{name}=?"), &cfg());
            assert!(p.messages().iter().all(|e| !e.starts_with("unknown")), "{name}: {:?}", p.errors);
        }
        let everything = Settings {
            method: "qlora".into(),
            r: 2,
            ranks: "q:4".into(),
            alpha: 3.0,
            targets: vec!["q".into(), "fc".into()],
            format: "int4".into(),
            dq: false,
            adapter_storage: "fp16".into(),
            lr: 0.5,
            batch: 3,
            seq: 9,
            steps: 7,
            seed: 5,
            task: "hamlet".into(),
            ..Settings::default()
        };
        let query = everything.to_query(&cfg());
        for (key, _) in form_urlencoded::parse(query.as_bytes()) {
            assert!(LINK_PARAMETERS.contains(&key.as_ref()), "{key} is written but not listed");
        }
    }

    #[test]
    fn an_overlong_query_is_ignored_with_one_message() {
        let q = format!("r=4&seed={}", "9".repeat(5000));
        let p = parse_query(&q, &cfg());
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.errors.len(), 1);
        assert!(p.messages()[0].contains("5009 characters long"), "{}", p.messages()[0]);
    }

    /// (method, format, dq) a link opens.
    fn base_of(query: &str) -> (String, String, bool, Vec<LinkMessage>) {
        let p = parse_query(query, &cfg());
        (p.settings.method, p.settings.format, p.settings.dq, p.errors)
    }

    #[test]
    fn links_set_what_they_name_and_the_rest_follows() {
        let open = |q: &str| {
            let (m, f, dq, errors) = base_of(q);
            assert!(errors.is_empty(), "{q}: {errors:?}");
            (m, f, dq)
        };
        let want = |m: &str, f: &str, dq: bool| (m.to_string(), f.to_string(), dq);
        assert_eq!(open(""), want("qlora", "nf4", true));
        assert_eq!(open("format=fp16"), want("lora", "fp16", false));
        assert_eq!(open("format=bf16"), want("lora", "bf16", false));
        assert_eq!(open("format=fp32"), want("lora", "fp32", false));
        assert_eq!(open("format=int4"), want("qlora", "int4", false));
        assert_eq!(open("format=int8"), want("qlora", "int8", false));
        assert_eq!(open("format=fp4"), want("qlora", "fp4", true));
        assert_eq!(open("format=nf4&dq=0"), want("qlora", "nf4", false));
        assert_eq!(open("method=lora"), want("lora", "fp32", false));
        assert_eq!(open("method=lora&format=fp16"), want("lora", "fp16", false));
        assert_eq!(open("method=qlora&format=int4"), want("qlora", "int4", false));
        assert_eq!(open("method=full"), want("full", "fp32", false));
        assert_eq!(open("method=full&format=fp32&dq=0"), want("full", "fp32", false));
        // Links the page wrote before formats and methods followed each other still open.
        assert_eq!(open("format=fp16&dq=0"), want("lora", "fp16", false));
    }

    #[test]
    fn a_contradiction_drops_only_the_parameter_at_fault() {
        for (q, want, names) in [
            ("format=int4&dq=1&r=4", ("qlora", "int4", false), "dq=1"),
            ("format=int8&dq=1", ("qlora", "int8", false), "dq=1"),
            ("method=full&dq=1", ("full", "fp32", false), "dq=1"),
            ("method=lora&format=nf4&r=4", ("lora", "fp32", false), "format=nf4"),
            ("method=qlora&format=fp16&r=4", ("qlora", "nf4", true), "format=fp16"),
            ("method=full&format=nf4&r=4", ("full", "fp32", false), "format=nf4"),
        ] {
            let p = parse_query(q, &cfg());
            let got = (p.settings.method.as_str(), p.settings.format.as_str(), p.settings.dq);
            assert_eq!(got, want, "{q}");
            assert_eq!(p.errors.len(), 1, "{q}: {:?}", p.errors);
            assert!(p.messages()[0].contains(names), "{q}: {}", p.messages()[0]);
            if q.contains("r=4") {
                assert_eq!(p.settings.r, 4, "{q}: the rest of the link is kept");
            }
        }
        let p = parse_query("method=full&astore=fp16&seed=3", &cfg());
        assert_eq!((p.settings.adapter_storage.as_str(), p.settings.seed, p.errors.len()), ("none", 3, 1));
        assert!(p.messages()[0].contains("astore=fp16"), "{}", p.messages()[0]);
        let p = parse_query("targets=q,v&ranks=fc:4&r=2", &cfg());
        assert_eq!((p.settings.ranks.as_str(), p.settings.r, p.errors.len()), ("", 2, 1), "{:?}", p.errors);
        assert!(p.messages()[0].contains("ranks") && p.messages()[0].contains("not adapted"), "{}", p.messages()[0]);
        let p = parse_query("method=full&format=fp32&dq=0&embed=1&hide=method,r", &cfg());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.page,
            PageOptions { embed: true, hide: vec!["method".into(), "r".into()], backend: None, model: None }
        );
    }

    #[test]
    fn every_format_follows_into_a_method_that_accepts_it() {
        for f in Format::ALL {
            let m = method_for_format(f);
            assert_eq!(method_format_conflict(m, f), None, "{f}");
            let other = if m == Method::Lora { Method::Qlora } else { Method::Lora };
            assert!(method_format_conflict(other, f).is_some(), "{f} under {other}");
            assert_eq!(method_format_conflict(Method::Full, f).is_some(), f != Format::Fp32, "{f} under full");
            let s = Settings {
                method: m.name().into(),
                format: f.name().into(),
                dq: default_double_quant(f),
                ..Default::default()
            };
            s.validate(&cfg()).unwrap();
        }
        for m in [Method::Full, Method::Lora, Method::Qlora] {
            assert_eq!(method_format_conflict(m, m.default_format()), None, "{m}");
        }
    }

    #[test]
    fn settling_names_each_bad_setting_and_keeps_the_others() {
        let s = Settings { lr: 0.0, r: 4, targets: vec![], seq: 9999, ..Default::default() };
        let (usable, problems) = s.settle(&cfg());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["targets", "seq", "lr"]);
        assert_eq!(usable.r, 4, "a good setting stays");
        assert_eq!((usable.lr, usable.seq), (Settings::default().lr, Settings::default().seq));
        usable.validate(&cfg()).unwrap();
        let s = Settings { format: "int4".into(), dq: true, ..Default::default() };
        let (usable, problems) = s.settle(&cfg());
        assert_eq!(
            (problems.len(), problems[0].field.as_str(), usable.dq, usable.format.as_str()),
            (1, "dq", false, "int4")
        );
        assert!(Settings::default().settle(&cfg()).1.is_empty());
    }

    #[test]
    fn per_target_ranks_reach_the_engine_and_the_link() {
        let s = Settings { ranks: "fc:16, q:2".into(), ..Default::default() };
        let lora = s.validate(&cfg()).unwrap().lora.unwrap();
        let rank = |n: &str| lora.targets.iter().find(|(t, _)| t.name() == n).unwrap().1;
        assert_eq!((rank("q"), rank("k"), rank("fc"), rank("proj")), (2, 8, 16, 8));
        let q = s.to_query(&cfg());
        assert_eq!(q, "v=1&ranks=fc%3A16%2C+q%3A2");
        // Read back as the page spells it, without the space.
        assert_eq!(parse_query(&q, &cfg()).settings, Settings { ranks: "fc:16,q:2".into(), ..s.clone() });
        for (bad, says) in [
            ("fc", "not target:rank"),
            ("fc:0", "between 1 and 64"),
            ("fc:65", "between 1 and 64"),
            ("fc:", "(the box is empty)"),
            ("zz:4", "zz"),
            ("fc:4,fc:8", "two ranks"),
        ] {
            let e = Settings { ranks: bad.into(), ..Default::default() }.validate(&cfg()).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
            let p = parse_query(&format!("ranks={bad}"), &cfg());
            assert_eq!((p.settings.ranks.as_str(), p.errors.len()), ("", 1), "{bad}: {:?}", p.errors);
        }
        let unchosen = Settings { targets: vec!["q".into(), "v".into()], ranks: "fc:4".into(), ..Default::default() };
        assert!(unchosen.validate(&cfg()).unwrap_err().to_string().contains("fc, which is not adapted"));
    }

    #[test]
    fn validation_names_the_number() {
        let mut s = Settings { r: 65, ..Default::default() };
        assert!(s.validate(&cfg()).unwrap_err().to_string().contains("65"));
        s.r = 8;
        s.seq = 300;
        assert!(s.validate(&cfg()).unwrap_err().to_string().contains("256"));
        s.seq = 64;
        s.targets.clear();
        assert!(s.validate(&cfg()).unwrap_err().to_string().contains("at least one"));
    }
}
