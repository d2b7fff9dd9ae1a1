//! `provision run -- CMD`: a fresh environment around one command on this
//! machine, removed afterwards whatever happens; `provision run SERVICE --
//! CMD`: a one-off container in a project `up` made; and `provision gc`,
//! for what runs that were killed left behind.

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    process::ExitCode,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{
    Prepared,
    args::{GcArgs, RunArgs},
    connect,
    env::host_env,
    inspect::{Attach, leave, print, terminal},
    prepare, project_of,
};
use crate::{
    apply::{self, ApplyError, Role, UpOptions},
    desired::{Image, Instance, RestartPolicy},
    engine::{self, Engine, Input},
    ephemeral::{self, Owner, Scope},
    journal::Journal,
    secrets, ui,
};

/// `run`'s exit code when the environment, not the command, failed.
pub const ENVIRONMENT_FAILED: u8 = 125;

/// CI job ids, in the order looked for: GitLab, GitHub Actions, Buildkite,
/// CircleCI, Jenkins.
const JOB_IDS: &[&str] = &["CI_JOB_ID", "GITHUB_RUN_ID", "BUILDKITE_JOB_ID", "CIRCLE_WORKFLOW_JOB_ID", "BUILD_NUMBER"];

pub async fn run(args: RunArgs) -> miette::Result<ExitCode> {
    // Listening from the start: a signal while planning is seen before
    // anything is created.
    let mut signals = Signals::new()?;
    match args.service.clone() {
        Some(service) => Ok(one_off(args, &service, &mut signals).await.unwrap_or_else(environment_failed)),
        None => Ok(around(args, &mut signals).await.unwrap_or_else(environment_failed)),
    }
}

/// The report of what failed, and the code that says it was the environment.
fn environment_failed(report: miette::Report) -> ExitCode {
    eprintln!("{}", secrets::redact(&format!("{report:?}")));
    eprintln!("provision run: the environment failed (exit {ENVIRONMENT_FAILED}); the command did not run");
    ExitCode::from(ENVIRONMENT_FAILED)
}

/// SIGINT and SIGTERM, caught for as long as the run lasts: cleanup is
/// never cut short by a second one.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> miette::Result<Signals> {
        let listen = |kind| signal(kind).map_err(|e| miette::miette!("cannot listen for signals: {e}"));
        Ok(Signals { interrupt: listen(SignalKind::interrupt())?, terminate: listen(SignalKind::terminate())? })
    }

    /// The next signal's number.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
        }
    }
}

fn signal_code(signal: i32) -> ExitCode {
    ExitCode::from(128 + signal as u8)
}

async fn around(mut args: RunArgs, signals: &mut Signals) -> miette::Result<ExitCode> {
    let started = Instant::now();
    let engine = connect(&args.stack.project, None).await?;
    match ephemeral::collect(engine.as_ref(), None, None).await {
        Ok(collected) => collected.iter().for_each(|c| eprintln!("note: removed project {}: {}", c.project, c.why)),
        Err(e) => eprintln!("warning: could not look for what earlier runs left: {e}"),
    }
    let (stack_name, _) = project_of(&args.stack.project)?;
    let project = match &args.stack.project.project {
        Some(name) => {
            if !engine.containers(name).await?.is_empty() {
                return Err(miette::miette!(
                    help = format!("choose another -p, or remove it first: provision down -v -p {name}"),
                    "project `{name}` already exists on the engine; `run` needs a fresh one"
                ));
            }
            name.clone()
        }
        None => fresh_name(&stack_name),
    };
    args.stack.project.project = Some(project.clone());
    let _writer = crate::writer::Writer::claim(&project, "provision run")?;
    args.stack.ephemeral_ports = true;
    // stack.lock is read (and with --locked, held to) but never written: a
    // run leaves the checkout as it found it.
    let Prepared { stack, mut planned, lock } = prepare(&args.stack, args.stack.locked)?;
    // Each run is a new project: built images are the stack's, so the next
    // run finds them.
    planned.state.build_scope = stack.name.clone();
    if let Some(signal) = signals.next().now_or_never() {
        eprintln!("interrupted before anything was created");
        return Ok(signal_code(signal));
    }

    let run = Run { engine: engine.as_ref(), project: &project, dir: &stack.dir, keep: args.keep, json: args.json };
    let state = &planned.state;
    let journal = Journal::of(&stack.dir, &project);
    let locked_images = if args.stack.locked { lock.map(|l| l.images) } else { None };
    let mut options = UpOptions::new(stack.dir.clone(), Duration::from_secs(args.timeout), locked_images, journal);
    options.snapshots = !args.no_snapshots;
    if !args.keep {
        options.labels = Owner::me().labels(Scope::Project);
    }
    if !args.json {
        eprintln!("provision run: bringing up {project} (profile {})", state.profile);
    }
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    let progress = (!args.json).then(|| ui::progress::Progress::new(&names));
    let events: &dyn apply::Events = match &progress {
        Some(progress) => progress,
        None => &ui::progress::JsonEvents,
    };
    let apply = apply::up(engine.as_ref(), state, &options, events);
    tokio::pin!(apply);
    let result = tokio::select! {
        result = &mut apply => Ok(result),
        signal = signals.next() => {
            // The engine call in progress finishes first, so nothing half-made
            // outlives the cleanup.
            options.interrupted.store(true, Ordering::SeqCst);
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut apply).await;
            Err(signal)
        }
    };
    progress.iter().for_each(ui::progress::Progress::finish);
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(mut error)) => {
            if let ApplyError::Failed { failures } = &mut error
                && !args.keep
            {
                // Removed below: not kept for inspection.
                failures.iter_mut().for_each(|f| f.container = None);
            }
            if args.json {
                println!("{}", serde_json::json!({"event": "up", "ok": false, "error": secrets::redact(&error.to_string())}));
            }
            eprintln!("{}", secrets::redact(&format!("{:?}", miette::Report::new(error))));
            run.clean_up().await;
            eprintln!("provision run: the environment failed (exit {ENVIRONMENT_FAILED}); the command did not run");
            return Ok(ExitCode::from(ENVIRONMENT_FAILED));
        }
        Err(signal) => {
            eprintln!("interrupted while bringing up {project}");
            run.clean_up().await;
            return Ok(signal_code(signal));
        }
    }

    let actual = engine.containers(&project).await?;
    let mut vars = host_env(state, &actual, &args.env_prefix, &[]);
    vars.push(("PROVISION_PROJECT".into(), project.clone()));
    let ready_ms = started.elapsed().as_millis() as u64;
    if args.json {
        println!("{}", serde_json::json!({"event": "run", "project": project, "ready_ms": ready_ms, "command": args.command}));
    } else {
        eprintln!("provision run: {project} is ready in {:.2}s; running {}", ready_ms as f64 / 1000.0, ui::printable(&args.command.join(" ")));
    }
    let outcome = command(&args.command, &vars, signals).await;
    let code = match outcome {
        Outcome::Exited(code) => code,
        Outcome::NotStarted(code, error) => {
            eprintln!("provision run: cannot run `{}`: {error}", ui::printable(&args.command[0]));
            code
        }
        Outcome::Interrupted(signal) => {
            eprintln!("interrupted: removing {project}");
            128 + signal
        }
    };
    if args.json {
        println!("{}", serde_json::json!({"event": "exit", "code": code, "elapsed_ms": started.elapsed().as_millis() as u64}));
    }
    let cleaned = run.clean_up().await;
    // The command passed but something is left: the job must not pass silently.
    Ok(if code == 0 && !cleaned { ExitCode::from(ENVIRONMENT_FAILED) } else { ExitCode::from(u8::try_from(code).unwrap_or(1)) })
}

/// What one run made, for its cleanup.
struct Run<'a> {
    engine: &'a dyn Engine,
    project: &'a str,
    dir: &'a Path,
    keep: bool,
    json: bool,
}

impl Run<'_> {
    /// Remove everything the run made, volumes too (unless --keep).
    /// Whether nothing is left.
    async fn clean_up(&self) -> bool {
        let project = self.project;
        if self.keep {
            eprintln!("kept: {project} stays up (--keep); `provision down -v -p {project}` removes it");
            return true;
        }
        let started = Instant::now();
        let owner = self.dir.display().to_string();
        let result = async {
            let containers = self.engine.containers(project).await?;
            apply::down(self.engine, project, Some(&owner), &containers, true).await
        }
        .await;
        if let Some(path) = Journal::path(self.dir, project) {
            let _ = std::fs::remove_file(path);
        }
        match result {
            Ok(removed) => {
                if self.json {
                    println!("{}", serde_json::json!({"event": "down", "ok": true, "project": project}));
                } else {
                    eprintln!("provision run: removed {project} in {:.2}s ({removed})", started.elapsed().as_secs_f64());
                }
                true
            }
            Err(e) => {
                eprintln!("provision run: removing {project} failed: {e}; `provision gc` removes what is left once this run has ended");
                false
            }
        }
    }
}

enum Outcome {
    Exited(i32),
    /// Could not be started: 126 (not executable) or 127 (not found).
    NotStarted(i32, std::io::Error),
    Interrupted(i32),
}

/// Run the command here with `vars` added to its environment. A SIGTERM
/// is passed on at once; a SIGINT the terminal already sent it too (it is
/// in our process group), so it is passed on only if the command is still
/// running 2 s later. Whatever does not end 10 s after that is killed.
async fn command(command: &[String], vars: &[(String, String)], signals: &mut Signals) -> Outcome {
    let spawned = tokio::process::Command::new(&command[0]).args(&command[1..]).envs(vars.iter().map(|(k, v)| (k, v))).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::NotStarted(127, e),
        Err(e) => return Outcome::NotStarted(126, e),
    };
    let status_code = |status: std::process::ExitStatus| status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let signal = tokio::select! {
        status = child.wait() => return Outcome::Exited(status.map(status_code).unwrap_or(1)),
        signal = signals.next() => signal,
    };
    if (signal == libc::SIGTERM || tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err())
        && let Some(pid) = child.id()
    {
        // SAFETY: kill(2) on the child's own pid (None once it was reaped).
        unsafe { libc::kill(pid as i32, signal) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Outcome::Interrupted(signal)
}

/// A new project's name: the stack's, then the CI job's id when there is
/// one (to find it among others), then random (two runs of one job differ).
fn fresh_name(stack: &str) -> String {
    let job: Option<String> = JOB_IDS
        .iter()
        .find_map(|var| std::env::var(var).ok())
        .map(|id| id.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).take(20).collect())
        .filter(|id: &String| !id.is_empty());
    let tail = match job {
        Some(id) => format!("-ci{id}-{}", random_hex(2)),
        None => format!("-run-{}", random_hex(3)),
    };
    let head: String = stack.chars().take(63 - tail.len()).collect();
    format!("{}{tail}", head.trim_end_matches('-'))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the system's random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `run SERVICE -- CMD`: a new container of the service's main one (its
/// image, entrypoint, env, mounts, networks, files) running CMD instead,
/// answering to no name, removed when it ends.
async fn one_off(args: RunArgs, service: &str, signals: &mut Signals) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, .. } = prepare(&args.stack, args.stack.locked)?;
    let state = &planned.state;
    let Some(planned_service) = state.services.iter().find(|s| s.name == service) else {
        let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
        return Err(miette::miette!(help = format!("its services: {}", names.join(", ")), "the stack has no service `{service}`"));
    };
    let Some(main) = planned_service.plan.containers.first() else {
        return Err(miette::miette!("service `{service}` only has one-shot tasks; there is no container to run a command like"));
    };
    let engine = connect(&args.stack.project, Some(&stack)).await?;
    let project = &state.project;
    let containers = engine.containers(project).await?;
    let Some(running) = containers.iter().find(|c| c.label("service") == Some(service) && c.label("container") == Some(&main.name)) else {
        return Err(miette::miette!(
            help = "bring it up first: provision up (or use `provision run -- CMD` for a fresh environment)",
            "service `{service}` of project {project} is not up"
        ));
    };
    // The image the service runs, not what this plan would pull or build
    // (`up` may have had other --images, or a build since changed).
    let running_image = engine.status(&running.id).await?.image;
    // The one-off is the main container as a command of the user's: its
    // image, entrypoint, env, mounts and networks, no ports, probe, restart
    // or hooks, and no copies; named `run-ID`, it answers to no name.
    let id = random_hex(3);
    let mut one_off = main.clone();
    one_off.name = format!("run-{id}");
    one_off.command = Some(args.command.clone());
    one_off.ports.clear();
    one_off.health = None;
    one_off.restart = RestartPolicy::No;
    one_off.hooks.clear();
    one_off.replicas = 1;
    let instance = Instance { container: std::borrow::Cow::Owned(one_off), task: false, answers_to_name: false };
    let labels = Owner::me().labels(Scope::OneOff);
    let mut spec = apply::container_spec(state, &stack.dir, &labels, planned_service, &instance, Role::Run, apply::Start::AsPlanned)
        .map_err(|e| miette::miette!("service `{service}`: {e}"))?;
    let attach = Attach::choose(&args.terminal);
    (spec.stdin, spec.tty) = (attach.stdin, attach.tty.is_some());
    match running_image {
        Some(image) => spec.image = image,
        None => {
            if let Image::Pull(image) = &main.image {
                engine.ensure_image(image).await?;
            }
        }
    }
    let container = engine.create(&spec).await?;
    let result = async {
        engine.put_files(&container, &main.files).await?;
        let raw = attach.tty.and_then(|_| terminal::Raw::enable());
        let stdin = attach.stdin.then(|| Box::new(tokio::io::stdin()) as Input);
        let mut output = print;
        let ended = tokio::select! {
            code = engine.start_attached(&container, stdin, attach.tty, &mut output) => Ok(code?),
            signal = signals.next() => Err(signal),
        };
        drop(raw);
        Ok::<_, engine::EngineError>(ended)
    }
    .await;
    engine.remove(&container).await?;
    match result? {
        Ok(code) => leave(code),
        Err(signal) => leave(128 + i64::from(signal)),
    }
}

pub async fn gc(args: GcArgs) -> miette::Result<ExitCode> {
    let engine = engine::connect(args.engine, &Default::default()).await?;
    let mut collected = ephemeral::collect(engine.as_ref(), args.older_than, None).await?;
    if args.gone {
        collected.extend(ephemeral::collect_gone(engine.as_ref()).await?);
    }
    for c in &collected {
        if args.json {
            println!("{}", serde_json::to_string(c).expect("JSON"));
        } else {
            let (containers, networks, volumes) =
                (ui::count(c.containers, "container"), ui::count(c.networks, "network"), ui::count(c.volumes, "volume"));
            eprintln!("removed {} ({}): {containers}, {networks}, {volumes}", c.project, c.why);
        }
    }
    if collected.is_empty() && !args.json {
        eprintln!(
            "nothing to remove: every run's project belongs to a run still going{}{}",
            if args.older_than.is_some() { " and is newer" } else { "" },
            if args.gone { ", and every project's folder is there" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_are_valid_and_differ() {
        let a = fresh_name("a-very-long-stack-name-that-goes-on-and-on-and-on-and-on-and-on");
        assert!(crate::stack::valid_name(&a), "{a}");
        assert_ne!(fresh_name("shop"), fresh_name("shop"));
        assert!(fresh_name("shop").starts_with("shop-"));
    }
}
