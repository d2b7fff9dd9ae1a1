//! The `provision` command line: one module per command, each a thin layer
//! that reads its arguments, calls into the data path and prints. Shared
//! here: turning a stack file into a plan (`prepare`) and finding the
//! project and its engine.

mod args;
mod attach;
mod build;
mod cp;
mod down;
mod env;
mod export;
mod import;
mod inspect;
mod lifecycle;
mod lock;
mod plan;
mod plugin;
mod run;
mod snapshots;
mod up;
mod watch;

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use miette::IntoDiagnostic;
use provision_registry::{LOCK_FILE, Lock, Resolver};

use crate::{
    engine::{self, Actual, Engine, EngineKind, EngineSettings},
    plan::{Options, Planned},
    runtime::{CompileCache, Limits, LogLevel, Runtime, cache_base},
    secrets::{self, Secrets},
    stack::Stack,
    ui,
};
use args::{Cli, Command, ProjectArgs, StackArgs};

/// The folder `path` is in ("." for a bare file name).
fn folder_of(path: &std::path::Path) -> PathBuf {
    path.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| ".".into())
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().terminal_links(false).unicode(true).build())))
        .expect("the hook is set once");
    // A panic's message may quote a secret, or a plugin's control characters.
    std::panic::set_hook(Box::new(|info| {
        // Output piped into `head` that stopped reading: end quietly, as Unix
        // tools do when SIGPIPE ends them (status 128 + 13). SIGPIPE itself
        // stays ignored: a write to a dead engine socket must be an error.
        let message = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        eprintln!("provision crashed (a bug; please report it): {}", ui::printable(&info.to_string()));
    }));
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{}", secrets::redact(&format!("{report:?}")));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> miette::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => plan::run(args).await,
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
        Command::Up(args) => up::run(args).await,
        Command::Build(args) => build::run(args).await,
        Command::Watch(mut args) => {
            args.watch = true;
            up::run(args).await
        }
        Command::Down(args) => down::run(args).await,
        Command::Stop(args) => lifecycle::stop(args).await,
        Command::Start(args) => lifecycle::start(args).await,
        Command::Restart(args) => lifecycle::restart(args).await,
        Command::Ps(args) => inspect::ps(args).await,
        Command::Logs(args) => inspect::logs(args).await,
        Command::Exec(args) => inspect::exec(args).await,
        Command::Attach(args) => attach::run(args).await,
        Command::Cp(args) => cp::run(args).await,
        Command::Env(args) => env::env(args).await,
        Command::Port(args) => env::port(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Gc(args) => run::gc(args).await,
        Command::Snapshots(args) => snapshots::run(args).await,
        Command::Lock(args) => lock::run(args).await,
        Command::Plugin(command) => plugin::run(command),
        Command::Version => {
            let contracts: Vec<String> = provision_registry::contract::RELEASED.iter().rev().map(|v| v.to_string()).collect();
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
    /// stack.lock as it was before this run.
    lock: Option<Lock>,
}

/// stack.toml → desired state: shared by `plan`, `up`, `lock` and `plugin
/// ls`. Plugins run on a plain thread: the sandbox's WASI (and the registry
/// client) are synchronous and must not block a tokio worker.
fn prepare(args: &StackArgs, locked: bool) -> miette::Result<Prepared> {
    std::thread::scope(|scope| scope.spawn(|| prepare_here(args, locked)).join().expect("planning does not panic"))
}

fn prepare_here(args: &StackArgs, locked: bool) -> miette::Result<Prepared> {
    let asked = (!args.profile.is_empty()).then(|| args.profile.join(","));
    let stack = Stack::load(&args.project.file, asked.as_deref())?;
    for warning in &stack.warnings {
        eprintln!("warning: {}", crate::engine::plain(warning));
    }
    let lock_path = stack.dir.join(LOCK_FILE);
    let lock = Lock::load(&lock_path).into_diagnostic()?;
    if locked && lock.is_none() {
        return Err(miette::miette!(help = "run `provision lock` and commit the file", "--locked, but there is no {}", lock_path.display()));
    }
    let mut images: BTreeMap<String, String> = stack.images.clone();
    if let Some(file) = &args.images {
        images.extend(Stack::load_images_file(file)?);
    }
    let options = Options {
        project: args.project.project.clone().unwrap_or_else(|| stack.name.clone()),
        profile: stack.profile.clone(),
        images,
        ephemeral_ports: args.ephemeral_ports || matches!(stack.profile.as_str(), "test" | "ci"),
    };
    let secrets = Arc::new(Secrets::for_project_dir(&stack.dir)?);
    let runtime = plugin_runtime()?;
    let resolver = Resolver::new(&stack.dir, cache_base().map(|b| b.join("plugins")), lock.clone(), locked);
    let planned = crate::plan::plan(&stack, &resolver, &runtime, secrets.clone(), &options)?;
    // What the engine the stack runs on cannot do, at the key that asks for it.
    if let Some((service, key, message)) = engine_of(&args.project, Some(&stack)).0.refuses(&planned.state) {
        return Err(stack.error_at(&format!("services.{service}.{key}"), format!("`{key}` of service `{service}`: {message}"), "here", None).into());
    }
    for note in resolver.notes() {
        eprintln!("note: {note}");
    }
    for (level, message) in &planned.logs {
        if *level == LogLevel::Warn || args.verbose {
            eprintln!("{}: {}", format!("{level:?}").to_lowercase(), ui::printable(message));
        }
    }
    Ok(Prepared { stack, planned, lock })
}

fn plugin_runtime() -> miette::Result<Runtime> {
    Runtime::new(CompileCache::default_location(), Limits::default()).into_diagnostic()
}

/// The project's name without planning: from -p, else the stack's name,
/// with the stack's folder (what the project belongs to) in that case.
fn project_of(args: &ProjectArgs) -> miette::Result<(String, Option<PathBuf>)> {
    match &args.project {
        Some(name) => Ok((name.clone(), None)),
        None => {
            let stack = Stack::load_for_project(&args.file)?;
            Ok((stack.name, Some(stack.dir)))
        }
    }
}

/// The engine the project runs on: --engine (or PROVISION_ENGINE), else the
/// stack's `[stack] engine`, else one Docker engine; set up by the stack's
/// `[engine.*]` tables: of `stack` when the command has loaded it, else read
/// here. A stack that cannot be read leaves the defaults (a command that
/// needs the stack reports why it cannot be read).
fn engine_of(args: &ProjectArgs, stack: Option<&Stack>) -> (EngineKind, EngineSettings) {
    let read = (stack.is_none() && args.file.exists()).then(|| Stack::load_for_project(&args.file).ok()).flatten();
    let stack = stack.or(read.as_ref());
    let kind = args.engine.or(stack.and_then(|s| s.engine)).unwrap_or_default();
    (kind, stack.map(|s| s.engine_settings.clone()).unwrap_or_default())
}

async fn connect(args: &ProjectArgs, stack: Option<&Stack>) -> miette::Result<Box<dyn Engine>> {
    let (kind, settings) = engine_of(args, stack);
    Ok(engine::connect(kind, &settings).await?)
}

/// The engine when one answers within 2 s, for commands that also work
/// without one (`plan`, `lock`).
async fn try_connect(args: &ProjectArgs, stack: &Stack) -> Option<Box<dyn Engine>> {
    let (kind, settings) = engine_of(args, Some(stack));
    tokio::time::timeout(Duration::from_secs(2), engine::connect(kind, &settings)).await.ok()?.ok()
}

/// The project's name, an engine connection and the project's containers:
/// what `ps`, `logs` and `exec` start from.
async fn project_containers(args: &ProjectArgs) -> miette::Result<(String, Box<dyn Engine>, Vec<Actual>)> {
    // stack.toml is read once, for the name and the engine both.
    let stack = if args.project.is_none() { Some(Stack::load_for_project(&args.file)?) } else { None };
    let project = args.project.clone().or_else(|| stack.as_ref().map(|s| s.name.clone())).unwrap_or_default();
    let engine = connect(args, stack.as_ref()).await?;
    let containers = engine.containers(&project).await?;
    Ok((project, engine, containers))
}

/// The container of `service` that `exec` and `port` mean: the one named,
/// else the main one (plugins call it `server`), else the first by name.
fn service_container<'a>(project: &str, containers: &'a [Actual], service: &str, named: Option<&str>) -> miette::Result<&'a Actual> {
    let mut candidates: Vec<&Actual> = containers
        .iter()
        .filter(|c| c.label("service") == Some(service) && c.label("role") == Some("container"))
        .filter(|c| named.is_none_or(|name| c.label("container") == Some(name)))
        .collect();
    candidates.sort_by_key(|c| (c.label("container") != Some("server"), c.name.clone()));
    candidates
        .first()
        .copied()
        .ok_or_else(|| miette::miette!(help = "`provision ps` lists them", "service `{service}` of project {project} has no such container"))
}
