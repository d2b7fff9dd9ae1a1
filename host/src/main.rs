//! The `provision` command line.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use provision::{
    apply::{self, UpOptions},
    engine::{Docker, Engine},
    plan::{self, Options, Planned},
    runtime::{CompileCache, Limits, LogLevel, Runtime, SUPPORTED_CONTRACTS, cache_base},
    secrets::Secrets,
    stack::Stack,
    ui,
};
use provision_registry::{LOCK_FILE, Lock, Resolver};

#[derive(Parser)]
#[command(
    name = "provision",
    version,
    about = "Stand up whole development, test and CI environments from one stack.toml",
    long_about = "Stand up whole development, test and CI environments from one stack.toml.\n\n\
        Each service in stack.toml is planned by a plugin (a sandboxed WebAssembly component): \
        postgres, redis, rails, sidekiq, nginx and monitoring are built in; load your own from a path or an OCI registry (pinned in stack.lock). \
        `up` applies the plan to a Docker engine (DOCKER_HOST, or the default socket).",
    after_help = "Examples:\n  provision up                        bring up ./stack.toml and wait until every service is ready\n  \
        provision plan                      show what the stack needs and what `up` would change\n  \
        provision up --profile test --json  for CI: test profile, one JSON event per line\n  \
        provision exec db -- psql -U app -c 'select 1'\n  \
        provision down -v                   remove everything, named volumes too"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the desired state (every container, task, volume and output the
    /// plugins ask for) and, when an engine answers, what `up` would create,
    /// recreate (and why) or keep.
    Plan(PlanArgs),
    /// Create or update the environment and wait until every service is
    /// ready. Unchanged services are kept; services removed from the stack
    /// are removed.
    Up(UpArgs),
    /// Remove the project's containers and networks. Named volumes (your
    /// data) are kept unless you pass -v.
    Down(DownArgs),
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
    /// Output is streamed; stdin and TTYs are not attached.
    Exec(ExecArgs),
    /// Print provision's version and the plugin contract versions it loads.
    Version,
}

#[derive(Args)]
struct ProjectArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", default_value = "stack.toml", value_name = "FILE", global = true)]
    file: PathBuf,
    /// Project name: identifies this environment on the engine. Default: the
    /// stack's name.
    #[arg(short = 'p', long = "project", value_name = "NAME", global = true)]
    project: Option<String>,
}

#[derive(Args)]
struct StackArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Profile to plan for: dev, test, ci, prod or your own. Default: the
    /// stack's `profile`, else dev.
    #[arg(long, value_name = "NAME", env = "PROVISION_PROFILE")]
    profile: Option<String>,
    /// A file with an [images] table mapping image references to substitutes
    /// (added to the stack's own [images]), e.g. for mirrors or air-gapped CI.
    #[arg(long, value_name = "FILE", env = "PROVISION_IMAGES")]
    images: Option<PathBuf>,
    /// Also print what plugins logged below warning level.
    #[arg(short, long)]
    verbose: bool,
    /// Refuse to go on unless stack.lock matches the stack: plugins and their
    /// digests (checked before the engine is touched), then images. For CI.
    #[arg(long)]
    locked: bool,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Print the full desired state as JSON (with each container's spec hash).
    #[arg(long)]
    json: bool,
    /// Print secrets (generated passwords, secret outputs) instead of masking them.
    #[arg(long)]
    show_secrets: bool,
    /// Print how long resolving, loading and calling each plugin took (to stderr).
    #[arg(long)]
    timings: bool,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Give up when the stack is not ready after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    timeout: u64,
    /// One JSON event per line on stdout instead of live progress (for CI).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LockArgs {
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Subcommand)]
enum PluginCommand {
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
struct DownArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Also remove the project's named volumes (its data).
    #[arg(short = 'v', long)]
    volumes: bool,
}

#[derive(Args)]
struct PsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LogsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Only this service.
    service: Option<String>,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines of each container.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
}

#[derive(Args)]
struct ExecArgs {
    #[command(flatten)]
    project: ProjectArgs,
    service: String,
    /// The container of the service (default: `server`, else the first by name).
    #[arg(short, long)]
    container: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().terminal_links(false).unicode(true).build())))
        .expect("the hook is set once");
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> miette::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => plan_command(args).await,
        Command::Up(args) => up_command(args).await,
        Command::Down(args) => down_command(args).await,
        Command::Ps(args) => ps_command(args).await,
        Command::Logs(args) => logs_command(args).await,
        Command::Exec(args) => exec_command(args).await,
        Command::Lock(args) => lock_command(args).await,
        Command::Plugin(command) => plugin_command(command),
        Command::Version => {
            let contracts: Vec<String> = SUPPORTED_CONTRACTS.iter().map(|v| v.to_string()).collect();
            println!("provision {}", env!("CARGO_PKG_VERSION"));
            println!("plugin contracts: {}", contracts.join(", "));
            for b in provision_registry::builtins() {
                println!("builtin plugin {} {} (contract {}, sha256:{})", b.name, b.version, b.contract, b.sha256);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct Prepared {
    stack: Stack,
    planned: Planned,
    secrets: Arc<Secrets>,
    /// stack.lock as it was before this run.
    lock: Option<Lock>,
}

/// stack.toml → desired state: shared by `plan`, `up` and `lock`. Plugins
/// run on a plain thread: the sandbox's WASI (and the registry client) are
/// synchronous and must not block a tokio worker.
fn prepare(args: &StackArgs, locked: bool) -> miette::Result<Prepared> {
    std::thread::scope(|scope| scope.spawn(|| prepare_here(args, locked)).join().expect("planning does not panic"))
}

fn prepare_here(args: &StackArgs, locked: bool) -> miette::Result<Prepared> {
    let stack = Stack::load(&args.project.file)?;
    let lock_path = stack.dir.join(LOCK_FILE);
    let lock = Lock::load(&lock_path).map_err(|e| miette::miette!("{e}"))?;
    if locked && lock.is_none() {
        return Err(miette::miette!("--locked, but there is no {}; run `provision lock` and commit the file", lock_path.display()));
    }
    let mut images: BTreeMap<String, String> = stack.images.clone();
    if let Some(file) = &args.images {
        images.extend(Stack::load_images_file(file)?);
    }
    let options = Options {
        project: args.project.project.clone().unwrap_or_else(|| stack.name.clone()),
        profile: args.profile.clone().or_else(|| stack.profile.clone()).unwrap_or_else(|| "dev".into()),
        images,
    };
    let secrets = Arc::new(Secrets::for_project_dir(&stack.dir).map_err(|e| miette::miette!("{e:#}"))?);
    let runtime = Runtime::new(CompileCache::default_location(), Limits::default())
        .map_err(|e| miette::miette!("cannot start the plugin runtime: {e:#}"))?;
    let resolver = Resolver::new(&stack.dir, cache_base().map(|b| b.join("plugins")), lock.clone(), locked);
    let planned = plan::plan(&stack, &resolver, &runtime, secrets.clone(), &options)?;
    for note in resolver.notes() {
        eprintln!("note: {note}");
    }
    let masker = ui::Masker::new(&planned.state, &secrets, false);
    for (level, message) in &planned.logs {
        if *level == LogLevel::Warn || args.verbose {
            eprintln!("{}: {}", format!("{level:?}").to_lowercase(), masker.mask(message));
        }
    }
    Ok(Prepared { stack, planned, secrets, lock })
}

/// The project's name without planning: from -p, else the stack's name,
/// with the stack's folder (what the project belongs to) in that case.
fn project_of(args: &ProjectArgs) -> miette::Result<(String, Option<PathBuf>)> {
    match &args.project {
        Some(name) => Ok((name.clone(), None)),
        None => {
            let stack = Stack::load(&args.file)?;
            Ok((stack.name, Some(stack.dir)))
        }
    }
}

async fn connect() -> miette::Result<Docker> {
    Ok(Docker::connect().await?)
}

/// The project's name, an engine connection and the project's containers:
/// what `ps`, `logs` and `exec` start from.
async fn project_containers(args: &ProjectArgs) -> miette::Result<(String, Docker, Vec<provision::engine::Actual>)> {
    let (project, _) = project_of(args)?;
    let docker = connect().await?;
    let containers = docker.containers(&project).await?;
    Ok((project, docker, containers))
}

async fn plan_command(args: PlanArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, secrets, .. } = prepare(&args.stack, args.stack.locked)?;
    let masker = ui::Masker::new(&planned.state, &secrets, args.show_secrets);
    // What `up` would change, when an engine answers; the plan stands without one.
    let diff = match tokio::time::timeout(Duration::from_secs(2), Docker::connect()).await {
        Ok(Ok(docker)) => docker.containers(&planned.state.project).await.ok().map(|actual| apply::diff(&planned.state, &actual)),
        _ => None,
    };
    if args.json {
        println!("{}", ui::plan_json(&planned.state, diff.as_ref(), &masker));
    } else {
        print!("{}", ui::plan_summary(&planned.state, &stack.name, &masker));
        match &diff {
            Some(diff) => print!("{}", ui::diff_summary(diff)),
            None => println!("\n(no container engine answers: showing the desired state only)"),
        }
    }
    if args.timings {
        eprint!("{}", ui::timings_report(&planned.timings));
    }
    Ok(ExitCode::SUCCESS)
}

async fn up_command(args: UpArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, lock, .. } = prepare(&args.stack, args.stack.locked)?;
    let docker = connect().await?;
    let state = &planned.state;
    let locked_images = if args.stack.locked { lock.as_ref().map(|l| l.images.clone()) } else { None };
    // Which containers earlier runs saw ready (see UpOptions::seen_ready).
    let seen_path = stack.dir.join(".provision").join(format!("ready-{}.json", state.project));
    let seen_ready = std::fs::read(&seen_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let options = UpOptions { project_dir: stack.dir.clone(), timeout: Duration::from_secs(args.timeout), locked_images, seen_ready };
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    // Live progress only without --json, so CI output is JSON alone.
    let progress = (!args.json).then(|| ui::Progress::new(&names));
    let events: &dyn apply::Events = match &progress {
        Some(progress) => progress,
        None => &ui::JsonEvents,
    };
    let started = std::time::Instant::now();

    let result = tokio::select! {
        result = apply::up(&docker, state, &options, events) => result,
        _ = tokio::signal::ctrl_c() => {
            progress.iter().for_each(ui::Progress::finish);
            eprintln!("interrupted: what was created so far is labeled with project `{}`; `provision down` removes it", state.project);
            return Ok(ExitCode::from(130));
        }
    };
    progress.iter().for_each(ui::Progress::finish);
    match result {
        Ok(summary) => {
            // Only a cache: losing it costs one probe per container next time.
            let _ = std::fs::write(&seen_path, serde_json::to_vec(&summary.ready).expect("JSON"));
            let lock_path = stack.dir.join(LOCK_FILE);
            match &lock {
                None => {
                    let lock = Lock { version: 1, plugins: planned.locked_plugins.clone(), images: summary.images.clone() };
                    lock.save(&lock_path).map_err(|e| miette::miette!("{e}"))?;
                    eprintln!("wrote {} (commit it; CI can then run `provision up --locked`)", lock_path.display());
                }
                Some(lock) if lock.plugins != planned.locked_plugins || lock.images != summary.images => {
                    eprintln!("note: {} is out of date with what ran; `provision lock` updates it", lock_path.display());
                }
                Some(_) => {}
            }
            if args.json {
                println!("{}", serde_json::json!({"event": "up", "ok": true, "elapsed_ms": started.elapsed().as_millis() as u64, "summary": summary}));
            } else {
                eprintln!(
                    "{} is up in {:.2}s: {} created, {} recreated, {} kept, {} removed",
                    state.project,
                    started.elapsed().as_secs_f64(),
                    summary.created,
                    summary.recreated,
                    summary.kept,
                    summary.removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if args.json {
                println!("{}", serde_json::json!({"event": "up", "ok": false, "error": error.to_string()}));
            }
            Err(error.into())
        }
    }
}

async fn down_command(args: DownArgs) -> miette::Result<ExitCode> {
    let started = std::time::Instant::now();
    let (project, stack_dir) = project_of(&args.project)?;
    let docker = connect().await?;
    let containers = docker.containers(&project).await?;
    // A project named after the stack may belong to another checkout; only
    // an explicit -p may take down what another folder brought up.
    if let Some(dir) = stack_dir {
        let ours = dir.display().to_string();
        if let Some(other) = containers.iter().filter_map(|c| c.label("project-dir")).find(|d| *d != ours) {
            return Err(miette::miette!(
                "project `{project}` was brought up from {other}, not from {ours}; run `provision down` there, or pass -p {project} to take it down from here"
            ));
        }
    }
    let removals = containers.iter().map(|c| docker.remove_gracefully(&c.id));
    for result in futures_util::future::join_all(removals).await {
        result?;
    }
    let networks = docker.remove_networks(&project).await?;
    let volumes = if args.volumes { docker.remove_volumes(&project).await? } else { Vec::new() };
    let kept = if args.volumes { "" } else { "; named volumes kept (down -v removes them)" };
    eprintln!(
        "{project} is down in {:.2}s: removed {} containers, {} networks, {} volumes{kept}",
        started.elapsed().as_secs_f64(),
        containers.len(),
        networks.len(),
        volumes.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn ps_command(args: PsArgs) -> miette::Result<ExitCode> {
    let (project, docker, containers) = project_containers(&args.project).await?;
    let mut rows = Vec::new();
    for (service, list) in apply::by_service(containers) {
        for c in list {
            let status = docker.status(&c.id).await?;
            let state = if status.running { "running".to_string() } else { format!("exited ({})", status.exit_code.unwrap_or(-1)) };
            let health = status.health.unwrap_or_else(|| "-".into());
            rows.push(serde_json::json!({
                "service": service, "container": c.label("container").unwrap_or(""), "name": c.name,
                "role": c.label("role").unwrap_or(""), "state": state, "health": health,
                "ports": c.host_ports, "id": &c.id[..12.min(c.id.len())],
            }));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
    } else if rows.is_empty() {
        eprintln!("project {project} has no containers");
    } else {
        println!("{:12} {:10} {:10} {:12} {:10} {:12} ID", "SERVICE", "CONTAINER", "ROLE", "STATE", "HEALTH", "PORTS");
        for r in rows {
            let ports: Vec<String> = r["ports"].as_array().unwrap().iter().map(|p| format!("127.0.0.1:{p}")).collect();
            println!(
                "{:12} {:10} {:10} {:12} {:10} {:12} {}",
                r["service"].as_str().unwrap(),
                r["container"].as_str().unwrap(),
                r["role"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
                r["health"].as_str().unwrap(),
                ports.join(","),
                r["id"].as_str().unwrap()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs_command(args: LogsArgs) -> miette::Result<ExitCode> {
    let (project, docker, containers) = project_containers(&args.project).await?;
    let mut streams = Vec::new();
    for (service, list) in apply::by_service(containers) {
        if args.service.as_ref().is_some_and(|s| *s != service) {
            continue;
        }
        for c in list {
            let prefix = format!("{service}/{}", c.label("container").unwrap_or(""));
            streams.push(docker.logs(&c.id, args.follow, args.tail).map(move |chunk| (prefix.clone(), chunk)).boxed());
        }
    }
    if streams.is_empty() {
        return Err(miette::miette!("project {project} has no containers{}", args.service.map(|s| format!(" for service `{s}`")).unwrap_or_default()));
    }
    let mut all = futures_util::stream::select_all(streams);
    while let Some((prefix, chunk)) = all.next().await {
        let chunk = chunk?;
        for line in chunk.lines() {
            println!("{prefix} | {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn exec_command(args: ExecArgs) -> miette::Result<ExitCode> {
    let (project, docker, containers) = project_containers(&args.project).await?;
    let mut candidates: Vec<_> = containers
        .into_iter()
        .filter(|c| c.label("service") == Some(args.service.as_str()) && c.label("role") == Some("container"))
        .filter(|c| args.container.as_deref().is_none_or(|name| c.label("container") == Some(name)))
        .collect();
    // The main container (plugins call it `server`) unless one is named.
    candidates.sort_by_key(|c| (c.label("container") != Some("server"), c.name.clone()));
    let Some(target) = candidates.first() else {
        return Err(miette::miette!("service `{}` of project {project} has no such container; `provision ps` lists them", args.service));
    };
    let code = docker.exec_streaming(&target.id, &args.command).await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

async fn lock_command(args: LockArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, lock, .. } = prepare(&args.stack, false)?;
    let path = stack.dir.join(LOCK_FILE);
    // Images need an engine; without one, keep what the lock already says.
    let images = match tokio::time::timeout(Duration::from_secs(2), Docker::connect()).await {
        Ok(Ok(docker)) => apply::image_digests(&docker, &planned.state).await?,
        _ => {
            eprintln!("note: no container engine answers; image digests are kept as they were");
            lock.as_ref().map(|l| l.images.clone()).unwrap_or_default()
        }
    };
    let new = Lock { version: 1, plugins: planned.locked_plugins.clone(), images };
    let unchanged = lock.as_ref().is_some_and(|old| old.plugins == new.plugins && old.images == new.images);
    new.save(&path).map_err(|e| miette::miette!("{e}"))?;
    for p in &new.plugins {
        eprintln!("  plugin {} {} ({}) sha256:{}", p.name, p.version, p.source, &p.sha256[..16]);
    }
    for i in &new.images {
        eprintln!("  image {}{} {}", i.reference, i.substitute.as_ref().map(|s| format!(" → {s}")).unwrap_or_default(), i.digest);
    }
    eprintln!("{} {}", if unchanged { "unchanged:" } else { "wrote" }, path.display());
    Ok(ExitCode::SUCCESS)
}

fn plugin_command(command: PluginCommand) -> miette::Result<ExitCode> {
    // The registry client blocks: keep it off the async runtime's workers.
    std::thread::scope(|scope| scope.spawn(|| plugin_command_here(command)).join().expect("no panic"))
}

fn plugin_command_here(command: PluginCommand) -> miette::Result<ExitCode> {
    let fail = |e: &dyn std::fmt::Display| miette::miette!("{e}");
    let runtime = || Runtime::new(CompileCache::default_location(), Limits::default()).map_err(|e| miette::miette!("{e:#}"));
    match command {
        PluginCommand::New { name, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            provision::author::scaffold(&dir, &name).map_err(|e| miette::miette!("{e:#}"))?;
            println!("created plugin `{name}` in {}", dir.display());
            println!("next: provision plugin build {0} && provision plugin test {0} --bless", dir.display());
        }
        PluginCommand::Build { dir } => {
            let built = provision::author::build(&dir, &runtime()?).map_err(|e| miette::miette!("{e:#}"))?;
            let info = &built.plugin.info;
            println!(
                "built {} {} (contract {}): {} ({} bytes, sha256:{})",
                info.name,
                info.version,
                built.plugin.contract,
                built.wasm.display(),
                built.size,
                built.sha256
            );
        }
        PluginCommand::Test { dir, bless } => {
            let runtime = runtime()?;
            let built = provision::author::build(&dir, &runtime).map_err(|e| miette::miette!("{e:#}"))?;
            let outcomes = provision::author::test(&dir, &runtime, &built.plugin, bless).map_err(|e| miette::miette!("{e:#}"))?;
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            for o in &outcomes {
                let mark = if o.passed { "ok" } else { "FAILED" };
                println!("fixture {} ... {mark}{}", o.fixture, if o.passed && o.detail.is_empty() { String::new() } else { format!(" ({})", o.detail) });
            }
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        PluginCommand::Push { file, reference } => {
            let (resolved, plugin) = provision::author::load_component(&file, &runtime()?).map_err(|e| miette::miette!("{e:#}"))?;
            let (name, contract, wasm) = (plugin.info.name, resolved.contract, resolved.wasm);
            let version = semver::Version::parse(&plugin.info.version).expect("checked by load_component");
            let tag = reference.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
            let reference = match tag {
                Some(tag) if tag == version.to_string() => reference,
                Some(tag) => return Err(miette::miette!("the tag `{tag}` is not the plugin's version {version}; push it as …:{version}")),
                None => format!("{reference}:{version}"),
            };
            let url = provision_registry::oci::Registry::new().push(&wasm, &reference, &name, &version, &contract).map_err(|e| fail(&e))?;
            println!("pushed {name} {version} (contract {contract}, sha256:{}) to {reference}", provision_registry::sha256_hex(&wasm));
            eprintln!("{url}");
        }
        PluginCommand::Pull { reference } => {
            let registry = provision_registry::oci::Registry::new();
            let release = match reference.rsplit_once('@') {
                Some((repository, req)) => {
                    let req = semver::VersionReq::parse(req).map_err(|e| miette::miette!("`{req}` is not a version requirement: {e}"))?;
                    registry.resolve(repository, &req)
                }
                None => match reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                    Some((repository, tag)) => registry.release(repository, tag),
                    None => registry.resolve(&reference, &semver::VersionReq::STAR),
                },
            }
            .map_err(|e| fail(&e))?;
            let wasm = registry.pull(&release).map_err(|e| fail(&e))?;
            let dir = cache_base().ok_or_else(|| miette::miette!("no cache folder: set PROVISION_CACHE_DIR"))?.join("plugins");
            std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
            let path = dir.join(format!("{}.wasm", release.sha256));
            std::fs::write(&path, &wasm).map_err(|e| fail(&e))?;
            println!("{} {} (contract {}) sha256:{}\n{}", release.name, release.version, release.contract, release.sha256, path.display());
        }
        PluginCommand::Ls(args) => {
            let Prepared { planned, .. } = prepare_here(&args.stack, false)?;
            println!("{:12} {:10} {:10} {:10} {:40} SHA256", "PLUGIN", "VERSION", "REQUIRED", "CONTRACT", "SOURCE");
            for (p, l) in planned.state.plugins.iter().zip(&planned.locked_plugins) {
                println!("{:12} {:10} {:10} {:10} {:40} {}", p.name, p.version, l.requirement, p.contract, p.source, &p.sha256[..16]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
