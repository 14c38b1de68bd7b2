//! The live view on a real terminal: `treefarm run` in a pseudo-terminal of
//! 5 rows (util-linux `script`), with twice as many specs as slots, so the
//! running ones alone fill the screen and a merge gate (`sleep`) keeps a
//! merge queue. Every redraw erases at most 4 lines (the block fits the
//! screen), finished and extra running instances collapse into counts, the
//! merge queue is shown, and nothing live is drawn once the final table
//! starts.

use crate::common;

use std::process::Command;

use common::TestRepo;

const ROWS: usize = 5;
const COLS: usize = 70;

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

/// The line counts of every `ESC [ n F` (cursor up n lines: the redraw
/// erasing a block of n lines) in `out`.
fn erased_blocks(out: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut rest = out;
    while let Some(i) = rest.find("\x1b[") {
        rest = &rest[i + 2..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with('F') {
            counts.push(digits.parse().expect("digits"));
        }
    }
    counts
}

#[test]
fn live_view_fits_a_five_row_terminal_and_stops_before_the_table() {
    if !which("script") || !which("stty") {
        println!(
            "SKIPPED: util-linux `script` and `stty` are needed to run treefarm in a terminal"
        );
        return;
    }
    let specs: Vec<(String, String)> = (1..=8)
        .map(|i| {
            (
                format!("SPEC-{i:03}-x.md"),
                format!(
                    "# Spec {i}\n\n**Files**:\n- `f{i}.txt`\n\n```demo-agent\nsleep 1\nwrite f{i}.txt hi\ncommit \"spec {i}\"\n```\n"
                ),
            )
        })
        .collect();
    let spec_refs: Vec<(&str, String)> =
        specs.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
    let repo = TestRepo::farm(
        &[("README.md", "r\n")],
        &spec_refs,
        "instances: 4\nmerge:\n  gate: sleep 0.3\n",
    );
    let command = format!(
        "stty rows {ROWS} cols {COLS} && exec '{}' run",
        env!("CARGO_BIN_EXE_treefarm")
    );
    let mut cmd = Command::new("script");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .current_dir(&repo.root);
    common::isolated_env(&mut cmd, &repo.home);
    let out = cmd.output().expect("run script");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "run failed: {}\n{text}", out.status);

    let blocks = erased_blocks(&text);
    assert!(!blocks.is_empty(), "no live block was drawn:\n{text}");
    assert!(
        blocks.iter().all(|&n| n < ROWS),
        "a live block taller than the {ROWS}-row screen: {blocks:?}\n{text}"
    );
    assert!(
        text.contains("more running"),
        "running ones collapse:\n{text}"
    );
    assert!(
        text.contains("merge queue: "),
        "the merge queue is shown:\n{text}"
    );
    assert!(
        text.contains(" finished ("),
        "finished ones are counted:\n{text}"
    );

    let table = text
        .find("  spec     result")
        .unwrap_or_else(|| panic!("no final table:\n{text}"));
    let after = &text[table..];
    assert!(
        erased_blocks(after).is_empty(),
        "redrawn after the table:\n{after}"
    );
    for live in ["more running", "merge queue", " waiting\n", " finished ("] {
        assert!(
            !after.contains(live),
            "live line `{live}` in the table:\n{after}"
        );
    }
    assert!(after.contains("8 merged"), "{after}");
}
