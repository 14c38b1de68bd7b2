//! Agent presets and the glue between treefarm and an agent CLI: the embedded
//! wrapper scripts for Claude Code, Codex, aider and Gemini CLI, the prompt
//! treefarm hands them, and the "is the agent's program there?" check `run`
//! makes before creating anything; what an agent spent (`usage`) and
//! whether its attempt ended rate-limited (`ratelimit`).

mod identity;
mod preset;
mod program;
mod prompt;
mod ratelimit;
mod shell;
mod usage;

pub use ratelimit::{
    classify as classify_rate_limit, log_tail, retry_after, RateLimitKind, RateLimitRules,
    RateLimited, LOG_TAIL_LINES,
};
pub use usage::{read_usage, total_usage, Usage, USAGE_FILE};

pub use identity::{agent_identity, identity_env, parse_identity, DEFAULT_IDENTITY};
pub use preset::{
    allowed_commands_env, materialize_wrapper, preset, preset_command, preset_env, preset_note,
    presets, Preset, ENV_AGENT_EXTRA_ARGS, ENV_AGENT_MODEL, ENV_ALLOWED_COMMANDS, ENV_PROMPT_FILE,
};
pub(crate) use program::resolve as find_program;
pub use program::{check_preset_program, check_program};
pub use prompt::{
    check_resolve_template, render_prompt, render_resolve_prompt, resolve_env, PromptContext,
    ResolveContext, DEFAULT_PROMPT_TEMPLATE, DEFAULT_RESOLVE_PROMPT_TEMPLATE,
};
pub use shell::{shell_quote, substitute};
