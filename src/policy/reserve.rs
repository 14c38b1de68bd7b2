//! The disk budget as data: `worktree.reserve`, what a run's worktrees will
//! take, and whether that fits in the free space minus the reserve. Pure:
//! the free space and the sizes are measured by [`crate::disk`] and handed
//! in.

/// `worktree.reserve`: free space never planted into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    /// A share of the space that is free, in percent: a run never plants
    /// into the last `p`% of what it found free. (A share of the file
    /// system's size would refuse every run on a big, fairly full disk: 5 % of
    /// 2 TB is 100 GB.)
    Percent(f64),
    Bytes(u64),
}

impl Reserve {
    /// `5%`, `0`, `512M`, `2G`, `1.5GiB`, or a number of bytes.
    pub fn parse(s: &str) -> Result<Reserve, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if (0.0..100.0).contains(&p) => Ok(Reserve::Percent(p)),
                _ => Err(format!("`{s}` is not a percentage from 0% to 99%")),
            };
        }
        parse_size(t)
            .map(Reserve::Bytes)
            .ok_or_else(|| format!("`{s}` is not a size (use e.g. `5%`, `512M`, `2G`)"))
    }

    pub fn bytes(self, free: u64) -> u64 {
        match self {
            Reserve::Percent(p) => (free as f64 * p / 100.0) as u64,
            Reserve::Bytes(b) => b,
        }
    }
}

fn parse_size(t: &str) -> Option<u64> {
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    Some((num * mult as f64) as u64)
}

/// Why a run does not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub needed: u64,
    pub available: u64,
    pub reserve: u64,
}

/// Whether `needed` bytes fit in `free` minus the reserve.
pub fn check(needed: u64, free: u64, reserve: Reserve) -> Result<(), OverBudget> {
    let reserve = reserve.bytes(free);
    let available = free.saturating_sub(reserve);
    if needed > available {
        return Err(OverBudget {
            needed,
            available,
            reserve,
        });
    }
    Ok(())
}

/// The bytes that must be free at once: every worktree when they are all
/// kept (`--no-merge`, `--keep`), else the largest `instances` of them.
pub fn needed(mut sizes: Vec<u64>, instances: usize, all_kept: bool) -> u64 {
    if all_kept {
        return sizes.iter().sum();
    }
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.iter().take(instances.max(1)).sum()
}

/// `1.5 GiB`, `340 MiB`, `12 KiB`, `800 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[u])
    } else {
        format!("{v:.0} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_parses_percent_and_sizes() {
        assert_eq!(Reserve::parse("5%"), Ok(Reserve::Percent(5.0)));
        assert_eq!(Reserve::parse("2G"), Ok(Reserve::Bytes(2 << 30)));
        assert_eq!(Reserve::parse("512MiB"), Ok(Reserve::Bytes(512 << 20)));
        assert_eq!(Reserve::parse("0"), Ok(Reserve::Bytes(0)));
        assert!(Reserve::parse("lots").is_err());
        assert!(Reserve::parse("120%").is_err());
        assert_eq!(Reserve::Percent(5.0).bytes(1000), 50);
    }

    #[test]
    fn a_small_run_fits_on_a_big_fairly_full_disk() {
        // 5.5 GiB free on a 252 GiB disk: 5 % of the disk (13 GiB) would have
        // refused a 97 KiB run; 5 % of what is free leaves 5.2 GiB.
        assert!(check(97 << 10, 5632 << 20, Reserve::Percent(5.0)).is_ok());
        assert!(check(5500 << 20, 5632 << 20, Reserve::Percent(5.0)).is_err());
    }

    #[test]
    fn a_run_that_does_not_fit_says_how_much_is_needed_and_available() {
        assert!(check(900, 1000, Reserve::Percent(5.0)).is_ok());
        let over = check(960, 1000, Reserve::Percent(5.0)).unwrap_err();
        assert_eq!((over.needed, over.available, over.reserve), (960, 950, 50));
    }

    #[test]
    fn only_the_worktrees_alive_at_once_count_unless_all_are_kept() {
        assert_eq!(needed(vec![1, 5, 3, 4], 2, false), 9);
        assert_eq!(needed(vec![1, 5, 3, 4], 2, true), 13);
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(800), "800 B");
    }
}
