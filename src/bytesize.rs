//! Sizes in bytes: read as a config writes them (`"32MB"`, `"512 KiB"`, `"1048576"`) and shown as
//! an error says them (`32 MiB`).
//!
//! K, M and G are powers of 1024 whether written `KB` or `KiB` (as in nginx and systemd): a limit
//! on memory is thought of in binary units, and the one way of reading them is the one shown.

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// A whole number of bytes, optionally followed by `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB` or
/// `G`/`GB`/`GiB` (any case, a space allowed before the unit). `None` for anything else,
/// overflow included.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// `bytes` in the largest binary unit that divides it exactly: `32 MiB`, `1536 KiB`, `100 bytes`.
pub fn show(bytes: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_written_in_binary_units() {
        for (text, bytes) in [
            ("32MB", 32 * MIB),
            ("512KB", 512 * KIB),
            ("512 KiB", 512 * KIB),
            ("1gb", GIB),
            ("2M", 2 * MIB),
            ("1048576", MIB),
            ("100 B", 100),
            (" 7mib ", 7 * MIB),
        ] {
            assert_eq!(parse(text), Some(bytes), "{text}");
        }
        for bad in [
            "",
            "MB",
            "32 megabytes",
            "-1MB",
            "1.5MB",
            "32 M B",
            "99999999999999999999",
            "18446744073709551615G",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_show_in_the_largest_exact_unit() {
        assert_eq!(show(32 * MIB), "32 MiB");
        assert_eq!(show(1536 * KIB), "1536 KiB");
        assert_eq!(show(GIB), "1 GiB");
        assert_eq!(show(100), "100 bytes");
        assert_eq!(show(300 * MIB + 9), "314572809 bytes");
        assert_eq!(show(0), "0 bytes");
    }
}
