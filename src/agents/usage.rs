//! `usage.json`: the tokens and cost of an instance's agent, as its wrapper
//! read them from the CLI's own machine-readable result (Claude Code's
//! stream-json `result` event, Codex's `turn.completed` events, Gemini CLI's
//! `result` stats, aider's token/cost report; see scripts/agents/common.sh).
//! The wrapper adds each attempt's figures to what the file already holds.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file's name in the instance directory.
pub const USAGE_FILE: &str = "usage.json";

/// Token use and cost; every field optional, unknown fields ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub model: Option<String>,
}

impl Usage {
    /// Input plus output tokens.
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.output_tokens.unwrap_or(0))
    }

    /// `1.2k in / 345 out, $0.0125` — what `status` and the summary print.
    pub fn brief(&self) -> String {
        let mut out = format!(
            "{} in / {} out",
            count(self.input_tokens),
            count(self.output_tokens)
        );
        if let Some(cost) = self.cost_usd {
            out.push_str(&format!(", ${cost:.4}"));
        }
        out
    }
}

fn count(n: Option<u64>) -> String {
    match n {
        None => "?".into(),
        Some(n) if n >= 10_000 => format!("{:.1}k", n as f64 / 1000.0),
        Some(n) => n.to_string(),
    }
}

/// The usage in `dir/usage.json`, if the wrapper wrote a readable one.
pub fn read_usage(dir: &Path) -> Option<Usage> {
    let bytes = std::fs::read(dir.join(USAGE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The sum of several instances' usage: tokens add up; the cost is the sum
/// of the known costs, `None` when no instance reported one.
pub fn total_usage<'a>(all: impl IntoIterator<Item = &'a Usage>) -> Option<Usage> {
    let mut total: Option<Usage> = None;
    for u in all {
        let t = total.get_or_insert_with(Usage::default);
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        t.input_tokens = add(t.input_tokens, u.input_tokens);
        t.output_tokens = add(t.output_tokens, u.output_tokens);
        t.cost_usd = match (t.cost_usd, u.cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_every_field_is_optional() {
        let u: Usage = serde_json::from_str(
            r#"{"input_tokens": 101, "output_tokens": 7, "cost_usd": null, "model": "m",
                "attempts": 2, "source": "codex exec --json turn.completed"}"#,
        )
        .expect("parse");
        assert_eq!(u.tokens(), 108);
        assert_eq!(u.cost_usd, None);
        assert_eq!(
            serde_json::from_str::<Usage>("{}").expect("empty"),
            Usage::default()
        );
    }

    #[test]
    fn totals_add_known_figures() {
        let a = Usage {
            input_tokens: Some(100),
            output_tokens: Some(10),
            cost_usd: Some(0.5),
            model: None,
        };
        let b = Usage {
            input_tokens: Some(20_000),
            output_tokens: None,
            cost_usd: None,
            model: None,
        };
        let t = total_usage([&a, &b]).expect("total");
        assert_eq!(t.input_tokens, Some(20_100));
        assert_eq!(t.output_tokens, Some(10));
        assert_eq!(t.cost_usd, Some(0.5));
        assert_eq!(t.brief(), "20.1k in / 10 out, $0.5000");
        assert_eq!(total_usage([]), None);
        assert_eq!(b.brief(), "20.0k in / ? out");
    }
}
