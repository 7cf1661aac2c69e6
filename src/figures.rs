//! Numbers as messages print them, for the CLI and the page alike.

/// `n` with its thousands separated by commas: 774030080 → "774,030,080".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in whole MiB, rounded down, with thousands separated: "2,952 MiB".
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", thousands(bytes >> 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(774_030_080), "774,030,080");
        assert_eq!(mib(3_096_120_320), "2,952 MiB");
    }
}
