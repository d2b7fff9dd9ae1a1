//! `provision ps`, `logs` and `exec`: look at and into a running project.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
};

use futures_util::StreamExt;

use super::{
    args::{ExecArgs, LogsArgs, PsArgs, TerminalArgs},
    project_containers,
};
use crate::{
    engine::{ExecCommand, OutputStream},
    journal::Journal,
    reconcile, ui,
};

pub async fn ps(args: PsArgs) -> miette::Result<ExitCode> {
    let (project, engine, containers) = project_containers(&args.project).await?;
    // What `up` saw, from the project folder's journal: stopped on purpose,
    // and ready (provision's own probe) in the start the engine reports.
    let journal = containers.iter().find_map(|c| c.label("project-dir")).map(|dir| Journal::of(std::path::Path::new(dir), &project));
    let entry = |id: &str| journal.as_ref().and_then(|j| j.entry(id));
    let mut rows = Vec::new();
    for (service, list) in reconcile::by_service(containers) {
        for c in list {
            let status = engine.status(&c.id).await?;
            let entry = entry(&c.id);
            let state = match (status.running, status.replicas) {
                (true, Some((running, wanted))) => format!("running {running}/{wanted}"),
                (true, None) => "running".to_string(),
                (false, _) if entry.as_ref().is_some_and(|e| e.stopped) => "stopped".to_string(),
                (false, _) => format!("exited ({})", status.exit_code.unwrap_or(-1)),
            };
            let ready = status.running && entry.is_some_and(|e| e.ready_in.is_some() && e.ready_in == status.started_at);
            rows.push(ui::table::PsRow {
                container: c.label("container").unwrap_or("").to_string(),
                role: c.label("role").unwrap_or("").to_string(),
                service: service.clone(),
                name: c.name.clone(),
                state,
                health: health(status.running, ready, status.health),
                ports: c.host_ports().collect(),
                address: engine.publishes_on().to_string(),
                id: c.id[..12.min(c.id.len())].to_string(),
            });
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
    } else if rows.is_empty() {
        eprintln!("project {project} has no containers");
    } else {
        print!("{}", ui::table::ps(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// provision's readiness (its own probe saw it ready in this start) beside
/// the engine's healthcheck, which may still say `starting` after `up`
/// said ready: "ready (docker: starting)"; both agreeing, "healthy". The last check of a container
/// that no longer runs says nothing now.
fn health(running: bool, ready: bool, engine: Option<String>) -> String {
    match (running, ready, engine.as_deref()) {
        (false, ..) => "-".into(),
        (true, true, None) => "ready".into(),
        (true, true, Some("healthy")) => "healthy".into(),
        (true, true, Some("unhealthy")) => "unhealthy".into(),
        (true, true, Some(engine)) => format!("ready (docker: {engine})"),
        (true, false, engine) => engine.unwrap_or("-").into(),
    }
}

pub async fn logs(args: LogsArgs) -> miette::Result<ExitCode> {
    let (project, engine, containers) = project_containers(&args.project_args()).await?;
    let by_service = reconcile::by_service(containers);
    if let Some(unknown) = args.services.iter().find(|s| !by_service.contains_key(*s)) {
        let running: Vec<&str> = by_service.keys().map(String::as_str).collect();
        return Err(miette::miette!(
            help = format!("what it runs: {}", if running.is_empty() { "nothing".to_string() } else { running.join(", ") }),
            "project {project} has no containers for service `{unknown}`"
        ));
    }
    let options = args.options();
    let mut sources = Vec::new();
    for (service, list) in by_service {
        if !args.services.is_empty() && !args.services.contains(&service) {
            continue;
        }
        for c in list {
            let container = c.label("container").unwrap_or("").to_string();
            sources.push((format!("{service}/{container}"), engine.logs(&c.id, &options)));
        }
    }
    if sources.is_empty() {
        return Err(miette::miette!(help = "`provision up` brings it up", "project {project} has no containers"));
    }
    // Prefixes padded to one width, each container's in a colour of its own
    // at a terminal (console honours NO_COLOR and CLICOLOR).
    let width = sources.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let colour = console::colors_enabled();
    let streams = sources.into_iter().enumerate().map(|(i, (prefix, stream))| {
        let padded = format!("{prefix:width$} |");
        let prefix = if colour { console::style(padded).color256(LOG_COLOURS[i % LOG_COLOURS.len()]).to_string() } else { padded };
        stream.map(move |chunk| (prefix.clone(), chunk)).boxed()
    });
    let mut all = futures_util::stream::select_all(streams);
    let mut out = std::io::stdout().lock();
    while let Some((prefix, chunk)) = all.next().await {
        for line in chunk?.lines() {
            if writeln!(out, "{prefix} {line}").is_err() {
                // The reader went away (`| head`): not an error of ours.
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Distinct on dark and light terminals (xterm's 256 colours).
const LOG_COLOURS: [u8; 6] = [33, 36, 35, 32, 172, 134];

pub async fn exec(args: ExecArgs) -> miette::Result<ExitCode> {
    let (project, engine, containers) = project_containers(&args.project).await?;
    let target = super::service_container(&project, &containers, &args.service, args.container.as_deref())?;
    let command = ExecCommand { command: &args.command, ..ExecCommand::default() };
    let attach = Attach::choose(&args.terminal);
    if !attach.stdin {
        let code = engine.exec_with(&target.id, command, &mut print).await?;
        return Ok(exit_code(code));
    }
    let raw = attach.tty.and_then(|_| terminal::Raw::enable());
    let result = engine.exec_attached(&target.id, command, Box::new(tokio::io::stdin()), attach.tty, &mut print).await;
    drop(raw);
    leave(result?)
}

/// How a command in a container meets this terminal.
pub(super) struct Attach {
    /// Our stdin is passed to it.
    pub stdin: bool,
    /// It runs on a terminal of this size (columns, rows).
    pub tty: Option<(u16, u16)>,
}

impl Attach {
    /// By default stdin is passed when it is not a terminal (a piped dump)
    /// or on a TTY, which it gets when stdin and stdout both are terminals.
    pub fn choose(args: &TerminalArgs) -> Attach {
        let (stdin_terminal, stdout_terminal) = (std::io::stdin().is_terminal(), std::io::stdout().is_terminal());
        let tty = !args.no_tty && (args.tty || (stdin_terminal && stdout_terminal));
        Attach { stdin: args.interactive || tty || !stdin_terminal, tty: tty.then(|| terminal::size().unwrap_or((80, 24))) }
    }
}

/// A command's output, as it comes, on ours.
pub(super) fn print(stream: OutputStream, chunk: &[u8]) {
    let _ = match stream {
        OutputStream::Stdout => std::io::stdout().write_all(chunk).and_then(|()| std::io::stdout().flush()),
        OutputStream::Stderr => std::io::stderr().write_all(chunk),
    };
}

/// End with a command's exit code. Reading stdin holds a thread that would
/// keep the runtime from ending while the terminal has no more input:
/// leave at once.
pub(super) fn leave(code: i64) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(u8::try_from(code).unwrap_or(1)));
}

/// A command's exit code as provision's (codes over 255 read as 1).
fn exit_code(code: i64) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The local terminal, for a command on a TTY.
pub(super) mod terminal {
    /// Raw mode (no echo, no line editing: the remote terminal does both)
    /// until dropped.
    pub struct Raw(libc::termios);

    impl Raw {
        pub fn enable() -> Option<Raw> {
            // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios they fill.
            unsafe {
                let mut mode: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut mode) != 0 {
                    return None;
                }
                let saved = mode;
                libc::cfmakeraw(&mut mode);
                (libc::tcsetattr(0, libc::TCSANOW, &mode) == 0).then_some(Raw(saved))
            }
        }
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            // SAFETY: restores the mode tcgetattr read.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &self.0);
            }
        }
    }

    /// (columns, rows) of the terminal on stdout.
    pub fn size() -> Option<(u16, u16)> {
        // SAFETY: TIOCGWINSZ fills a winsize.
        unsafe {
            let mut size: libc::winsize = std::mem::zeroed();
            (libc::ioctl(1, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0).then_some((size.ws_col, size.ws_row))
        }
    }
}
