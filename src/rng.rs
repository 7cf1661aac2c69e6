//! Seeded randomness. Every random choice (initialisation, dropout masks, batch sampling, sampling during generation)
//! draws from a ChaCha8 stream derived from the user's seed and a purpose tag, so runs are reproducible bit for bit
//! and one purpose never shifts another's stream.

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng as Rng;

/// A generator for `purpose` under `seed`. Distinct purposes give independent streams.
pub fn stream(seed: u64, purpose: &str) -> Rng {
    // FNV-1a of the purpose, mixed with the seed: cheap, stable across platforms and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in purpose.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Rng::seed_from_u64(seed ^ h.rotate_left(17))
}
