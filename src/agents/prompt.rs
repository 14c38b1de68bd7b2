//! The prompt treefarm hands an agent: the spec's title and body plus the
//! rules of the game (declared files only, the branch, commit when done),
//! rendered from a template with `{placeholder}`s.

use std::path::Path;

use crate::error::InputError;

/// What a prompt template can refer to, for one instance.
#[derive(Debug, Clone, Copy)]
pub struct PromptContext<'a> {
    /// `{id}`: the spec id, e.g. `020`.
    pub id: &'a str,
    /// `{title}`: the spec title.
    pub title: &'a str,
    /// `{body}`: the spec body, the agent's instructions.
    pub body: &'a str,
    /// `{files}`: the declared paths and globs, rendered as a bulleted list.
    pub files: &'a [String],
    /// `{branch}`: the instance's branch, e.g. `treefarm/020`.
    pub branch: &'a str,
    /// `{target}`: the integration branch it will be merged into.
    pub target: &'a str,
    /// `{worktree}`: the instance's worktree.
    pub worktree: &'a Path,
}

/// The template used unless config gives another one.
pub const DEFAULT_PROMPT_TEMPLATE: &str = "\
# {id}: {title}

{body}

## Rules for this task

You are working in the git worktree `{worktree}`, on branch `{branch}`; it will be \
merged into `{target}` later. Other agents are working on other files at the same time.

Create or modify only these files (globs match any file under them):
{files}

Do not create or modify any other file.

When you are done, commit your work with git on branch `{branch}` \
(`git add` the files above, then `git commit`). Do not push and do not switch branches.
";

const PLACEHOLDERS: &[&str] = &[
    "id", "title", "body", "files", "branch", "target", "worktree",
];

/// Renders `template` (default: [`DEFAULT_PROMPT_TEMPLATE`]) for `ctx`.
///
/// `{id}` `{title}` `{body}` `{files}` `{branch}` `{target}` `{worktree}` are
/// replaced; `{{` and `}}` stand for literal braces; any other brace that does
/// not enclose a name is kept as is. An unknown `{name}` is an error naming it.
/// Values are inserted verbatim, never scanned for placeholders.
pub fn render_prompt(template: Option<&str>, ctx: &PromptContext) -> Result<String, InputError> {
    let template = template.unwrap_or(DEFAULT_PROMPT_TEMPLATE);
    let mut out = String::with_capacity(template.len() + ctx.body.len() + 256);
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(name) = tail.strip_prefix('{').and_then(placeholder_name) {
            out.push_str(&value(name, ctx)?);
            rest = &tail[name.len() + 2..];
            continue;
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The name in `name}...` when it is a placeholder-shaped identifier.
fn placeholder_name(after_brace: &str) -> Option<&str> {
    let end = after_brace.find('}')?;
    let name = &after_brace[..end];
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic());
    (first_ok && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())).then_some(name)
}

fn value(name: &str, ctx: &PromptContext) -> Result<String, InputError> {
    Ok(match name {
        "id" => ctx.id.to_string(),
        "title" => ctx.title.to_string(),
        "body" => ctx.body.trim_end().to_string(),
        "files" => ctx
            .files
            .iter()
            .map(|f| format!("- `{f}`"))
            .collect::<Vec<_>>()
            .join("\n"),
        "branch" => ctx.branch.to_string(),
        "target" => ctx.target.to_string(),
        "worktree" => ctx.worktree.display().to_string(),
        _ => {
            return Err(InputError::new(format!(
                "unknown placeholder `{{{name}}}` in the prompt template"
            ))
            .with_hint(format!(
                "known placeholders: {}; write `{{{{` and `}}}}` for literal braces",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(files: &'a [String]) -> PromptContext<'a> {
        PromptContext {
            id: "020",
            title: "Retry HTTP calls",
            body: "Add retries with {backoff}.\n\n```rust\nfn f() {}\n```\n\n",
            files,
            branch: "treefarm/020",
            target: "roadmap",
            worktree: Path::new("/w/repo.treefarm/020"),
        }
    }

    #[test]
    fn default_template_names_everything_the_agent_needs() {
        let files = vec!["src/http/retry.rs".to_string(), "tests/**".to_string()];
        let prompt = render_prompt(None, &ctx(&files)).expect("render");
        assert!(prompt.starts_with("# 020: Retry HTTP calls\n\nAdd retries with {backoff}."));
        assert!(prompt.contains("fn f() {}\n```\n\n## Rules"), "{prompt}");
        assert!(
            prompt.contains("- `src/http/retry.rs`\n- `tests/**`\n"),
            "{prompt}"
        );
        assert!(prompt.contains("Do not create or modify any other file."));
        assert!(prompt.contains("on branch `treefarm/020`"));
        assert!(prompt.contains("merged into `roadmap`"));
        assert!(prompt.contains("`/w/repo.treefarm/020`"));
        assert!(prompt.contains("commit your work with git"));
    }

    #[test]
    fn every_placeholder_is_replaced() {
        let files = vec!["a.rs".to_string()];
        let out = render_prompt(
            Some("{id}|{title}|{files}|{branch}|{target}|{worktree}|{body}"),
            &ctx(&files),
        )
        .expect("render");
        assert_eq!(
            out,
            "020|Retry HTTP calls|- `a.rs`|treefarm/020|roadmap|/w/repo.treefarm/020|\
             Add retries with {backoff}.\n\n```rust\nfn f() {}\n```"
        );
    }

    #[test]
    fn braces_escape_and_non_names_stay() {
        let out =
            render_prompt(Some("{{id}} {\"json\": 1} { } }{ {id"), &ctx(&[])).expect("render");
        assert_eq!(out, "{id} {\"json\": 1} { } }{ {id");
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = render_prompt(Some("do {task} now"), &ctx(&[])).expect_err("unknown");
        assert_eq!(
            err.message,
            "unknown placeholder `{task}` in the prompt template"
        );
        assert!(err.hint.expect("hint").contains("{files}"));
    }
}
