//! The playground page's engine: settings and URL state, a run on either executor, what the page shows about
//! adapters and weights, and (on wasm32) the wasm-bindgen API the Web Worker calls.
//!
//! Everything except `api` is plain Rust, built and tested natively as well, so the page and the CLI share one
//! definition of a run.

pub mod archive;
pub mod checkpoint;
pub mod inspect;
pub mod pool;
pub mod session;
pub mod settings;
pub mod snippet;

#[cfg(target_arch = "wasm32")]
pub mod api;

pub use checkpoint::Checkpoint;
pub use session::{accounting_of, Accounting, Run, Validation};
pub use settings::{parse_query, ParsedQuery, Settings};
