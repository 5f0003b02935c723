//! Virtual-size rule of the original `shrink.py` and size-string parsing.

use crate::error::{Error, Result};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// One gibibyte.
pub const GIB: u64 = 1024 * MIB;

/// The new virtual disk size the original pipeline picks for a shrunk
/// filesystem of `fs_bytes` bytes: under 1000 MiB → 1024 MiB, under 5000 MiB →
/// 5 GiB, under 10000 MiB → 10 GiB, otherwise `None` (leave the size alone).
pub fn target_size_for(fs_bytes: u64) -> Option<u64> {
    let mib = fs_bytes / MIB;
    if mib < 1000 {
        Some(1024 * MIB)
    } else if mib < 5000 {
        Some(5 * GIB)
    } else if mib < 10000 {
        Some(10 * GIB)
    } else {
        None
    }
}

/// The sizes [`target_size_for`] can pick, smallest first.
pub const RULE_SIZES: [u64; 3] = [1024 * MIB, 5 * GIB, 10 * GIB];

/// Parse a size such as `1024M`, `5G`, `10GiB`, `2T` or a plain byte count.
/// Suffixes are binary (K = 1024). The result must be a positive multiple of 512.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = |reason: &str| Error::BadSize {
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad("expected a number, e.g. 1024M or 5G"));
    }
    let n: u64 = num.parse().map_err(|_| bad("number too large"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => MIB,
        "G" | "GB" | "GIB" => GIB,
        "T" | "TB" | "TIB" => 1024 * GIB,
        _ => return Err(bad("unknown unit (use K, M, G or T)")),
    };
    let bytes = n.checked_mul(mult).ok_or_else(|| bad("size too large"))?;
    if bytes == 0 {
        return Err(bad("size must be positive"));
    }
    if bytes % 512 != 0 {
        return Err(bad("size must be a multiple of 512 bytes"));
    }
    Ok(bytes)
}

/// Format a byte count for humans (`1.0 GiB`, `512 MiB`).
pub fn human(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_boundaries() {
        assert_eq!(target_size_for(0), Some(1024 * MIB));
        assert_eq!(target_size_for(999 * MIB + MIB - 1), Some(1024 * MIB));
        assert_eq!(target_size_for(1000 * MIB), Some(5 * GIB));
        assert_eq!(target_size_for(4999 * MIB), Some(5 * GIB));
        assert_eq!(target_size_for(5000 * MIB), Some(10 * GIB));
        assert_eq!(target_size_for(9999 * MIB), Some(10 * GIB));
        assert_eq!(target_size_for(10000 * MIB), None);
        assert_eq!(target_size_for(50 * GIB), None);
    }

    #[test]
    fn parse_sizes() {
        assert_eq!(parse_size("1024M").unwrap(), 1024 * MIB);
        assert_eq!(parse_size("5G").unwrap(), 5 * GIB);
        assert_eq!(parse_size("10GiB").unwrap(), 10 * GIB);
        assert_eq!(parse_size("2t").unwrap(), 2048 * GIB);
        assert_eq!(parse_size("1048576").unwrap(), MIB);
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("100").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
        let e = parse_size("5X").unwrap_err().to_string();
        assert!(e.contains("5X") && e.contains("unit"), "{e}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(1024 * MIB), "1.0 GiB");
        assert_eq!(human(512 * MIB), "512.0 MiB");
        assert_eq!(human(12), "12 B");
    }
}
