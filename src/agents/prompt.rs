//! The prompts treefarm hands an agent, rendered from templates with
//! `{placeholder}`s: the task prompt (the spec's title and body plus the rules
//! of the game: declared files only, the branch, commit when done) and the
//! resolution prompt (`merge.on_conflict: agent`: conclude the merge of the
//! target that conflicted in the agent's worktree).

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
    render(template, "prompt template", PLACEHOLDERS, |name| {
        value(name, ctx)
    })
}

/// The template engine of both prompts: `lookup` gives a placeholder's value,
/// `None` for an unknown name (then an error naming it and `known`).
fn render(
    template: &str,
    what: &str,
    known: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InputError> {
    let mut out = String::with_capacity(template.len() + 1024);
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
            let Some(v) = lookup(name) else {
                return Err(unknown_placeholder(name, what, known));
            };
            out.push_str(&v);
            rest = &tail[name.len() + 2..];
            continue;
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn unknown_placeholder(name: &str, what: &str, known: &[&str]) -> InputError {
    InputError::new(format!("unknown placeholder `{{{name}}}` in the {what}")).with_hint(format!(
        "known placeholders: {}; write `{{{{` and `}}}}` for literal braces",
        known
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

fn bullets(items: &[String]) -> String {
    items
        .iter()
        .map(|f| format!("- `{f}`"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The name in `name}...` when it is a placeholder-shaped identifier.
fn placeholder_name(after_brace: &str) -> Option<&str> {
    let end = after_brace.find('}')?;
    let name = &after_brace[..end];
    let mut chars = name.chars();
    let first_ok = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic());
    (first_ok && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())).then_some(name)
}

fn value(name: &str, ctx: &PromptContext) -> Option<String> {
    Some(match name {
        "id" => ctx.id.to_string(),
        "title" => ctx.title.to_string(),
        "body" => ctx.body.trim_end().to_string(),
        "files" => bullets(ctx.files),
        "branch" => ctx.branch.to_string(),
        "target" => ctx.target.to_string(),
        "worktree" => ctx.worktree.display().to_string(),
        _ => return None,
    })
}

/// What the resolution prompt can refer to: the instance's spec and branch,
/// and the merge of the target that conflicted in its worktree.
#[derive(Debug, Clone, Copy)]
pub struct ResolveContext<'a> {
    /// `{id}` `{title}` `{body}` `{branch}` `{target}` `{worktree}`: as in
    /// the task prompt.
    pub task: PromptContext<'a>,
    /// `{conflicts}`: the conflicted paths, as a bulleted list.
    pub conflicts: &'a [String],
    /// `{commits}`: the target's commits the branch does not have (the other
    /// side of the merge), one `<short id> <subject>` per entry.
    pub commits: &'a [String],
}

/// The resolution prompt used unless `agent.resolve_prompt_template` gives
/// another one.
pub const DEFAULT_RESOLVE_PROMPT_TEMPLATE: &str = "\
# Resolve the merge conflict of {id}: {title}

Your branch `{branch}` conflicts with `{target}`, the branch it will be merged \
into. In the git worktree `{worktree}` a `git merge {target}` has been started and \
stopped on conflicts, exactly as git leaves it: conflict markers \
(`<<<<<<<`, `=======`, `>>>>>>>`) in the files, the conflicts in the index, \
`MERGE_HEAD` set.

Files with conflicts:
{conflicts}

Commits on `{target}` that your branch does not have yet (the other side):
{commits}

Resolve every conflict so that both your task and the changes on `{target}` are \
kept, remove all conflict markers, then conclude the merge with git: `git add` \
the resolved files, then `git commit --no-edit`. Do not abort the merge, do not \
rebase, do not push and do not switch branches. Change nothing beyond what the \
resolution needs.

Your original task, for reference:

{body}
";

const RESOLVE_PLACEHOLDERS: &[&str] = &[
    "id",
    "title",
    "body",
    "branch",
    "target",
    "worktree",
    "conflicts",
    "commits",
];

/// Renders the resolution prompt `template` (default:
/// [`DEFAULT_RESOLVE_PROMPT_TEMPLATE`]) for `ctx`, with the rules of
/// [`render_prompt`]; `{files}` is not known here (say `{conflicts}`).
pub fn render_resolve_prompt(
    template: Option<&str>,
    ctx: &ResolveContext,
) -> Result<String, InputError> {
    let template = template.unwrap_or(DEFAULT_RESOLVE_PROMPT_TEMPLATE);
    render(
        template,
        "resolve prompt template",
        RESOLVE_PLACEHOLDERS,
        |name| match name {
            "conflicts" => Some(bullets(ctx.conflicts)),
            "commits" if ctx.commits.is_empty() => Some("(none listed)".to_string()),
            "commits" => Some(
                ctx.commits
                    .iter()
                    .map(|c| format!("- {c}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            "files" => None,
            _ => value(name, &ctx.task),
        },
    )
}

/// The environment an agent rerun to resolve a conflict gets on top of its
/// usual one: `TREEFARM_MODE=resolve` and `TREEFARM_CONFLICT_FILES` (the
/// conflicted paths, one per line).
pub fn resolve_env(conflicts: &[String]) -> Vec<(String, String)> {
    vec![
        ("TREEFARM_MODE".to_string(), "resolve".to_string()),
        ("TREEFARM_CONFLICT_FILES".to_string(), conflicts.join("\n")),
    ]
}

/// Checks a resolution prompt template's placeholders (for config loading).
pub fn check_resolve_template(template: &str) -> Result<(), InputError> {
    let files: [String; 0] = [];
    let ctx = ResolveContext {
        task: PromptContext {
            id: "",
            title: "",
            body: "",
            files: &files,
            branch: "",
            target: "",
            worktree: Path::new(""),
        },
        conflicts: &[],
        commits: &[],
    };
    render_resolve_prompt(Some(template), &ctx).map(|_| ())
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

    #[test]
    fn default_resolve_prompt_names_target_files_and_commits() {
        let files = vec!["src/a.rs".to_string()];
        let conflicts = vec!["src/a.rs".to_string(), "README.md".to_string()];
        let commits = vec!["1a2b3c4 Retry less".to_string()];
        let rctx = ResolveContext {
            task: ctx(&files),
            conflicts: &conflicts,
            commits: &commits,
        };
        let prompt = render_resolve_prompt(None, &rctx).expect("render");
        assert!(prompt.starts_with("# Resolve the merge conflict of 020: Retry HTTP calls\n"));
        assert!(prompt.contains("conflicts with `roadmap`"), "{prompt}");
        assert!(prompt.contains("`git merge roadmap`"), "{prompt}");
        assert!(prompt.contains("- `src/a.rs`\n- `README.md`\n"), "{prompt}");
        assert!(prompt.contains("- 1a2b3c4 Retry less\n"), "{prompt}");
        assert!(prompt.contains("`/w/repo.treefarm/020`"), "{prompt}");
        assert!(prompt.contains("git commit --no-edit"), "{prompt}");
        assert!(prompt.contains("Add retries with {backoff}."), "{prompt}");
        let none = ResolveContext {
            commits: &[],
            ..rctx
        };
        assert!(render_resolve_prompt(None, &none)
            .expect("render")
            .contains("(none listed)"));
    }

    #[test]
    fn resolve_template_knows_its_own_placeholders() {
        let rctx = ResolveContext {
            task: ctx(&[]),
            conflicts: &["x".to_string()],
            commits: &[],
        };
        assert_eq!(
            render_resolve_prompt(Some("{target}|{conflicts}|{{files}}"), &rctx).expect("render"),
            "roadmap|- `x`|{files}"
        );
        let err = render_resolve_prompt(Some("{files}"), &rctx).expect_err("files");
        assert_eq!(
            err.message,
            "unknown placeholder `{files}` in the resolve prompt template"
        );
        assert!(err.hint.expect("hint").contains("{conflicts}"));
        assert!(check_resolve_template(DEFAULT_RESOLVE_PROMPT_TEMPLATE).is_ok());
        assert_eq!(
            resolve_env(&["a b.rs".to_string(), "c.rs".to_string()]),
            [
                ("TREEFARM_MODE".to_string(), "resolve".to_string()),
                (
                    "TREEFARM_CONFLICT_FILES".to_string(),
                    "a b.rs\nc.rs".to_string()
                )
            ]
        );
        assert!(check_resolve_template("{nope}").is_err());
    }
}
