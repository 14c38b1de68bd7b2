//! sh for treefarm's purposes: quoting a value for `sh`, and a small sh-like
//! lexer that finds the words of a command's first simple command (quotes,
//! backslashes, operators, comments), used to check the agent's program.

/// Quotes `s` for `sh`: unchanged when it is made of safe characters only,
/// otherwise in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One word of a command line, and whether it held anything `sh` would expand
/// (`$`, a backquote, an unquoted glob or `{`), which makes it unknowable here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) expands: bool,
}

/// Splits the first simple command of `command` into words the way `sh` would,
/// stopping at the first unquoted operator (`;`, `&`, `|`, `<`, `>`, `(`,
/// `)`, newline) or `#` comment.
pub(crate) fn first_command_words(command: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    let mut current: Option<Word> = None;
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = current.take() {
                    words.push(w);
                }
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '\n' => break,
            '#' if current.is_none() => break,
            '\'' => {
                let w = current.get_or_insert_with(empty_word);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.text.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                let w = current.get_or_insert_with(empty_word);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => w.text.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.text.push('\\');
                                w.text.push(c);
                            }
                            None => return Err("unterminated double quote".to_string()),
                        },
                        Some(c) => {
                            if c == '$' || c == '`' {
                                w.expands = true;
                            }
                            w.text.push(c);
                        }
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => current.get_or_insert_with(empty_word).text.push(c),
                None => current.get_or_insert_with(empty_word).text.push('\\'),
            },
            c => {
                let w = current.get_or_insert_with(empty_word);
                if matches!(c, '$' | '`' | '*' | '?' | '[' | '{' | '~') {
                    w.expands = true;
                }
                w.text.push(c);
            }
        }
    }
    if let Some(w) = current.take() {
        words.push(w);
    }
    Ok(words)
}

fn empty_word() -> Word {
    Word {
        text: String::new(),
        expands: false,
    }
}

/// `NAME=value` with a valid shell name: an assignment, not the program.
pub(crate) fn is_assignment(word: &Word) -> bool {
    match word.text.split_once('=') {
        Some((name, _)) => {
            let mut chars = name.chars();
            matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// Substitutes `{id}`, `{spec}`, `{worktree}`, `{branch}` and `{target}` in an
/// agent command, shell-quoting each value.
pub fn substitute(command: &str, vars: &[(&str, &str)]) -> String {
    let mut out = command.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{name}}}"), &shell_quote(value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(command: &str) -> Vec<String> {
        first_command_words(command)
            .expect("parse")
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn lexer_handles_quotes_escapes_and_operators() {
        assert_eq!(
            words(r#"claude -p "$(cat {spec})" --x"#),
            ["claude", "-p", "$(cat {spec})", "--x"]
        );
        assert_eq!(words(r"'my agent' a\ b c"), ["my agent", "a b", "c"]);
        assert_eq!(words(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(words("run.sh && other"), ["run.sh"]);
        assert_eq!(words("  # only a comment"), Vec::<String>::new());
        assert_eq!(words(r#""a \" b""#), [r#"a " b"#]);
        assert!(first_command_words("'open").is_err());
        assert!(first_command_words("\"open").is_err());
    }

    #[test]
    fn shell_quote_round_trips_through_the_lexer() {
        for s in ["plain", "a b", "it's", "", "$HOME", "x\"y", "--flag=1"] {
            let quoted = shell_quote(s);
            assert_eq!(words(&format!("prog {quoted}")), ["prog", s], "{quoted}");
        }
        assert_eq!(shell_quote("--model"), "--model");
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn placeholders_are_substituted_quoted() {
        let cmd = substitute(
            r#"claude -p "$(cat {spec})" --id {id}"#,
            &[("spec", "/tmp/my specs/SPEC-1.md"), ("id", "020")],
        );
        assert_eq!(
            cmd,
            r#"claude -p "$(cat '/tmp/my specs/SPEC-1.md')" --id 020"#
        );
    }
}
