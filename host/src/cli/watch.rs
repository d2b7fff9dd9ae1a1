//! `provision watch` (and `up --watch`): bring the stack up as `up` does,
//! then carry out each service's work for the files that change, by its
//! watch rules (the plugin's, then stack.toml's). One batch at a time, so
//! no service ever has two actions running; within a batch, a service's
//! work waits for the work of the services it uses (rails's `bundle` and
//! restart before its Sidekiq workers restart).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::IsTerminal,
    process::ExitCode,
    time::Instant,
};

use futures_util::future::join_all;

use super::{
    Prepared,
    args::UpArgs,
    lifecycle::stop_in_order,
    prepare,
    up::{Converged, Said, converge, journal, only},
};
use crate::{
    apply::{self, UpOptions},
    desired::{DesiredState, WatchAction},
    engine::{Actual, Engine, ExecCommand},
    secrets, ui,
    watch::{Rules, Watcher, Work, sync},
    writer::Writer,
};

/// After `up` converged: watch until Ctrl-C. The stack keeps running.
pub(super) async fn watch(args: &UpArgs, mut prepared: Prepared, engine: &dyn Engine) -> miette::Result<ExitCode> {
    let json = args.json;
    let only = only(&prepared, &args.services)?;
    let mut rules = rules(&prepared, only.as_ref())?;
    let mut watcher = Watcher::start(&prepared.stack.dir, &rules.paths()).map_err(|e| miette::miette!("{e}"))?;
    give_back_memory();
    let services = rules.services().join(", ");
    if json {
        println!("{}", serde_json::json!({"event": "watching", "services": rules.services(), "paths": rules.paths()}));
    } else {
        eprintln!("watching {} for {services}; Ctrl-C stops watching (the stack keeps running)", ui::count(rules.paths().len(), "path"));
    }
    loop {
        let changes = tokio::select! {
            changes = watcher.next() => match changes { Some(changes) => changes, None => break },
            _ = tokio::signal::ctrl_c() => break,
        };
        let work = rules.work(&changes);
        if work.is_empty() {
            continue;
        }
        let _writer = claim(&prepared.planned.state.project).await?;
        let (rebuilding, because) = asking(&work, &WatchAction::Rebuild);
        if !rebuilding.is_empty() {
            // One `up` for every service that rebuilds: the changed context
            // is a new image, and what uses it is recreated with it.
            let started = Instant::now();
            match rebuild(args, engine).await {
                Ok(next) => {
                    report(json, &rebuilding.join(", "), "rebuild", &because, started, Ok(()));
                    prepared = next;
                    give_back_memory();
                    let paths = rules.paths();
                    rules = self::rules(&prepared, only.as_ref())?;
                    if rules.paths() != paths {
                        watcher = Watcher::start(&prepared.stack.dir, &rules.paths()).map_err(|e| miette::miette!("{e}"))?;
                    }
                }
                Err(e) => report(json, &rebuilding.join(", "), "rebuild", &because, started, Err(format!("{e:?}"))),
            }
        }
        let (here, work) = (&prepared, &work);
        for wave in waves(&here.planned.state, work.keys().cloned().collect()) {
            join_all(wave.iter().map(|service| {
                let w = &work[service];
                let actions: Vec<&WatchAction> = w.actions.iter().filter(|a| **a != WatchAction::Rebuild).collect();
                async move {
                    if actions.is_empty() {
                        return;
                    }
                    let started = Instant::now();
                    let line = actions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                    let spinner = (!json && std::io::stderr().is_terminal()).then(|| spinner(&format!("{service}: {line}…")));
                    let result = act(args, here, engine, service, w, &actions).await;
                    spinner.iter().for_each(indicatif::ProgressBar::finish_and_clear);
                    report(json, service, &line, &w.because.iter().map(String::as_str).collect::<Vec<_>>(), started, result);
                }
            }))
            .await;
        }
    }
    if !json {
        eprintln!("stopped watching; {} keeps running (`provision down` removes it)", prepared.planned.state.project);
    }
    Ok(ExitCode::SUCCESS)
}

/// The services whose work holds `action`, and the changes behind it.
fn asking<'a>(work: &'a BTreeMap<String, Work>, action: &WatchAction) -> (Vec<&'a str>, Vec<&'a str>) {
    let asking: Vec<(&String, &Work)> = work.iter().filter(|(_, w)| w.actions.contains(action)).collect();
    (asking.iter().map(|(s, _)| s.as_str()).collect(), asking.iter().flat_map(|(_, w)| &w.because).map(String::as_str).collect())
}

pub(super) fn rules(prepared: &Prepared, only: Option<&BTreeSet<String>>) -> miette::Result<Rules> {
    let rules = Rules::of(&prepared.planned.state, only).map_err(|e| miette::miette!("{e}"))?;
    if rules.is_empty() {
        return Err(miette::miette!(
            help = "add rules to a service in stack.toml, e.g. watch = [{ path = \"src/\", action = \"restart\" }]; `provision plan --json` shows each service's",
            "no service here has watch rules: nothing to watch"
        ));
    }
    Ok(rules)
}

/// The project lock, for the length of one batch: waits while another
/// `provision` changes the project, rather than giving up on the change.
async fn claim(project: &str) -> miette::Result<Writer> {
    let mut said = false;
    loop {
        match Writer::claim(project, "provision watch") {
            Ok(writer) => return Ok(writer),
            Err(busy) if !said => {
                eprintln!("watch: waiting: {busy}");
                said = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Plan again (the context's hash is the image's tag) and converge.
async fn rebuild(args: &UpArgs, engine: &dyn Engine) -> miette::Result<Prepared> {
    let next = prepare(&args.stack, args.stack.locked)?;
    let mut options = up_options(args, &next);
    options.only = only(&next, &args.services)?;
    match converge(&next, engine, &options, args.json, Said::Up).await? {
        Converged::Done(_) => Ok(next),
        Converged::Interrupted => Err(miette::miette!("interrupted")),
    }
}

fn up_options(args: &UpArgs, prepared: &Prepared) -> UpOptions {
    let mut options = UpOptions::new(prepared.stack.dir.clone(), std::time::Duration::from_secs(args.timeout), None, journal(prepared));
    options.snapshots = !args.no_snapshots;
    options
}

/// One service's actions, in order; the first that fails ends them.
async fn act(args: &UpArgs, prepared: &Prepared, engine: &dyn Engine, service: &str, work: &Work, actions: &[&WatchAction]) -> Result<(), String> {
    let state = &prepared.planned.state;
    let failed = |e: &dyn std::fmt::Display| secrets::redact(&e.to_string());
    // Read once: no action of a watch changes a container's id.
    let containers = engine.containers(&state.project).await.map_err(|e| failed(&e))?;
    let main = state.services.iter().find(|s| s.name == service).and_then(|s| s.plan.containers.first()).map(|c| c.name.as_str());
    let ours = |c: &&Actual| c.label("service") == Some(service) && c.label("role") == Some("container") && c.label("container") == main;
    for action in actions {
        let running: Vec<&Actual> = containers.iter().filter(ours).filter(|c| c.running).collect();
        if running.is_empty() && matches!(action, WatchAction::Sync(_) | WatchAction::Exec(_)) {
            return Err(format!("no container of `{service}` is running (`provision ps` shows it; `provision up {service}` starts it)"));
        }
        match action {
            WatchAction::Sync(_) => {
                let copy = sync::copy(&prepared.stack.dir, &work.copies)?;
                for skipped in &copy.skipped {
                    eprintln!("{service}: not synced: {}", ui::printable(skipped));
                }
                for c in &running {
                    if copy.files > 0 {
                        engine.put_archive(&c.id, copy.archive.clone()).await.map_err(|e| failed(&e))?;
                    }
                    if !copy.gone.is_empty() {
                        let command: Vec<String> = ["rm", "-rf", "--"].into_iter().map(String::from).chain(copy.gone.iter().cloned()).collect();
                        exec(engine, c, &command).await?;
                    }
                }
            }
            WatchAction::Exec(command) => {
                for c in &running {
                    exec(engine, c, command).await?;
                }
            }
            WatchAction::Rerun(task) => {
                let task_container = containers
                    .iter()
                    .find(|c| c.label("service") == Some(service) && c.label("role") == Some("task") && c.label("container") == Some(task))
                    .ok_or_else(|| format!("task `{task}` has no container; `provision up {service}` makes it"))?;
                engine.start(&task_container.id).await.map_err(|e| failed(&e))?;
                let code = engine.wait_exit(&task_container.id).await.map_err(|e| failed(&e))?;
                if code != 0 {
                    let tail = engine.log_tail(&task_container.id, 20).await.unwrap_or_default();
                    return Err(format!("task `{task}` exited with code {code}:\n{}", secrets::redact(&tail)));
                }
            }
            WatchAction::Restart => restart(args, prepared, engine, service).await.map_err(|e| format!("{e:?}"))?,
            // Done for the whole batch, before any service's work.
            WatchAction::Rebuild => {}
        }
    }
    Ok(())
}

/// As `provision restart SERVICE`: stopped, started in place, ready again
/// (health checks and start hooks).
async fn restart(args: &UpArgs, prepared: &Prepared, engine: &dyn Engine, service: &str) -> miette::Result<()> {
    let state = &prepared.planned.state;
    let mut options = up_options(args, prepared);
    options.only = Some(BTreeSet::from([service.to_string()]));
    options.existing_only = true;
    apply::check_startable(engine, state, &options).await?;
    stop_in_order(engine, state, &BTreeSet::from([service.to_string()]), crate::engine::STOP_TIMEOUT_SECS, &options.journal).await?;
    match converge(prepared, engine, &options, args.json, Said::Quietly).await? {
        Converged::Done(_) => Ok(()),
        Converged::Interrupted => Err(miette::miette!("interrupted")),
    }
}

async fn exec(engine: &dyn Engine, container: &Actual, command: &[String]) -> Result<(), String> {
    let (code, output) = engine.exec(&container.id, ExecCommand { command, user: None, env: &[] }).await.map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("`{}` exited with code {code} in {}:\n{}", command.join(" "), container.name, secrets::redact(output.trim_end())));
    }
    Ok(())
}

/// The services of a batch in waves: each after those it uses, directly
/// or through services with no work of their own in the batch.
fn waves(state: &DesiredState, services: BTreeSet<String>) -> Vec<Vec<String>> {
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    // The plan is in start order: what a service uses comes before it.
    for s in &state.services {
        let after = s.depends_on.iter().filter_map(|d| level.get(d.service.as_str()).map(|l| l + usize::from(services.contains(&d.service))));
        level.insert(&s.name, after.max().unwrap_or(0));
    }
    let mut waves: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for service in services {
        waves.entry(level.get(service.as_str()).copied().unwrap_or(0)).or_default().push(service);
    }
    waves.into_values().collect()
}

fn report(json: bool, service: &str, actions: &str, because: &[&str], started: Instant, result: Result<(), String>) {
    let elapsed = started.elapsed();
    let changed = match because {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
        [] => String::new(),
    };
    if json {
        let error = result.as_ref().err();
        let event = serde_json::json!({
            "event": "watch", "service": service, "actions": actions, "changed": because.iter().take(20).collect::<Vec<_>>(),
            "changed_count": because.len(), "ok": result.is_ok(), "error": error, "elapsed_ms": elapsed.as_millis() as u64,
        });
        println!("{event}");
        return;
    }
    // File names are anyone's who can write in the project (a container
    // with a writable bind too), and an error carries a container's output:
    // neither reaches the terminal raw.
    let line = match result {
        Ok(()) => format!("{service}: {actions} ({changed} changed) in {:.2}s", elapsed.as_secs_f64()),
        Err(e) => {
            format!("{service}: {actions} ({changed} changed) failed after {:.2}s: {e}\n  watching on: fix it and save again", elapsed.as_secs_f64())
        }
    };
    eprintln!("{}", ui::printable(&line));
}

/// Planning's memory (the plugins' sandboxes, code compiled on a first
/// run) is free by now, but glibc keeps freed pages in its arenas: hand
/// them back, so a watch that runs all day holds only what it uses.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn spinner(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Dependency, ServicePlan, ServiceState, WaitFor};

    #[test]
    fn a_service_acts_after_what_it_uses_even_through_one_with_nothing_to_do() {
        let service = |name: &str, uses: &[&str]| ServiceState {
            name: name.into(),
            plugin: "x".into(),
            depends_on: uses
                .iter()
                .map(|u| Dependency { role: "r".into(), service: u.to_string(), wait: WaitFor::Started, secrets: false })
                .collect(),
            plan: ServicePlan::default(),
        };
        let mut state: DesiredState =
            serde_json::from_value(serde_json::json!({"project": "p", "profile": "dev", "plugins": [], "services": []})).unwrap();
        state.services =
            vec![service("db", &[]), service("web", &["db"]), service("worker", &["web"]), service("proxy", &["web"]), service("docs", &[])];
        let batch = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(waves(&state, batch(&["web", "worker", "docs"])), [vec!["docs", "web"], vec!["worker"]]);
        assert_eq!(waves(&state, batch(&["db", "worker", "proxy"])), [vec!["db"], vec!["proxy", "worker"]]);
    }
}
