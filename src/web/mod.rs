//! The playground page's side of the engine: links, the numbers shown before training, what the page shows about
//! adapters and weights, exported runs, the PEFT snippet and (on wasm32) the wasm-bindgen API the Web Worker calls.
//! The run itself is [`crate::run`], shared with the command line.
//!
//! Everything except `api` is plain Rust, built and tested natively as well.

pub mod accounts;
pub mod archive;
pub mod inspect;
pub mod link;
pub mod snippet;

#[cfg(target_arch = "wasm32")]
pub mod api;

pub use accounts::{accounting_of, check_memory_budget, check_model_fits, run_budget, Accounting};
pub use link::{parse_query, LinkMessage, ParsedQuery, LINK_PARAMETERS};
