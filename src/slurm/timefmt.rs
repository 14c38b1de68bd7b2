//! Slurm's time-limit formats: what `--time` takes and what `sinfo` prints
//! for a partition's limit (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`,
//! or `infinite`).

use std::time::Duration;

/// A limit for `--time`: whole minutes, rounded up (Slurm counts minutes;
/// rounding down would cut the margin treefarm leaves behind its own
/// timeout).
pub fn format_time_limit(limit: Duration) -> String {
    let minutes = limit.as_secs().div_ceil(60).max(1);
    minutes.to_string()
}

/// A limit as Slurm prints it; `None` for no limit (`infinite`,
/// `UNLIMITED`).
pub fn parse_time_limit(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if ["infinite", "unlimited"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        return Ok(None);
    }
    let bad = || format!("`{text}` is not a Slurm time limit");
    let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, t),
    };
    let parts = rest
        .split(':')
        .map(number)
        .collect::<Result<Vec<u64>, String>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    Ok(Some(Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slurm_shape_parses() {
        let s = |n| Ok(Some(Duration::from_secs(n)));
        assert_eq!(parse_time_limit("30"), s(1800));
        assert_eq!(parse_time_limit("1:00"), s(60));
        assert_eq!(parse_time_limit("2:03:04"), s(2 * 3600 + 3 * 60 + 4));
        assert_eq!(parse_time_limit("1-00:00:00"), s(86400));
        assert_eq!(parse_time_limit("2-3"), s(2 * 86400 + 3 * 3600));
        assert_eq!(parse_time_limit("2-3:30"), s(2 * 86400 + 3 * 3600 + 1800));
        assert_eq!(parse_time_limit("infinite"), Ok(None));
        assert_eq!(parse_time_limit("UNLIMITED"), Ok(None));
        for bad in ["", "n/a", "1:2:3:4", "x-1", "1-2:3:4:5", "-5"] {
            assert!(parse_time_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_is_rounded_up_to_whole_minutes() {
        assert_eq!(format_time_limit(Duration::from_secs(60)), "1");
        assert_eq!(format_time_limit(Duration::from_secs(61)), "2");
        assert_eq!(format_time_limit(Duration::from_secs(35 * 60)), "35");
        assert_eq!(format_time_limit(Duration::ZERO), "1");
        // What treefarm writes, Slurm's own parser reads back the same.
        let t = Duration::from_secs(2 * 3600);
        assert_eq!(parse_time_limit(&format_time_limit(t)), Ok(Some(t)));
    }
}
