//! `treefarm check`: the overlap report of the valid selected specs together
//! with every diagnostic, and `check --explain SPEC`.
//!
//! Exit codes: 2 when a selected spec is invalid (with `--strict`, when there
//! is any warning), else 3 when valid specs overlap, else 0. With no ids every
//! spec is checked and the report is still complete when some are invalid.

use std::io::Write;

use crate::cli::commands::{overlaps_of, spec_folder, write_json};
use crate::cli::context::Ctx;
use crate::error::{ExitCode, InputError};
use crate::report::check::{
    write_check_human, write_diagnostics, write_explain_human, CheckReport, CheckSpec,
    ExplainReport, InvalidSpec,
};
use crate::spec::{Diagnostic, Level};

/// What `check` was asked.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub ids: Vec<String>,
    pub json: bool,
    /// Warnings count as errors.
    pub strict: bool,
    /// Explain how this spec was read instead of checking overlaps.
    pub explain: Option<String>,
}

pub fn check(
    ctx: &Ctx,
    opts: &CheckOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let folder = spec_folder(ctx)?;
    let color = crate::report::human::stderr_color();
    if let Some(name) = &opts.explain {
        return explain(&folder, name, opts, out, err, color);
    }
    let (_, report) = evaluate(ctx, &folder, opts)?;
    if opts.json {
        write_json(out, &report)?;
    } else {
        write_diagnostics(&report.errors, &report.warnings, err, color)?;
        write_check_human(&report, err, color)?;
    }
    Ok(exit_code(&report))
}

/// 2 when a checked spec is invalid, else 3 when valid specs overlap, else 0.
pub(crate) fn exit_code(report: &CheckReport) -> ExitCode {
    if !report.errors.is_empty() {
        ExitCode::BadInput
    } else if !report.independent {
        ExitCode::Overlaps
    } else {
        ExitCode::Success
    }
}

/// The valid selected specs and the check report (their overlaps and every
/// diagnostic), shared by the table, `--json` and the graph formats.
pub(crate) fn evaluate(
    ctx: &Ctx,
    folder: &crate::spec::SpecFolder,
    opts: &CheckOptions,
) -> anyhow::Result<(Vec<crate::spec::Spec>, CheckReport)> {
    let chosen = folder.select(&opts.ids).map_err(InputError::from)?;
    let mut diagnostics = chosen.diagnostics.clone();
    if opts.strict {
        for d in &mut diagnostics {
            d.level = Level::Error;
        }
    }
    let bad: std::collections::HashSet<&str> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .filter_map(|d| d.spec_path.as_deref())
        .collect();
    let specs: Vec<_> = chosen
        .specs
        .iter()
        .filter(|s| !bad.contains(s.rel_path.as_str()))
        .cloned()
        .collect();
    // Every selected entry that is not checked is invalid: an error of its
    // own, or one of the selection (`plan` and `run` refuse it alike).
    let checked: std::collections::HashSet<&str> =
        specs.iter().map(|s| s.rel_path.as_str()).collect();
    let invalid: Vec<InvalidSpec> = chosen
        .entries
        .iter()
        .map(|&i| &folder.entries[i])
        .filter(|e| !checked.contains(e.rel_path.as_str()))
        .map(|e| InvalidSpec {
            id: e.raw.id.clone(),
            path: e.rel_path.clone(),
        })
        .collect();
    let (_, overlaps) = overlaps_of(ctx, &specs)?;
    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) =
        diagnostics.into_iter().partition(Diagnostic::is_error);
    let report = CheckReport {
        independent: overlaps.is_empty(),
        specs: specs
            .iter()
            .map(|s| CheckSpec {
                id: s.id.clone(),
                title: s.title.clone(),
                priority: s.priority,
                path: s.rel_path.clone(),
                files: s.files.clone(),
            })
            .collect(),
        overlaps,
        errors,
        warnings,
        invalid,
    };
    Ok((specs, report))
}

fn explain(
    folder: &crate::spec::SpecFolder,
    name: &str,
    opts: &CheckOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    color: bool,
) -> anyhow::Result<ExitCode> {
    let i = folder.find(name).map_err(InputError::from)?;
    let entry = &folder.entries[i];
    let mut diagnostics: Vec<Diagnostic> = folder
        .diagnostics
        .iter()
        .filter(|d| d.spec_path.as_deref() == Some(entry.rel_path.as_str()))
        .cloned()
        .collect();
    if opts.strict {
        for d in &mut diagnostics {
            d.level = Level::Error;
        }
    }
    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) =
        diagnostics.into_iter().partition(Diagnostic::is_error);
    let spec = entry.spec.map(|s| &folder.set.specs[s]);
    let report = ExplainReport {
        id: entry.raw.id.clone(),
        title: entry.raw.title.clone(),
        path: entry.rel_path.clone(),
        valid: errors.is_empty(),
        declared: entry.raw.files.clone(),
        mentioned: entry.raw.mentions.clone(),
        depends_on: match spec {
            Some(s) => s.depends_on.clone(),
            None => entry
                .raw
                .depends_on
                .iter()
                .map(|d| d.value.clone())
                .collect(),
        },
        priority: spec.map(|s| s.priority).or(entry.raw.priority),
        errors,
        warnings,
    };
    if opts.json {
        write_json(out, &report)?;
    } else {
        write_explain_human(&report, err, color)?;
    }
    Ok(if report.valid {
        ExitCode::Success
    } else {
        ExitCode::BadInput
    })
}
