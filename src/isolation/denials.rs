//! Denials made visible: lines of an agent's log where a write failed with
//! `Permission denied` or `Read-only file system` on a path outside the
//! agent's rights — isolation said no, and the user should learn which path
//! to add to `isolation.allow_write`.

use std::path::Path;

use super::policy::Policy;

/// Absolute paths named on denial lines of `log` that `policy` does not let
/// the agent write, first occurrence order, without repeats.
pub fn denied_writes(log: &str, policy: &Policy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let lower = line.to_ascii_lowercase();
        let Some(at) = [
            "permission denied",
            "read-only file system",
            "operation not permitted",
        ]
        .iter()
        .filter_map(|phrase| lower.find(phrase))
        .min() else {
            continue;
        };
        // The path the error is about is the last one before the phrase
        // (`sh: 1: cannot create /x: Permission denied`, where a script path
        // may come first) or else the first after it (`Permission denied:
        // '/x'`, `EACCES: permission denied, open '/x'`).
        let (before, after) = line.split_at(at);
        let path = absolute_paths(before)
            .pop()
            .or_else(|| absolute_paths(after).into_iter().next());
        if let Some(path) = path {
            if !policy.allows(Path::new(&path)) && !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

/// "write to /a denied by isolation; write to /b …" (at most three named).
pub fn denial_summary(paths: &[String]) -> Option<String> {
    if paths.is_empty() {
        return None;
    }
    let mut text = paths
        .iter()
        .take(3)
        .map(|p| format!("write to {p} denied by isolation"))
        .collect::<Vec<_>>()
        .join("; ");
    if paths.len() > 3 {
        text.push_str(&format!(" (and {} more)", paths.len() - 3));
    }
    text.push_str(" (add to isolation.allow_write if the agent needs it)");
    Some(text)
}

/// Tokens of `line` that look like absolute paths, stripped of quotes and
/// trailing punctuation (`'/x/y':`, `"/x/y"`, `/x/y:`, `open(/x/y)`).
fn absolute_paths(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || "'\"`(),=".contains(c))
        .filter_map(|tok| {
            let tok = tok.trim_end_matches([':', ';', '.', ']', '[']);
            (tok.starts_with('/') && tok.len() > 1 && !tok.starts_with("//"))
                .then(|| tok.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn names_denied_paths_outside_the_policy_only() {
        let policy = Policy {
            write: vec![PathBuf::from("/w/020")],
            bind: None,
        };
        let log = "\
/tmp/t/agent.sh: 4: cannot create /repo/escape.txt: Permission denied
touch: cannot touch '/home/u/escape': Read-only file system
error: could not lock config file /repo/.git/config: Permission denied
cp: cannot create regular file '/w/020/x': Permission denied
touch: cannot touch '/home/u/escape': Permission denied
PermissionError: [Errno 13] Permission denied: '/etc/py'
Error: EACCES: permission denied, open '/etc/node'
all good /not/a/denial
";
        assert_eq!(
            denied_writes(log, &policy),
            vec![
                "/repo/escape.txt",
                "/home/u/escape",
                "/repo/.git/config",
                "/etc/py",
                "/etc/node"
            ]
        );
        let summary = denial_summary(&denied_writes(log, &policy)).unwrap();
        assert!(summary.starts_with("write to /repo/escape.txt denied by isolation"));
    }
}
