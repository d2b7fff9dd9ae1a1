//! `provision up`: plan, then converge the engine with live progress (or
//! JSON events), and keep stack.lock in step with what ran. `start` and
//! `restart` converge the same way (`converge`), starting only what exists.

use std::{collections::BTreeSet, process::ExitCode, time::Duration};

use super::{Prepared, args::UpArgs, connect, lock, prepare};
use crate::{
    apply::{self, UpOptions},
    engine::Engine,
    journal::Journal,
    secrets, ui,
    writer::Writer,
};

pub async fn run(args: UpArgs) -> miette::Result<ExitCode> {
    let prepared = prepare(&args.stack, args.stack.locked)?;
    let state = &prepared.planned.state;
    if args.watch {
        // Nothing to watch is said before anything is brought up.
        super::watch::rules(&prepared, only(&prepared, &args.services)?.as_ref())?;
    }
    let _writer = Writer::claim(&state.project, "provision up")?;
    let engine = connect(&args.stack.project, Some(&prepared.stack)).await?;
    let locked_images = if args.stack.locked { prepared.lock.as_ref().map(|l| l.images.clone()) } else { None };
    let mut options = UpOptions::new(prepared.stack.dir.clone(), Duration::from_secs(args.timeout), locked_images, journal(&prepared));
    options.snapshots = !args.no_snapshots;
    options.only = only(&prepared, &args.services)?;
    let summary = match converge(&prepared, engine.as_ref(), &options, args.json, Said::Up).await? {
        Converged::Done(summary) => summary,
        Converged::Interrupted => return Ok(ExitCode::from(130)),
    };
    // A part of the stack does not make a lock (the next whole `up` does).
    if options.only.is_none() || prepared.lock.is_some() {
        lock::after_up(&prepared.stack, &prepared.planned, prepared.lock.as_ref(), &summary.images)?;
    }
    if args.watch {
        drop(_writer);
        return super::watch::watch(&args, prepared, engine.as_ref()).await;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn journal(prepared: &Prepared) -> Journal {
    Journal::of(&prepared.stack.dir, &prepared.planned.state.project)
}

/// The services named and what they need first; None: the whole stack.
pub(super) fn only(prepared: &Prepared, services: &[String]) -> miette::Result<Option<BTreeSet<String>>> {
    if services.is_empty() {
        return Ok(None);
    }
    Ok(Some(prepared.planned.state.with_dependencies(services).map_err(no_such_service)?))
}

/// A service named on the command line that the stack does not have.
pub(super) fn no_such_service(message: String) -> miette::Report {
    miette::miette!(help = "`provision plan` lists them", "{message}")
}

pub(super) enum Converged {
    Done(apply::Summary),
    /// By Ctrl-C, and said so.
    Interrupted,
}

/// What the line said when done says.
pub(super) enum Said<'a> {
    /// `PROJECT is up in 1.20s: 2 created, …` (or the services of `up SERVICE…`).
    Up,
    /// `started web in 0.80s` (those named, or the project).
    Started(&'a [String]),
    Restarted(&'a [String]),
    /// Nothing: the caller says it (`watch`).
    Quietly,
}

/// Apply the plan with live progress (or JSON events on stdout, for CI);
/// Ctrl-C lets the engine call in progress finish, then stops.
pub(super) async fn converge(prepared: &Prepared, engine: &dyn Engine, options: &UpOptions, json: bool, said: Said<'_>) -> miette::Result<Converged> {
    let state = &prepared.planned.state;
    let names: Vec<&str> =
        state.services.iter().map(|s| s.name.as_str()).filter(|s| options.only.as_ref().is_none_or(|only| only.contains(*s))).collect();
    // Live progress only without --json, so CI output is JSON alone.
    let progress = (!json).then(|| ui::progress::Progress::new(&names));
    let events: &dyn apply::Events = match &progress {
        Some(progress) => progress,
        None => &ui::progress::JsonEvents,
    };
    let started = std::time::Instant::now();

    let apply = apply::up(engine, state, options, events);
    tokio::pin!(apply);
    let result = tokio::select! {
        result = &mut apply => result,
        _ = tokio::signal::ctrl_c() => {
            // Let the engine call in progress finish (a network half-made
            // while `down` runs would outlive it), then stop.
            options.interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut apply).await;
            progress.iter().for_each(ui::progress::Progress::finish);
            eprintln!("interrupted: what was created so far is labeled with project `{}`; `provision down` removes it", state.project);
            return Ok(Converged::Interrupted);
        }
    };
    progress.iter().for_each(ui::progress::Progress::finish);
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            if json {
                println!("{}", serde_json::json!({"event": "up", "ok": false, "error": secrets::redact(&error.to_string())}));
            }
            return Err(error.into());
        }
    };
    let elapsed = started.elapsed();
    if json {
        println!("{}", serde_json::json!({"event": "up", "ok": true, "elapsed_ms": elapsed.as_millis() as u64, "summary": summary}));
    } else {
        let s = elapsed.as_secs_f64();
        let (created, recreated, kept, removed) = (summary.created, summary.recreated, summary.kept, summary.removed);
        let project = || state.project.clone();
        let counts = format!("{created} created, {recreated} recreated, {kept} kept, {removed} removed");
        match said {
            Said::Up if options.only.is_some() => {
                eprintln!("{} {} up in {s:.2}s: {counts}", names.join(", "), if names.len() > 1 { "are" } else { "is" });
            }
            Said::Up => eprintln!("{} is up in {s:.2}s: {counts}", project()),
            Said::Quietly => {}
            Said::Started(named) | Said::Restarted(named) => {
                let verb = if matches!(said, Said::Started(_)) { "started" } else { "restarted" };
                eprintln!("{verb} {} in {s:.2}s", if named.is_empty() { project() } else { named.join(", ") });
            }
        }
    }
    Ok(Converged::Done(summary))
}
