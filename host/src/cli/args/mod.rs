//! The command line's shape: every command, flag and its help text (clap).
//! Must not do anything: each command's module does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::EngineKind;

mod living;
pub use living::*;

#[derive(Parser)]
#[command(
    name = "provision",
    version,
    about = "Stand up whole development, test and CI environments from one stack.toml",
    long_about = "Stand up whole development, test and CI environments from one stack.toml.\n\n\
        Each service in stack.toml is planned by a plugin (a sandboxed WebAssembly component): \
        postgres, redis, rails, sidekiq, nginx, monitoring and container (any image or Dockerfile) are built in; \
        load your own from a path or an OCI registry (pinned in stack.lock). Every service also takes the host's options \
        (networks, replicas, restart, publish, after, profiles, env, volumes, user, resources, hooks), and every string \
        may use ${VAR} from the environment or .env. \
        `up` applies the plan to a Docker engine (DOCKER_HOST, or the default socket).",
    after_help = "Examples:\n  provision up                        bring up ./stack.toml and wait until every service is ready\n  \
        provision plan                      show what the stack needs and what `up` would change\n  \
        provision up --profile test --json  for CI: test profile, one JSON event per line\n  \
        provision up --profile test -p ci-42  the test profile as a second project beside dev\n  \
        REPLICAS=5 provision up             with replicas = \"${REPLICAS:-3}\" in stack.toml: scale to 5\n  \
        provision exec db -- psql -U app -c 'select 1'\n  \
        provision run --profile ci -- cargo test   a fresh environment around the tests, removed after\n  \
        provision down -v                   remove everything, named volumes too"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show the desired state (every container, task, volume and output the
    /// plugins ask for) and, when an engine answers, what `up` would create,
    /// recreate (and why) or keep.
    Plan(PlanArgs),
    /// Write the stack as a Compose file (`docker compose up --wait` brings
    /// the same containers up): every container, task (a one-shot service
    /// waited for), hook (`post_start`), health check, volume, network and
    /// file (`configs`), secrets as ${VARIABLES}. What Compose says
    /// differently is listed in the file's header.
    #[command(after_help = "Examples:
  provision export > docker-compose.yml
  provision export --profile test -o compose.test.yml --with-secrets   also writes .env beside it")]
    Export(ExportArgs),
    /// Turn a Compose project into a stack.toml, and report what became of
    /// every key: mapped, approximated (how) or dropped (why). Files are read
    /// as `docker compose config` reads them: several -f merged in order,
    /// ${VAR} from the environment and .env (or --env-file), anchors and `<<`
    /// merge keys, `extends`, `include`, `!reset`/`!override`. postgres and redis
    /// images become the built-ins when their config says everything (-c
    /// settings → tuning, init scripts → init, --maxmemory …); everything else
    /// becomes a `container`. Powers (privileged, capabilities, host network
    /// or pid, devices, the Docker socket, binds outside the project) are kept
    /// with the `allow` entry they need and listed. Environment values are
    /// written as they are in the compose file, so `${DB_PASSWORD}` stays a
    /// variable read from .env when the stack runs.
    #[command(after_help = "Examples:
  provision import                          ./compose.yaml (+ compose.override.yaml) → ./stack.toml
  provision import -f docker-compose.yml -f docker-compose.prod.yml -o prod/stack.toml
  provision import --profile debug --json   only the services of that profile; the report as JSON
  provision import --strict -o -            print stack.toml; exit 1 if any key would be dropped")]
    Import(ImportArgs),
    /// Create or update the environment and wait until every service is
    /// ready. Unchanged services are kept; services removed from the stack
    /// are removed. With services named, only those and what they wait for.
    #[command(after_help = "Examples:
  provision up                  the whole stack
  provision up web              web and what it uses (its database, a migration); nothing else
  provision up --profile test   the test profile's services and settings")]
    Up(UpArgs),
    /// Bring the stack up as `up` does, then watch the project's files and
    /// act on each change as its service's watch rules say: `sync` copies
    /// the files into the container, `restart` restarts it and waits until
    /// it is ready, `rebuild` builds the image again and recreates what
    /// uses it, `rerun` runs one of its tasks again, `exec` runs a command
    /// in it. Plugins bring rules (rails: a changed Gemfile.lock runs
    /// `bundle` and restarts the app and its Sidekiq workers; app/ needs
    /// nothing, Rails reloads it); `watch = [...]` in a service of
    /// stack.toml adds rules or replaces the plugin's for a path. A burst
    /// of changes is one action per service; a service never has two at
    /// once. Ctrl-C stops watching; the stack keeps running.
    #[command(after_help = "Examples:
  provision watch                 the whole stack
  provision watch web             web and what it uses; only web's rules
  provision watch --json          one JSON event per line: up's, then each action's
  provision up --watch            the same as `provision watch`

In stack.toml (paths relative to its folder; a folder ends in /):
  [services.api]
  plugin = \"container\"
  build = \"api\"
  watch = [
    { path = \"api/src/\", action = \"sync\", target = \"/app/src\", ignore = [\"*.pyc\"] },
    { path = \"api/requirements.txt\", action = \"rebuild\" },
    { path = \"api/config/\", action = \"restart\" },
    { path = \"api/Gemfile.lock\", action = [\"rerun\", \"restart\"], task = \"bundle\" },
    { path = \"nginx/certs/\", action = \"exec\", command = \"nginx -s reload\" },
    { path = \"api/docs/\", action = \"none\" },
  ]")]
    Watch(UpArgs),
    /// Build the images of services with a Dockerfile, as `up` would,
    /// starting nothing: an image whose inputs (the context's files, the
    /// Dockerfile, its args) have not changed is kept, unless --no-cache.
    /// The next `up` recreates what runs an image that changed.
    #[command(after_help = "Examples:
  provision build              every service with a build
  provision build web          web's image (and those of what it uses)
  provision build --no-cache   again from nothing, no layer reused (a base image or apt cache gone stale)")]
    Build(BuildArgs),
    /// Remove the project's containers and networks. Named volumes (your
    /// data) are kept unless you pass -v.
    Down(DownArgs),
    /// Stop services, keeping their containers (and data) for `start`.
    /// Dependents stop before what they use.
    #[command(after_help = "Examples:
  provision stop            the whole stack
  provision stop worker     one service; `provision start worker` brings it back")]
    Stop(StopArgs),
    /// Start stopped services again, in dependency order, and wait until
    /// they are ready: health checks pass and start hooks (a database
    /// password, say) run again. Nothing is created: a service that changed
    /// since `up` is refused (`provision up SERVICE` recreates it).
    Start(StartArgs),
    /// Stop services and start them again as `start` does, keeping their
    /// containers: for a changed .env or config read at boot.
    #[command(after_help = "Examples:
  provision restart web worker   both, each ready again before it returns")]
    Restart(RestartArgs),
    /// List the project's containers with their state.
    Ps(PsArgs),
    /// Print the logs of the project's containers (or one service's).
    Logs(LogsArgs),
    /// Resolve every plugin (and, when an engine answers, every image) and
    /// write stack.lock next to stack.toml. Commit it; CI runs `up --locked`.
    Lock(LockArgs),
    /// Publish, fetch and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a command in a service's container, e.g. `provision exec db -- psql -c 'select 1'`.
    /// Its exit code is provision's. Piped input reaches it (`provision exec db -- psql < dump.sql`);
    /// at a terminal it gets one (interactive psql, a shell).
    Exec(ExecArgs),
    /// Attach this terminal to a service's main process (byebug, pry, pdb
    /// at a breakpoint), as `docker attach` does: ctrl-p ctrl-q detaches
    /// and leaves it running. It types into the process when the service
    /// has `stdin_open = true` (and `tty = true` for a terminal), else
    /// shows its output.
    #[command(after_help = "Example, for byebug in a Rails app:
  [services.web]                          in stack.toml, then `provision up web`
  stdin_open = true
  tty = true
  provision attach web                    the server's output; at a breakpoint, its prompt")]
    Attach(AttachArgs),
    /// Copy files between a service's container and this machine, as
    /// `docker cp` does: a file, or a folder with all it holds. Out of a
    /// container only regular files and folders are written here (no link,
    /// device or name outside LOCAL); into one, links are not followed and
    /// `.provision/` (the project's secret key) stays here.
    #[command(after_help = "Examples:
  provision cp db:/tmp/dump.sql .          the dump, here, as ./dump.sql
  provision cp web:/app/log ./logs         the folder's files into ./logs
  provision cp seed.sql db:/tmp/           here to there, as /tmp/seed.sql")]
    Cp(CpArgs),
    /// Print how to reach the running project's services from this machine:
    /// every output (`DB_URL`, `DB_HOST`, `DB_PORT`, `CACHE_URL`…) with
    /// container addresses swapped for the ports published on 127.0.0.1.
    /// Secrets included: it exists to hand them over. `eval "$(provision env)"`.
    Env(EnvArgs),
    /// Print where a service's port is published: `127.0.0.1:PORT`.
    Port(PortArgs),
    /// Run a command against a fresh environment, then remove it:
    /// `provision run -- cargo test`. Brings the stack up as a new project,
    /// waits until it is ready, runs the command here with every output in
    /// its environment (as `provision env` prints them), and removes all
    /// of it, volumes too, whatever happens (unless --keep). Exit code: the
    /// command's; 125 when the environment itself failed.
    ///
    /// With a service, `provision run web -- bin/rails db:seed` runs a
    /// one-off container of a project that is up (its image, env, mounts
    /// and networks), removed when the command ends.
    #[command(after_help = "Exit codes:
          N    the command's own exit code (128+S when signal S ended it)
          125  the environment failed: the stack is invalid, the engine did not answer, or a service did not become ready
               (its log tail is printed); everything made was removed
          126  the command could not be run (not executable)
          127  the command was not found
          130  interrupted (Ctrl-C, SIGINT), 143: terminated (SIGTERM); everything made was removed

        Project name: -p NAME, else STACK-ci<JOB ID>-XXXX when a CI job id is set (GITHUB_RUN_ID, CI_JOB_ID,         BUILDKITE_JOB_ID, CIRCLE_WORKFLOW_JOB_ID, BUILD_NUMBER), else STACK-run-XXXXXX.

        Examples:
          provision run -- cargo test
          provision run --profile ci --locked --json -- pytest -x
          provision run --env-prefix TEST_ -- ./integration.sh   TEST_DB_URL, TEST_CACHE_URL…
          provision run web -- bin/rails db:seed                 a one-off in the project `up` made")]
    Run(RunArgs),
    /// Remove what interrupted runs left: every project `provision run`
    /// made whose process is gone (killed, or its machine rebooted), and
    /// with --older-than any older run's. A project `up` made goes only with
    /// --gone, once its folder no longer exists.
    Gc(GcArgs),
    /// List the data snapshots on the engine, or remove them (`rm`). The
    /// first `up` of a database keeps its initialised data (initdb, init
    /// scripts, extensions) as a snapshot; a later `up` that needs new data
    /// (a new project, a CI run, `down -v`) starts from a copy in a fraction
    /// of the time. Each is keyed on every input of that data, so a changed
    /// init script or image makes a new one; `snapshot = false` in a
    /// service, or `--no-snapshots`, turns them off.
    #[command(after_help = "Examples:
  provision snapshots                      list them, newest first
  provision snapshots rm --older-than 7d   remove those made over a week ago
  provision snapshots rm --all")]
    Snapshots(SnapshotsArgs),
    /// Print provision's version and the plugin contract versions it loads.
    Version,
}

#[derive(Args)]
pub struct ProjectArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", default_value = "stack.toml", value_name = "FILE", global = true)]
    pub file: PathBuf,
    /// Project name: identifies this environment on the engine. Default: the
    /// stack's name (inside `provision run`, the run's project).
    #[arg(short = 'p', long = "project", value_name = "NAME", global = true, value_parser = project_name, env = "PROVISION_PROJECT")]
    pub project: Option<String>,
    /// The container engine to run the stack on. Default: the stack's
    /// `[stack] engine`, else docker.
    #[arg(long, value_enum, env = "PROVISION_ENGINE", global = true)]
    pub engine: Option<EngineKind>,
}

#[derive(Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Profile to plan for: dev, test, ci, prod or your own. It picks the
    /// services that exist (`profiles = [...]`) and the overrides merged in
    /// (`[services.NAME.profiles.PROFILE]`). Repeat it (or `--profile
    /// test,debug`) for several at once: a service in any of them exists,
    /// and the first is the one plugins are told. Default: the stack's
    /// `profile`, else dev.
    #[arg(long, value_name = "NAME", env = "PROVISION_PROFILE", value_delimiter = ',')]
    pub profile: Vec<String>,
    /// A file with an [images] table mapping image references to substitutes
    /// (added to the stack's own [images]), e.g. for mirrors or air-gapped CI.
    #[arg(long, value_name = "FILE", env = "PROVISION_IMAGES")]
    pub images: Option<PathBuf>,
    /// Also print what plugins logged below warning level.
    #[arg(short, long)]
    pub verbose: bool,
    /// Refuse to go on unless stack.lock matches the stack: plugins and their
    /// digests (checked before the engine is touched), then images. For CI.
    #[arg(long)]
    pub locked: bool,
    /// Every published port a free one, as in the test and ci profiles
    /// (set by `run`, whose environment is its own).
    #[arg(skip)]
    pub ephemeral_ports: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Write it here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the secrets' values to `.env` beside the file (mode 600),
    /// where compose reads them; without it, set the variables yourself.
    #[arg(long, requires = "output")]
    pub with_secrets: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A compose file; repeat to merge overrides in order. Default: compose.yaml
    /// (or docker-compose.yml …) here, and its override file when present.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Variables for ${VAR} from this file instead of the project's .env.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// The stack's name (compose's -p): default the compose file's `name`,
    /// else its folder's.
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// A compose profile to activate, as `docker compose --profile`
    /// (repeatable, or a,b); default: COMPOSE_PROFILES from the environment
    /// or .env. Every service is kept with its `profiles`; the active ones
    /// are written as `[stack] profile = ["dev", …]`, so `provision up`
    /// runs what `docker compose up` would.
    #[arg(long = "profile", value_name = "NAME", value_delimiter = ',')]
    pub profiles: Vec<String>,
    /// Where to write stack.toml ("-": standard output). Default: stack.toml
    /// beside the first compose file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON (every key path with its status).
    #[arg(long)]
    pub json: bool,
    /// Write nothing and exit 1 if any key would be dropped, or any power
    /// the compose file asks for (the Docker socket, privileged…) is not
    /// granted with --grant: the stack would not be the project, or not plan.
    #[arg(long)]
    pub strict: bool,
    /// Grant the powers the compose file asks for (privileged, capabilities,
    /// host network or pid, devices, the Docker socket, binds outside the
    /// project) by writing their `allow` entries. Without it none is
    /// written: the stack names each and does not plan until you grant it.
    #[arg(long)]
    pub grant: bool,
    /// Only print the compose project as provision reads it (merged,
    /// interpolated, short forms made long) as JSON, like `docker compose
    /// config`; nothing is mapped or written.
    #[arg(long, conflicts_with_all = ["strict", "json", "output"])]
    pub config: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Print the full desired state as JSON (with each container's spec hash).
    #[arg(long)]
    pub json: bool,
    /// Print secrets (generated passwords, secret outputs) instead of masking them.
    #[arg(long)]
    pub show_secrets: bool,
    /// Print how long resolving, loading and calling each plugin took (to stderr).
    #[arg(long)]
    pub timings: bool,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Give up when the stack is not ready after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// One JSON event per line on stdout instead of live progress (for CI).
    #[arg(long)]
    pub json: bool,
    /// Initialise new data from scratch: neither start from a data snapshot
    /// nor keep one (see `provision snapshots`).
    #[arg(long, env = "PROVISION_NO_SNAPSHOTS")]
    pub no_snapshots: bool,
    /// Only these services, and those they wait for; the project's other
    /// containers are neither changed nor removed.
    pub services: Vec<String>,
    /// Then watch the project's files and act on changes by each service's
    /// watch rules (as `provision watch`).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Build again from nothing, reusing no layer of an earlier build.
    #[arg(long)]
    pub no_cache: bool,
    /// Only these services, and those they wait for (default: every one).
    pub services: Vec<String>,
}

#[derive(Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Start a new plugin: a standalone Rust crate with the contract's WIT,
    /// a typed config, a README and a test fixture.
    New {
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 (adding the target if missing)
    /// and check the component: contract export, info, config schema.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build, then plan every tests/*.toml fixture without Docker and compare
    /// with tests/*.plan.json.
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the golden files from the current plans.
        #[arg(long)]
        bless: bool,
    },
    /// Publish a component to an OCI registry as REPOSITORY:VERSION (the tag
    /// must be the plugin's own semver version).
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// e.g. ghcr.io/acme/postgres:1.2.0
        reference: String,
    },
    /// Fetch a plugin (REPOSITORY:VERSION, or REPOSITORY@REQUIREMENT) into
    /// the local cache, checking its digest, and print where it is.
    Pull { reference: String },
    /// Show what the stack's plugins resolve to and from where.
    Ls(LockArgs),
}

#[derive(Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Also remove the project's named volumes (its data).
    #[arg(short = 'v', long)]
    pub volumes: bool,
}

fn project_name(name: &str) -> Result<String, String> {
    if crate::stack::valid_name(name) {
        Ok(name.to_string())
    } else {
        Err("use lower-case letters, digits and `-` (not `_`), starting with a letter or digit, at most 63".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_dash_f_follows_as_in_docker_logs() {
        let Command::Logs(args) = Cli::try_parse_from(["provision", "logs", "db", "-f"]).unwrap().command else { panic!("not logs") };
        assert!(args.follow);
        assert_eq!((args.file, args.services), (PathBuf::from("stack.toml"), vec!["db".to_string()]));
    }
}
