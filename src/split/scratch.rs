//! The scratch folder the agent works in, and what it is told: `REQUEST.md`
//! (the request), `FILES.txt` (every tracked path, one a line, so the prompt
//! never carries them), `EXISTING.json` (the current specs and their files),
//! `FORMAT.md` (the draft format with one example) and, from round 2,
//! `DIAGNOSTICS.md` (what treefarm found in the last round).

use std::path::Path;

use serde::Serialize;

use super::error::SplitError;
use super::names::IdMap;
use super::rules::{Findings, SplitLimits};
use crate::report::check::{write_check_human, write_diagnostics, CheckReport};

/// The scratch folder's name inside the throwaway worktree.
pub const SCRATCH_DIR: &str = ".treefarm-split";
/// The diagnostics of the last round, for the next one.
pub const DIAGNOSTICS_FILE: &str = "DIAGNOSTICS.md";
/// The draft format.
pub const FORMAT_FILE: &str = "FORMAT.md";

/// One existing spec, as `EXISTING.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ExistingSpec {
    pub id: String,
    pub title: String,
    pub path: String,
    pub files: Vec<String>,
    pub depends_on: Vec<String>,
}

/// What the scratch folder is made from.
#[derive(Debug, Clone, Copy)]
pub struct ScratchInputs<'a> {
    pub request: &'a str,
    /// Tracked at the base commit.
    pub tracked: &'a [String],
    pub existing: &'a [ExistingSpec],
}

const FORMAT: &str = r#"# The draft format

Write one Markdown file per unit of work directly in this folder, named
`SPEC-<name>-<slug>.md`: `<name>` is one word (letters, digits) unique among
your drafts, `<slug>` a few words joined by dashes. treefarm gives every
draft its real id and file name afterwards; you never choose ids.

Front matter (YAML between `---` lines):

- `title`: one line.
- `files`: every path the unit creates or modifies, relative to the
  repository root; globs (`src/http/**`) are allowed. Each path must be
  tracked (see `FILES.txt`) or listed under `creates`.
- `creates`: the paths among `files` that do not exist yet (new files or new
  folders). A path that exists must not be listed here.
- `depends_on` (optional): the `<name>` of drafts, or the id of existing specs
  (`EXISTING.json`), that must be merged before this unit starts. Avoid
  chains: units that can run side by side are the point of the split.
- `shared` (optional): paths the unit touches that may overlap another's
  (e.g. `Cargo.lock`); merged, not scheduled apart.

Two units must not declare the same file (or globs matching the same file),
nor a file an existing spec declares: overlapping units run one after the
other. The body is the worker's whole brief: what to do, self-contained, and
at the end how to verify the unit.

## Example: `SPEC-retry-http-retries.md`

```markdown
---
title: Retry failed HTTP requests with backoff
files:
  - src/http/retry.rs
  - src/http/mod.rs
creates:
  - src/http/retry.rs
depends_on: [config]
---
Add `src/http/retry.rs` with `retry(request, policy)`: up to
`policy.attempts` tries, exponential backoff from `policy.base_delay`,
retrying only on connection errors and 5xx. Export it from
`src/http/mod.rs`. Read the policy from the config added by the `config`
draft.

## Verify

`cargo test http::retry` passes, with tests for: success on the first try,
success after two failures, giving up after `attempts`.
```
"#;

/// Writes `REQUEST.md`, `FILES.txt`, `EXISTING.json` and `FORMAT.md` into
/// `dir` (created when missing).
pub fn write_scratch(dir: &Path, inputs: &ScratchInputs) -> Result<(), SplitError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| SplitError::io("create the scratch folder", dir, e))?;
    let write = |name: &str, text: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| SplitError::io("write", &path, e))
    };
    let mut request = inputs.request.trim_end().to_string();
    request.push('\n');
    write("REQUEST.md", request.as_bytes())?;
    let mut files = String::new();
    for t in inputs.tracked {
        files.push_str(t);
        files.push('\n');
    }
    write("FILES.txt", files.as_bytes())?;
    let path = dir.join("EXISTING.json");
    let json = serde_json::to_vec_pretty(&inputs.existing)
        .map_err(|source| SplitError::Json { path, source })?;
    write("EXISTING.json", &json)?;
    write(FORMAT_FILE, FORMAT.as_bytes())
}

/// The prompt a preset's CLI gets on stdin (`TREEFARM_PROMPT_FILE`).
pub fn split_prompt(dir: &Path, worktree: &Path, round: u32, limits: SplitLimits) -> String {
    let dir = dir.display();
    let worktree = worktree.display();
    let mut text = format!(
        "You are splitting one request into independent units of work for treefarm, which \
         will run one coding agent per unit, side by side, each in its own git worktree.\n\n\
         The repository is checked out at `{worktree}` (the current directory; read it, \
         never change it).\n\
         Your folder is {dir} (round {round}). Read there:\n\
         - REQUEST.md: the request to split;\n\
         - FORMAT.md: how to write a draft, with an example;\n\
         - FILES.txt: every file tracked in the repository;\n\
         - EXISTING.json: specs already planned, and their files: do not redo them, do not \
           declare their files.\n"
    );
    if round > 1 {
        // Self-contained: a preset's CLI continues its conversation of the
        // rounds before, but one that cannot (or a custom agent) starts cold
        // with this prompt alone.
        text.push_str(&format!(
            "- DIAGNOSTICS.md: what treefarm found wrong with your drafts of round {}, which are \
             still in the folder; fix every error and overlap it names (edit, add or remove \
             drafts).\n",
            round - 1
        ));
    }
    text.push_str(&format!(
        "\nRead the code you need to plan well, then write between {} and {} drafts \
         (`SPEC-<name>-<slug>.md`) in {dir}. Write nothing anywhere else: do not edit, create \
         or delete any other file, and do not commit. Every path you declare must exist in \
         FILES.txt or be listed under `creates:`. Stop when the drafts are written.\n",
        limits.min_specs, limits.max_specs
    ));
    text
}

/// `DIAGNOSTICS.md`: the ids the drafts were given, the split's findings,
/// then the text `check` prints and its JSON.
pub fn diagnostics_text(
    round: u32,
    ids: &IdMap,
    findings: &Findings,
    report: &CheckReport,
) -> String {
    let mut out = format!("# What treefarm found in round {round}\n\n");
    out.push_str("Your drafts and the ids treefarm gave them (check names them by id):\n\n");
    for (name, file, id) in &ids.pairs {
        out.push_str(&format!("- `{file}` (`{name}`) -> {id}\n"));
    }
    out.push_str("\n## To fix\n\n");
    if findings.is_clean() {
        out.push_str("Nothing: the split is valid.\n");
    }
    for d in &findings.errors {
        out.push_str(&format!("- {}\n", d.render().replace('\n', "\n  ")));
    }
    for o in &findings.overlaps {
        out.push_str(&format!(
            "- overlap: {} and {} both declare {} ({})\n  hint: give each file to one unit, or make one depend on the other\n",
            o.a,
            o.b,
            o.paths.join(", "),
            o.reason
        ));
    }
    for d in &findings.warnings {
        out.push_str(&format!("- {}\n", d.render().replace('\n', "\n  ")));
    }
    out.push_str("\n## `treefarm check`\n\n```\n");
    let mut text: Vec<u8> = Vec::new();
    let _ = write_diagnostics(&report.errors, &report.warnings, &mut text, false);
    let _ = write_check_human(report, &mut text, false);
    out.push_str(&String::from_utf8_lossy(&text));
    out.push_str("```\n\n## `treefarm check --json`\n\n```json\n");
    out.push_str(&serde_json::to_string_pretty(report).unwrap_or_default());
    out.push_str("\n```\n");
    out
}
