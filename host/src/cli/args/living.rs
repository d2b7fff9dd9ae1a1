//! The commands that work in an environment already up: ps, logs, exec,
//! attach, the terminal, run, gc, snapshots, env and port; stop, start, restart.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ProjectArgs, StackArgs, project_name};
use crate::engine::EngineKind;

#[derive(Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The stack file (here `--file` only: `-f` is `--follow`, as in `docker logs`).
    #[arg(long = "file", default_value = "stack.toml", value_name = "FILE")]
    pub file: PathBuf,
    /// Project name. Default: the stack's name.
    #[arg(short = 'p', long = "project", value_name = "NAME", value_parser = project_name)]
    pub project: Option<String>,
    /// The container engine the stack runs on. Default: the stack's
    /// `[stack] engine`, else docker.
    #[arg(long, value_enum, env = "PROVISION_ENGINE")]
    pub engine: Option<EngineKind>,
    /// Only these services (default: every one).
    pub services: Vec<String>,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines of each container.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,
    /// Only lines since a time: RFC 3339 (`2025-09-30T10:00:00Z`; without a
    /// zone, UTC), or a while ago (`10m`, `1h30m`).
    #[arg(long, value_name = "WHEN", value_parser = log_time)]
    pub since: Option<i64>,
    /// Only lines before a time, written as for --since.
    #[arg(long, value_name = "WHEN", value_parser = log_time)]
    pub until: Option<i64>,
    /// Start each line with the engine's time stamp of it.
    #[arg(short, long)]
    pub timestamps: bool,
}

/// `--since`/`--until` as Unix seconds: a time, or a while before now.
fn log_time(text: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now();
    let when = match humantime::parse_duration(text) {
        Ok(ago) => now.checked_sub(ago).ok_or("too long ago")?,
        Err(_) => {
            humantime::parse_rfc3339_weak(text).map_err(|_| format!("`{text}` is neither a time (2025-09-30T10:00:00Z) nor a while ago (10m, 2h)"))?
        }
    };
    let secs = when.duration_since(std::time::UNIX_EPOCH).map_err(|_| "before 1970")?.as_secs();
    Ok(secs as i64)
}

#[derive(Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Only these services (default: every one). Those that use them are
    /// left running: stop them too, or they lose their connections.
    pub services: Vec<String>,
    /// Seconds a container has to exit after SIGTERM, before SIGKILL.
    #[arg(short = 't', long, default_value_t = crate::engine::STOP_TIMEOUT_SECS, value_name = "SECS")]
    pub grace: u32,
}

#[derive(Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Only these services, and those they wait for (default: every one).
    pub services: Vec<String>,
    /// Give up when they are not ready after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// One JSON event per line on stdout instead of live progress (for CI).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub start: StartArgs,
    /// Seconds a container has to exit after SIGTERM, before SIGKILL.
    #[arg(short = 't', long, default_value_t = crate::engine::STOP_TIMEOUT_SECS, value_name = "SECS")]
    pub grace: u32,
}

#[derive(Args)]
pub struct CpArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// SERVICE:PATH or a path here.
    pub from: String,
    /// A path here or SERVICE:PATH.
    pub to: String,
    /// The container of the service (default: `server`, else the first by name).
    #[arg(short, long)]
    pub container: Option<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    pub service: String,
    /// The container of the service (default: `server`, else the first by name).
    #[arg(short, long)]
    pub container: Option<String>,
    /// Do not pass stdin: its output only.
    #[arg(long)]
    pub no_stdin: bool,
    /// The keys that detach (on a TTY), in Docker's notation.
    #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q", value_parser = crate::cli::attach::detach_keys)]
    pub detach_keys: String,
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    pub service: String,
    /// The container of the service (default: `server`, else the first by name).
    #[arg(short, long)]
    pub container: Option<String>,
    #[command(flatten)]
    pub terminal: TerminalArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// How a command in a container meets this terminal (`exec`, `run SERVICE`).
#[derive(Args)]
pub struct TerminalArgs {
    /// Pass stdin to the command. Default: when stdin is not a terminal
    /// (`provision exec db -- psql < dump.sql`), or on a TTY.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command on a terminal. Default: when stdin and stdout both
    /// are terminals (`provision exec db -- psql` is interactive).
    #[arg(short, long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never allocate a terminal (keeps stdout and stderr apart).
    #[arg(short = 'T', long)]
    pub no_tty: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Run a one-off container of this service in the project `up` made,
    /// instead of a fresh environment around a command here.
    pub service: Option<String>,
    /// Leave the environment running afterwards (it is then an ordinary
    /// project: `provision down -v -p NAME` removes it, gc never does).
    #[arg(long)]
    pub keep: bool,
    /// Give up when the stack is not ready after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// One JSON event per line on stdout (as `up --json`), then `run` and
    /// `exit` events; the command's own output goes to stdout as well.
    #[arg(long)]
    pub json: bool,
    /// Put this before every variable name, e.g. `--env-prefix TEST_` → TEST_DB_URL.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub env_prefix: String,
    /// Initialise new data from scratch: neither start from a data snapshot
    /// nor keep one (see `provision snapshots`).
    #[arg(long, env = "PROVISION_NO_SNAPSHOTS")]
    pub no_snapshots: bool,
    #[command(flatten)]
    pub terminal: TerminalArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct GcArgs {
    /// The container engine to clean.
    #[arg(long, value_enum, default_value_t, env = "PROVISION_ENGINE")]
    pub engine: EngineKind,
    /// Also remove runs' projects made longer ago than this (30m, 2h, 7d),
    /// even when their process still runs or ran on another machine.
    #[arg(long, value_name = "AGE", value_parser = crate::ephemeral::parse_age)]
    pub older_than: Option<std::time::Duration>,
    /// Also remove projects `up` made whose folder no longer exists on this
    /// machine (a checkout deleted without `provision down`), their volumes
    /// and data included.
    #[arg(long)]
    pub gone: bool,
    /// One JSON object per project removed.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotsCommand>,
    /// The container engine that keeps them.
    #[arg(long, value_enum, default_value_t, env = "PROVISION_ENGINE", global = true)]
    pub engine: EngineKind,
    /// One JSON object per snapshot (listed or removed).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum SnapshotsCommand {
    /// Remove snapshots: those named (by tag or key prefix), all, or those
    /// older than an age. A running container made from one keeps it until
    /// the container is removed.
    Rm {
        /// Tags (`provision-snapshot/postgres:3f9c…`) or key prefixes.
        #[arg(required_unless_present_any = ["all", "older_than"])]
        names: Vec<String>,
        /// Every snapshot.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Made longer ago than this (30m, 2h, 7d).
        #[arg(long, value_name = "AGE", value_parser = crate::ephemeral::parse_age, conflicts_with = "names")]
        older_than: Option<std::time::Duration>,
    },
}

#[derive(Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// sh (`export KEY='value'`), dotenv (`KEY=value`) or json.
    #[arg(long, value_enum, default_value_t = EnvFormat::Sh)]
    pub format: EnvFormat,
    /// Put this before every name, e.g. `--env-prefix TEST_` → TEST_DB_URL.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub env_prefix: String,
    /// Only these services (default: all).
    pub services: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    Sh,
    Dotenv,
    Json,
}

#[derive(Args)]
pub struct PortArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    pub service: String,
    /// The container port (default: the first the service publishes).
    pub port: Option<u16>,
    /// The container of the service (default: its main one).
    #[arg(short, long)]
    pub container: Option<String>,
}

impl LogsArgs {
    pub fn project_args(&self) -> ProjectArgs {
        ProjectArgs { file: self.file.clone(), project: self.project.clone(), engine: self.engine }
    }

    pub fn options(&self) -> crate::engine::LogOptions {
        crate::engine::LogOptions { follow: self.follow, tail: self.tail, since: self.since, until: self.until, timestamps: self.timestamps }
    }
}

#[cfg(test)]
mod tests {
    use super::log_time;

    #[test]
    fn a_log_time_is_a_moment_or_a_while_ago() {
        assert_eq!(log_time("2025-09-30T10:00:00Z"), Ok(1_759_226_400));
        assert_eq!(log_time("2025-09-30T10:00:00"), Ok(1_759_226_400), "without a zone: UTC");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let ago = log_time("10m").unwrap();
        assert!((now - 600 - ago).abs() <= 2, "{ago} vs {now}");
        assert!(log_time("yesterday").unwrap_err().contains("neither a time"));
    }
}
