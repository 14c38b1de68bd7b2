//! Durations as users write them, in the file, the environment and flags:
//! below both `config` and `slurm` (which parses its own section's
//! durations), so neither imports the other.

use std::time::Duration;

/// Parses a duration: humantime (`30m`, `1h 5m`, `500ms`) or plain seconds
/// (`90`, `1.5`). Used for the file, the environment and flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| {
            format!("invalid duration `{s}`: must be a non-negative number of seconds")
        });
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration `{s}`: {e} (use e.g. `90`, `500ms`, `30m`, `1h 5m`)")
    })
}
