//! Denials made visible: lines of an agent's log where an access failed
//! with `Permission denied` or `Read-only file system` on a path outside the
//! agent's rights — isolation said no, and the user should learn which path
//! to add to `isolation.allow_write` (or, for a credential store it may not
//! read, `isolation.allow_read`).

use std::path::Path;

use super::policy::Policy;

/// What isolation refused an agent: a path, and whether it was a read (a
/// denied credential store) or a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Read(String),
    Write(String),
}

impl Denial {
    pub fn path(&self) -> &str {
        match self {
            Denial::Read(p) | Denial::Write(p) => p,
        }
    }
}

/// The denials named on lines of `log`: a path `policy` does not let the
/// agent read is a denied read, else one it does not let it write a denied
/// write; first occurrence order, without repeats.
pub fn denials(log: &str, policy: &Policy) -> Vec<Denial> {
    let mut out: Vec<Denial> = Vec::new();
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
        let Some(path) = path else { continue };
        let denial = if !policy.readable(Path::new(&path)) {
            Denial::Read(path)
        } else if !policy.allows(Path::new(&path)) {
            Denial::Write(path)
        } else {
            continue;
        };
        if !out.contains(&denial) {
            out.push(denial);
        }
    }
    out
}

/// "write to /a denied by isolation; read of /b …" (at most three named),
/// with the key that gives each kind back.
pub fn denial_summary(denials: &[Denial]) -> Option<String> {
    if denials.is_empty() {
        return None;
    }
    let mut text = denials
        .iter()
        .take(3)
        .map(|d| match d {
            Denial::Write(p) => format!("write to {p} denied by isolation"),
            Denial::Read(p) => format!("read of {p} denied by isolation"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if denials.len() > 3 {
        text.push_str(&format!(" (and {} more)", denials.len() - 3));
    }
    let keys: Vec<&str> = [
        denials
            .iter()
            .any(|d| matches!(d, Denial::Write(_)))
            .then_some("isolation.allow_write"),
        denials
            .iter()
            .any(|d| matches!(d, Denial::Read(_)))
            .then_some("isolation.allow_read"),
    ]
    .into_iter()
    .flatten()
    .collect();
    text.push_str(&format!(
        " (add to {} if the agent needs it)",
        keys.join(" or ")
    ));
    Some(text)
}

/// Tokens of `line` that look like absolute paths, stripped of quotes and
/// trailing punctuation (`'/x/y':`, `"/x/y"`, `‘/x/y’` of GNU tools in a
/// UTF-8 locale, `/x/y:`, `open(/x/y)`, `/x/y\` before an escaped quote in
/// a JSON event).
fn absolute_paths(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || "'\"`(),=‘’“”".contains(c))
        .filter_map(|tok| {
            let tok = tok.trim_end_matches([':', ';', '.', ']', '[', '\\']);
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
            deny_read: vec![PathBuf::from("/home/u/.aws")],
            allow_read: vec![],
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
cat: /home/u/.aws/credentials: Permission denied
[Claude Code] tool output: {\"type\":\"tool_result\",\"content\":\"mkdir: cannot create directory ‘/home/u/x’: Permission denied
all good /not/a/denial
";
        let w = |p: &str| Denial::Write(p.to_string());
        assert_eq!(
            denials(log, &policy),
            vec![
                w("/repo/escape.txt"),
                w("/home/u/escape"),
                w("/repo/.git/config"),
                w("/etc/py"),
                w("/etc/node"),
                Denial::Read("/home/u/.aws/credentials".to_string()),
                w("/home/u/x"),
            ]
        );
        let summary = denial_summary(&denials(log, &policy)).unwrap();
        assert!(summary.starts_with("write to /repo/escape.txt denied by isolation"));
        assert!(
            summary.ends_with(
                "(add to isolation.allow_write or isolation.allow_read if the agent needs it)"
            ),
            "{summary}"
        );
        let read = denial_summary(&denials(log, &policy)[5..6]).unwrap();
        assert_eq!(
            read,
            "read of /home/u/.aws/credentials denied by isolation \
             (add to isolation.allow_read if the agent needs it)"
        );
    }
}
