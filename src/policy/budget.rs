//! `run.max_cost` / `run.max_tokens`: what a run has spent and whether it
//! may start another agent. Pure data, serde so the journal carries it: a
//! resumed run starts from what the earlier ones spent.
//!
//! Spending is recorded per spec as the latest `usage.json` the spec's
//! wrapper wrote (the wrapper itself adds up the attempts), so recording the
//! same spec again replaces, never double counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agents::{total_usage, Usage};

/// The limits from the config (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub max_cost: Option<f64>,
    pub max_tokens: Option<u64>,
}

/// Which budget a run reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "budget", rename_all = "snake_case")]
pub enum BudgetReached {
    Cost { limit: f64, spent: f64 },
    Tokens { limit: u64, spent: u64 },
}

impl std::fmt::Display for BudgetReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetReached::Cost { limit, spent } => write!(
                f,
                "cost budget reached: ${spent:.4} spent of run.max_cost ${limit:.4}"
            ),
            BudgetReached::Tokens { limit, spent } => write!(
                f,
                "token budget reached: {spent} tokens spent of run.max_tokens {limit}"
            ),
        }
    }
}

/// What the run has spent, per spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spending {
    pub per_spec: BTreeMap<String, Usage>,
}

impl Spending {
    /// `spec`'s usage so far (its `usage.json`, which covers every attempt).
    pub fn record(&mut self, spec: &str, usage: Usage) {
        self.per_spec.insert(spec.to_string(), usage);
    }

    pub fn total(&self) -> Usage {
        total_usage(self.per_spec.values()).unwrap_or_default()
    }
}

impl Budget {
    pub fn is_limited(&self) -> bool {
        self.max_cost.is_some() || self.max_tokens.is_some()
    }

    /// The budget `spent` reached, if any: then no new agent starts
    /// (running ones finish) and the run exits 1 naming it.
    pub fn reached(&self, spent: &Spending) -> Option<BudgetReached> {
        let total = spent.total();
        if let Some(limit) = self.max_cost {
            let cost = total.cost_usd.unwrap_or(0.0);
            if cost >= limit {
                return Some(BudgetReached::Cost { limit, spent: cost });
            }
        }
        if let Some(limit) = self.max_tokens {
            let tokens = total.tokens();
            if tokens >= limit {
                return Some(BudgetReached::Tokens {
                    limit,
                    spent: tokens,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tokens_in: u64, tokens_out: u64, cost: Option<f64>) -> Usage {
        Usage {
            input_tokens: Some(tokens_in),
            output_tokens: Some(tokens_out),
            cost_usd: cost,
            model: None,
        }
    }

    #[test]
    fn no_limits_never_stop() {
        let mut s = Spending::default();
        s.record("001", usage(u64::MAX / 2, 0, Some(1e9)));
        assert_eq!(Budget::default().reached(&s), None);
        assert!(!Budget::default().is_limited());
    }

    #[test]
    fn reaching_either_budget_stops_new_starts() {
        let budget = Budget {
            max_cost: Some(1.0),
            max_tokens: Some(1_000),
        };
        let mut s = Spending::default();
        s.record("001", usage(400, 100, Some(0.4)));
        assert_eq!(budget.reached(&s), None);
        s.record("002", usage(400, 99, Some(0.5)));
        assert_eq!(budget.reached(&s), None);
        s.record("003", usage(1, 0, None));
        let reached = budget.reached(&s).expect("tokens reached");
        assert_eq!(
            reached,
            BudgetReached::Tokens {
                limit: 1_000,
                spent: 1_000
            }
        );
        assert!(
            reached.to_string().contains("run.max_tokens 1000"),
            "{reached}"
        );
        s.record("003", usage(1, 0, Some(0.2)));
        let reached = budget.reached(&s).expect("cost reached");
        assert!(matches!(reached, BudgetReached::Cost { .. }), "{reached:?}");
        assert!(
            reached.to_string().contains("run.max_cost $1.0000"),
            "{reached}"
        );
    }

    #[test]
    fn recording_a_spec_again_replaces_it() {
        let mut s = Spending::default();
        s.record("001", usage(10, 1, Some(0.1)));
        s.record("001", usage(30, 3, Some(0.3)));
        assert_eq!(s.total().tokens(), 33);
    }

    #[test]
    fn spending_round_trips_through_json() {
        let mut s = Spending::default();
        s.record("001", usage(10, 1, Some(0.25)));
        let json = serde_json::to_string(&s).expect("serialize");
        let back: Spending = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, s);
        let budget = Budget {
            max_cost: Some(0.25),
            max_tokens: None,
        };
        assert!(budget.reached(&back).is_some());
    }
}
