//! Agent presets and the glue between treefarm and an agent CLI: the embedded
//! wrapper scripts for Claude Code, Codex, aider and Gemini CLI, the prompt
//! treefarm hands them, and the "is the agent's program there?" check `run`
//! makes before creating anything.

mod identity;
mod preset;
mod program;
mod prompt;
mod shell;

pub use identity::{agent_identity, identity_env, parse_identity, DEFAULT_IDENTITY};
pub use preset::{
    allowed_commands_env, materialize_wrapper, preset, preset_command, preset_env, preset_note,
    presets, Preset, ENV_AGENT_EXTRA_ARGS, ENV_AGENT_MODEL, ENV_ALLOWED_COMMANDS, ENV_PROMPT_FILE,
};
pub use program::{check_preset_program, check_program};
pub use prompt::{render_prompt, PromptContext, DEFAULT_PROMPT_TEMPLATE};
pub use shell::shell_quote;
