//! The JSON fixtures under `tests/fixtures/<source>/`.

use std::path::Path;

use serde_json::Value;

/// The fixture at `path` (relative to the crate root), parsed.
pub fn fixture(path: &str) -> Value {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}
