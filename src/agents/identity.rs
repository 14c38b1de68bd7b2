//! The git identity every agent commits as: exported as `GIT_AUTHOR_*` and
//! `GIT_COMMITTER_*`, so no CLI needs (or writes) one into the shared
//! `.git/config`.

/// Used when neither `agent.git_identity` nor the user's git config names one.
pub const DEFAULT_IDENTITY: (&str, &str) = ("treefarm agent", "agent@treefarm");

/// Splits `Name <email>` into its two parts; `None` when it is not of that
/// form (no angle brackets, an empty name or email, text after `>`).
pub fn parse_identity(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let open = text.find('<')?;
    let rest = text[open + 1..].strip_suffix('>')?;
    let name = text[..open].trim();
    let email = rest.trim();
    if name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
        return None;
    }
    Some((name.to_string(), email.to_string()))
}

/// The identity an agent runs with: the configured `agent.git_identity`,
/// else the user's own (`user_identity`, from their git config), else
/// [`DEFAULT_IDENTITY`].
pub fn agent_identity(
    configured: Option<&str>,
    user_identity: Option<(String, String)>,
) -> (String, String) {
    configured
        .and_then(parse_identity)
        .or(user_identity)
        .unwrap_or_else(|| {
            (
                DEFAULT_IDENTITY.0.to_string(),
                DEFAULT_IDENTITY.1.to_string(),
            )
        })
}

/// `GIT_AUTHOR_NAME`, `GIT_AUTHOR_EMAIL`, `GIT_COMMITTER_NAME`,
/// `GIT_COMMITTER_EMAIL` for `(name, email)`, and the same identity as
/// `user.name`/`user.email` through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/
/// `GIT_CONFIG_VALUE_n` (git 2.31+), so a CLI that asks `git config user.name`
/// before committing (aider does, and writes `Your Name` into the shared
/// `.git/config` when it finds none) finds one without any file changing.
pub fn identity_env(name: &str, email: &str) -> Vec<(String, String)> {
    [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
        ("GIT_CONFIG_COUNT", "2"),
        ("GIT_CONFIG_KEY_0", "user.name"),
        ("GIT_CONFIG_VALUE_0", name),
        ("GIT_CONFIG_KEY_1", "user.email"),
        ("GIT_CONFIG_VALUE_1", email),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_only_in_name_email_form() {
        assert_eq!(
            parse_identity(" Ada Lovelace <ada@example.org> "),
            Some(("Ada Lovelace".into(), "ada@example.org".into()))
        );
        for bad in [
            "ada@example.org",
            "<a@b>",
            "Ada <>",
            "Ada <a@b> x",
            "Ada <a<b>",
        ] {
            assert_eq!(parse_identity(bad), None, "{bad}");
        }
    }

    #[test]
    fn configured_beats_user_beats_default() {
        let user = Some(("U".to_string(), "u@x".to_string()));
        assert_eq!(
            agent_identity(Some("C <c@x>"), user.clone()),
            ("C".into(), "c@x".into())
        );
        assert_eq!(agent_identity(None, user), ("U".into(), "u@x".into()));
        assert_eq!(
            agent_identity(None, None),
            ("treefarm agent".into(), "agent@treefarm".into())
        );
    }
}
