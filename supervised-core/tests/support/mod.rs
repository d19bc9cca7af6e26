//! What several test files of the runtime share.

#![allow(dead_code)]

use std::time::Duration;

use supervised_core::{Backoff, Jitter};

/// Lets every ready task run (the paused clock does not move).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A constant backoff of `d`.
pub fn constant(d: Duration) -> Backoff {
    Backoff {
        initial: d,
        max: d,
        jitter: Jitter::None,
        reset_after: Duration::MAX,
    }
}

/// SplitMix64, so that seeded runs are the same every time.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
