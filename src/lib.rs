mod error;
pub mod model;
pub mod quant;
pub mod rng;
pub use error::{Error, Result};
