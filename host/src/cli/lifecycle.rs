//! `stop`, `start` and `restart`: a stack's services stopped and started
//! again in place, their containers (ids, data, logs) kept. Starting is
//! `up`'s convergence limited to what exists, so readiness and start hooks
//! run as they do on `up`.

use std::{collections::BTreeSet, collections::HashMap, process::ExitCode, time::Duration, time::Instant};

use futures_util::future::join_all;

use super::{
    Prepared,
    args::{RestartArgs, StartArgs, StopArgs},
    connect, prepare,
    up::{Converged, Said, converge, journal, no_such_service, only},
};
use crate::{
    apply::{self, UpOptions},
    desired::DesiredState,
    engine::{Engine, EngineError},
    journal::Journal,
    writer::Writer,
};

pub async fn stop(args: StopArgs) -> miette::Result<ExitCode> {
    let prepared = prepare(&args.stack, args.stack.locked)?;
    let state = &prepared.planned.state;
    let _writer = Writer::claim(&state.project, "provision stop")?;
    let engine = connect(&args.stack.project, Some(&prepared.stack)).await?;
    let named = named(state, &args.services)?;
    let started = Instant::now();
    let stopped = stop_in_order(engine.as_ref(), state, &named, args.grace, &journal(&prepared)).await?;
    if stopped.is_empty() {
        eprintln!("nothing of {} was running", list(&named));
    } else {
        let (what, it) = (list(&stopped), if stopped.len() > 1 { "them" } else { "it" });
        eprintln!("stopped {what} in {:.2}s; `provision start` starts {it} again", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn start(args: StartArgs) -> miette::Result<ExitCode> {
    let prepared = prepare(&args.stack, args.stack.locked)?;
    let _writer = Writer::claim(&prepared.planned.state.project, "provision start")?;
    let engine = connect(&args.stack.project, Some(&prepared.stack)).await?;
    let options = start_options(&prepared, &args)?;
    exit_code(converge(&prepared, engine.as_ref(), &options, args.json, Said::Started(&args.services)).await?)
}

pub async fn restart(args: RestartArgs) -> miette::Result<ExitCode> {
    let prepared = prepare(&args.start.stack, args.start.stack.locked)?;
    let state = &prepared.planned.state;
    let _writer = Writer::claim(&state.project, "provision restart")?;
    let engine = connect(&args.start.stack.project, Some(&prepared.stack)).await?;
    let options = start_options(&prepared, &args.start)?;
    // Nothing is stopped that could not be started again as it is.
    apply::check_startable(engine.as_ref(), state, &options).await?;
    stop_in_order(engine.as_ref(), state, &named(state, &args.start.services)?, args.grace, &options.journal).await?;
    exit_code(converge(&prepared, engine.as_ref(), &options, args.start.json, Said::Restarted(&args.start.services)).await?)
}

fn start_options(prepared: &Prepared, args: &StartArgs) -> miette::Result<UpOptions> {
    let mut options = UpOptions::new(prepared.stack.dir.clone(), Duration::from_secs(args.timeout), None, journal(prepared));
    options.only = only(prepared, &args.services)?;
    options.existing_only = true;
    Ok(options)
}

fn exit_code(converged: Converged) -> miette::Result<ExitCode> {
    Ok(match converged {
        Converged::Done(_) => ExitCode::SUCCESS,
        Converged::Interrupted => ExitCode::from(130),
    })
}

fn named(state: &DesiredState, services: &[String]) -> miette::Result<BTreeSet<String>> {
    state.named(services).map_err(no_such_service)
}

fn list(services: &BTreeSet<String>) -> String {
    services.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Stop the running containers of `services`, those that use another
/// before it (so none logs a lost connection on its way down): in waves,
/// each wave's containers at once. Returns the services that had any.
pub(super) async fn stop_in_order(
    engine: &dyn Engine,
    state: &DesiredState,
    services: &BTreeSet<String>,
    grace: u32,
    journal: &Journal,
) -> miette::Result<BTreeSet<String>> {
    // In reverse start order every service comes after those that use it.
    let mut wave: HashMap<&str, usize> = HashMap::new();
    for service in state.services.iter().rev().filter(|s| services.contains(&s.name)) {
        let users = state.services.iter().filter(|u| u.depends_on.iter().any(|d| d.service == service.name));
        let after = users.filter_map(|u| wave.get(u.name.as_str())).map(|w| w + 1).max().unwrap_or(0);
        wave.insert(&service.name, after);
    }
    let containers = engine.containers(&state.project).await?;
    // A one-off (`run SERVICE`) is the user's: it ends with its command.
    let running: Vec<_> = containers.iter().filter(|c| c.running && c.label("role") != Some("run")).collect();
    let mut stopped = BTreeSet::new();
    for now in 0..=wave.values().copied().max().unwrap_or(0) {
        let these: Vec<_> = running.iter().filter(|c| c.label("service").and_then(|s| wave.get(s)) == Some(&now)).collect();
        let results = join_all(these.iter().map(|c| engine.stop(&c.id, grace))).await;
        results.into_iter().collect::<Result<Vec<()>, EngineError>>()?;
        these.iter().for_each(|c| journal.stopped(&c.id));
        stopped.extend(these.iter().filter_map(|c| c.label("service")).map(str::to_string));
    }
    Ok(stopped)
}
