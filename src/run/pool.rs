//! Where the page's CPU work runs.

/// Runs CPU work on a thread of rayon's pool and waits for it. In the page's threaded build the engine's own Web
/// Worker is not one of the pool's threads, so each parallel loop it calls directly is handed to the pool and waited
/// for — an atomic wait and a wake-up per loop, tens of microseconds in a browser, hundreds of loops per training
/// step. Called from a pool thread, the loops split by work stealing and the calling thread keeps working. In the
/// single-threaded build rayon's pool is the calling thread and this runs in place.
///
/// Natively the work runs where it is called: the CLI and the tests call the executor from outside the pool, as the
/// native matrix multiply expects (it multiplies on one thread when called from inside a parallel task).
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    #[cfg(target_arch = "wasm32")]
    {
        rayon::scope(|_| work())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        work()
    }
}
