//! One agent's job, assembled before its first attempt: the command with
//! its placeholders filled, the environment (within the kernel's limits on
//! its size), the prompt and the declared files written for it, and — when
//! the run is isolated — its Landlock policy and private `TMPDIR`.

use std::path::Path;

use crate::agents::substitute;
use crate::runner::agent::audit::private_git_dir;
use crate::runner::agent::executor::AgentJob;
use crate::runner::messages::Launch;
use crate::spec::Spec;
use crate::state::{RunDir, RunOptions};

/// The job of `spec`'s agent: command, environment, prompt, files, sandbox.
pub(crate) fn agent_job(
    opts: &RunOptions,
    dir: &RunDir,
    run_id: &str,
    spec: &Spec,
    worktree: &Path,
    launch: &Launch,
    port: u32,
) -> Result<AgentJob, String> {
    let branch = spec.branch();
    let spec_path = spec.path.display().to_string();
    let wt = worktree.display().to_string();
    let command = substitute(
        &opts.agent_command,
        &[
            ("id", &spec.id),
            ("spec", &spec_path),
            ("worktree", &wt),
            ("branch", &branch),
            ("target", &opts.target),
        ],
    );
    let _ = std::fs::create_dir_all(dir.instance_dir(&spec.id));
    let prompt_path = dir.prompt_path(&spec.id);
    let prompt = crate::agents::render_prompt(
        opts.prompt_template.as_deref(),
        &opts.prompt_context(spec, &branch, worktree),
    )
    .map_err(|e| crate::error::chain(&e))?;
    std::fs::write(&prompt_path, prompt)
        .map_err(|e| format!("failed to write prompt `{}`: {e}", prompt_path.display()))?;
    let files_path = dir.files_path(&spec.id);
    let files_list = spec.files.join("\n");
    std::fs::write(&files_path, format!("{files_list}\n")).map_err(|e| {
        format!(
            "failed to write the declared files to `{}`: {e}",
            files_path.display()
        )
    })?;
    let mut env: Vec<(String, String)> = vec![
        ("TREEFARM_RUN_ID".into(), run_id.to_string()),
        ("TREEFARM_RUN_DIR".into(), dir.path().display().to_string()),
        ("TREEFARM_SPEC_ID".into(), spec.id.clone()),
        ("TREEFARM_SPEC_FILE".into(), spec_path),
        ("TREEFARM_WORKTREE".into(), wt),
        ("TREEFARM_BRANCH".into(), branch),
        ("TREEFARM_TARGET".into(), opts.target.clone()),
        ("TREEFARM_BASE_COMMIT".into(), launch.start_commit.clone()),
        (
            "TREEFARM_FILES_FILE".into(),
            files_path.display().to_string(),
        ),
        (
            "TREEFARM_STATUS_FILE".into(),
            dir.status_path(&spec.id).display().to_string(),
        ),
        (
            "TREEFARM_PROMPT_FILE".into(),
            prompt_path.display().to_string(),
        ),
        (
            "TREEFARM_USAGE_FILE".into(),
            dir.instance_dir(&spec.id)
                .join(crate::agents::USAGE_FILE)
                .display()
                .to_string(),
        ),
        ("TREEFARM_SLOT".into(), launch.slot.to_string()),
        ("TREEFARM_PORT".into(), port.to_string()),
    ];
    // Before the configured env, so `agent.env` can still override it.
    if let Some((name, email)) = &opts.git_identity {
        env.extend(crate::agents::identity_env(name, email));
    }
    env.extend(opts.agent_env.iter().cloned());
    if !opts.slot_env.is_empty() {
        let cache = opts.cache_dir.clone().unwrap_or_else(|| {
            crate::runner::slot::caches::cache_dir(&opts.repo_root, |k| std::env::var(k).ok())
        });
        std::fs::create_dir_all(&cache).map_err(|e| {
            format!(
                "slot_env: cannot create the cache folder `{}`: {e}",
                cache.display()
            )
        })?;
        env.extend(crate::runner::slot::caches::slot_env(
            &opts.slot_env,
            launch.slot,
            &cache,
            &opts.repo_root,
        ));
    }
    let sandbox = match opts.isolation_active {
        Some(active) => Some(isolate(
            opts, dir, spec, worktree, port, active, &command, &mut env,
        )?),
        None => None,
    };
    if files_fit_in_env(&files_list, &env) {
        env.push(("TREEFARM_FILES".into(), files_list));
    }
    Ok(AgentJob {
        command,
        cwd: worktree.to_path_buf(),
        env,
        log_path: dir.log_path(&spec.id),
        status_path: dir.status_path(&spec.id),
        exit_path: dir.exit_path(&spec.id),
        timeout: opts.timeout(),
        idle_timeout: opts.idle_timeout(),
        grace: std::time::Duration::from_millis(opts.grace_ms),
        sandbox,
    })
}

/// The Landlock policy of one agent, and the environment that goes with it:
/// a private `TMPDIR`, the private git directory, `IS_SANDBOX=1`. The state
/// folders of the agent's CLI are created first when missing (Landlock can
/// only grant a path that exists).
#[allow(clippy::too_many_arguments)]
fn isolate(
    opts: &RunOptions,
    dir: &RunDir,
    spec: &Spec,
    worktree: &Path,
    port: u32,
    active: crate::isolation::Active,
    command: &str,
    env: &mut Vec<(String, String)>,
) -> Result<crate::isolation::Sandbox, String> {
    let instance_dir = dir.instance_dir(&spec.id);
    let tmp = instance_dir.join("tmp");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| format!("isolation: cannot create `{}`: {e}", tmp.display()))?;
    // The agent's environment as it will be: treefarm's own, then `env`.
    let agent_env: Vec<(String, String)> = std::env::vars().chain(env.iter().cloned()).collect();
    let home = agent_env
        .iter()
        .rev()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| std::path::PathBuf::from(v))
        .filter(|h| h.is_absolute());
    let program = opts
        .agent_preset
        .as_deref()
        .and_then(|name| crate::agents::preset(name).ok())
        .map(|p| p.program);
    let cli = crate::isolation::cli_of(program, command);
    if let Some(home) = &home {
        let state = crate::isolation::tool_state(cli, home, &agent_env);
        crate::isolation::prepare_tool_state(&state).map_err(|e| {
            format!(
                "isolation: cannot create the state of `{}` that its agent must write: {e} \
                 (create it yourself, or point the CLI's own variable elsewhere)",
                cli.unwrap_or("the agent")
            )
        })?;
    }
    let extra = if opts.slot_env.is_empty() {
        Vec::new()
    } else {
        opts.cache_dir.iter().cloned().collect()
    };
    let policy = crate::isolation::Policy::new(&crate::isolation::PolicyInputs {
        worktree,
        instance_dir: &instance_dir,
        home: home.as_deref(),
        repo_root: &opts.repo_root,
        allow_write: &opts.isolation.allow_write,
        allow_read: &opts.isolation.allow_read,
        cli,
        env: &agent_env,
        extra,
        ports: active.ports.then_some((port, u32::from(opts.port_stride))),
    });
    let git_dir = private_git_dir(dir, &spec.id);
    // Ahead of `agent.env`, so a configured value wins.
    let ours = [
        ("TMPDIR", tmp.display().to_string()),
        ("GIT_DIR", git_dir.display().to_string()),
        ("GIT_WORK_TREE", worktree.display().to_string()),
        ("IS_SANDBOX", "1".to_string()),
        ("TREEFARM_ISOLATED", "1".to_string()),
    ];
    let at = env
        .iter()
        .position(|(k, _)| k == "TREEFARM_PORT")
        .map_or(env.len(), |i| i + 1);
    env.splice(at..at, ours.into_iter().map(|(k, v)| (k.to_string(), v)));
    Ok(crate::isolation::Sandbox {
        abi: active.abi,
        policy,
    })
}

/// Linux's limit on one environment string, `NAME=value` (MAX_ARG_STRLEN).
const MAX_ENV_STRING: usize = 32 * 4096;
/// What the whole environment of an agent may take; the kernel allows
/// ARG_MAX (a quarter of the stack limit, 2 MiB by default) for arguments
/// and environment together, and the agent needs room for its own.
pub const ENV_BUDGET: usize = 1 << 20;

/// Size of an environment as the kernel counts it (`NAME=value\0` each).
pub fn env_size<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    vars.into_iter().map(|(k, v)| k.len() + v.len() + 2).sum()
}

/// Size of treefarm's own environment, which every agent inherits.
pub fn inherited_env_size() -> usize {
    std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum()
}

/// Whether `TREEFARM_FILES` (the newline-separated declared paths) can be
/// passed next to `env` without the agent failing to start (E2BIG). It is
/// left out when not; `TREEFARM_FILES_FILE` always names the same list.
pub fn files_fit_in_env(files: &str, env: &[(String, String)]) -> bool {
    let entry = env_size([("TREEFARM_FILES", files)]);
    let rest = inherited_env_size() + env_size(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    entry <= MAX_ENV_STRING && rest + entry <= ENV_BUDGET
}
