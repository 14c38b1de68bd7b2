//! The recursion guard: an agent that treefarm started must not start,
//! merge or prune runs through this server unless the config allows it
//! (`mcp.allow_in_agent`), or one run's agents could fan out runs of their
//! own without end, or merge and prune under the run that started them.

use super::tools::Refusal;

/// The config key (and its variable) that lifts the guard.
pub(crate) const ALLOW_KEY: &str = "mcp.allow_in_agent (TREEFARM_MCP_ALLOW_IN_AGENT=true)";

/// The refusal of `tool` when this server runs inside an agent of a
/// treefarm run — `run_id` and `spec_id` are that agent's `TREEFARM_RUN_ID`
/// and `TREEFARM_SPEC_ID` — and `allowed` is false; `None` otherwise.
pub(crate) fn refusal(
    tool: &str,
    run_id: Option<&str>,
    spec_id: Option<&str>,
    allowed: bool,
) -> Option<Refusal> {
    let run_id = run_id.filter(|v| !v.is_empty())?;
    if allowed {
        return None;
    }
    let spec = spec_id
        .filter(|v| !v.is_empty())
        .map(|s| format!(" (spec {s})"))
        .unwrap_or_default();
    Some(Refusal {
        reason: format!(
            "`{tool}` refused: this server runs inside an agent of treefarm run {run_id}{spec}, \
             and a run started, merged or pruned from there could recurse or disturb the \
             run that started it; set {ALLOW_KEY} to allow it"
        ),
        config_key: "mcp.allow_in_agent".to_string(),
    })
}

/// [`refusal`] with this process's environment.
pub(crate) fn refusal_here(tool: &str, allowed: bool) -> Option<Refusal> {
    let run_id = std::env::var("TREEFARM_RUN_ID").ok();
    let spec_id = std::env::var("TREEFARM_SPEC_ID").ok();
    refusal(tool, run_id.as_deref(), spec_id.as_deref(), allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_an_agent_nothing_is_refused() {
        assert!(refusal("run_start", None, None, false).is_none());
        assert!(refusal("run_start", Some(""), None, false).is_none());
    }

    #[test]
    fn inside_an_agent_the_refusal_names_the_run_and_the_key() {
        let r = refusal("merge", Some("20260101-000000-0001"), Some("020"), false)
            .expect("refused inside an agent");
        assert!(r.reason.contains("20260101-000000-0001"), "{}", r.reason);
        assert!(r.reason.contains("spec 020"), "{}", r.reason);
        assert_eq!(r.config_key, "mcp.allow_in_agent");
    }

    #[test]
    fn the_config_key_lifts_the_guard() {
        assert!(refusal("prune", Some("r"), Some("1"), true).is_none());
    }
}
