//! Seeds and lengths of the randomised tests (fuzz, crash loop, fault soak, secrets).
//!
//! Every random choice comes from a seed that is printed: `ORDERSYNC_RELIABILITY_SEED=N` replays
//! a run, and `ORDERSYNC_SOAK=1` runs the long variants (more kills, larger worlds, more fuzz cases).

/// `ORDERSYNC_SOAK=1` (anything but empty or `0`): the long variants.
pub fn soak() -> bool {
    std::env::var("ORDERSYNC_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

const DEFAULT_SEED: u64 = 20_240_229;

/// The seed of one test: `ORDERSYNC_RELIABILITY_SEED` (or the fixed default) mixed with the test's
/// name, so each test has its own stream and one variable replays them all. Printed.
pub fn seed_for(test: &str) -> u64 {
    let base = std::env::var("ORDERSYNC_RELIABILITY_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SEED);
    // FNV-1a of the name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in test.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let seed = base ^ h;
    println!("{test}: seed {seed} (base {base}; replay with ORDERSYNC_RELIABILITY_SEED={base})");
    seed
}

pub fn seed_is_default() -> bool {
    std::env::var("ORDERSYNC_RELIABILITY_SEED").is_err()
}
