//! The scheduler: every service of the plan runs as its own future: its
//! containers are created at once, and their start is gated on what its
//! dependencies have reached (started / ready), so independent services
//! start in parallel and each starts the moment it may. Owns the ordering;
//! must not talk to the engine except through `lifecycle` and `readiness`.

use std::{collections::HashMap, time::Instant};

use futures_util::{
    StreamExt,
    future::{BoxFuture, join_all},
    stream::FuturesUnordered,
};
use tokio::sync::{mpsc, watch};

use super::{
    context::{Failure, Up},
    events::Phase,
    lifecycle, readiness,
    snapshots::{self, Keeper},
};
use crate::desired::{Image, Instance, ServiceState, WaitFor};

/// How far a service has come, for its dependents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reached {
    Pending,
    Started,
    Ready,
    Failed,
}

/// Run every service; one result per service, in the plan's order.
pub(super) async fn all(up: &Up<'_, '_>) -> Vec<Result<(), Failure>> {
    let state = up.state;
    let channels: HashMap<&str, (watch::Sender<Reached>, watch::Receiver<Reached>)> =
        state.services.iter().map(|s| (s.name.as_str(), watch::channel(Reached::Pending))).collect();
    let (keeper, kept) = mpsc::unbounded_channel();
    let services = join_all(state.services.iter().map(|service| {
        let (channels, keeper) = (&channels, &keeper);
        async move {
            // Only those in this `up` (`up SERVICE…` leaves the others as they are).
            let deps: Vec<(WaitFor, String, watch::Receiver<Reached>)> = service
                .depends_on
                .iter()
                .filter_map(|d| Some((service.waits_for(d)?, d.service.clone(), channels.get(d.service.as_str())?.1.clone())))
                .collect();
            let tx = &channels[service.name.as_str()].0;
            let result = service_up(up, service, deps, tx, keeper).await;
            let _ = tx.send(if result.is_ok() { Reached::Ready } else { Reached::Failed });
            result
        }
    }));
    let services = async {
        let results = services.await;
        let _ = keeper.send(None);
        results
    };
    tokio::join!(services, keep_snapshots(kept)).0
}

/// Bring one service up.
async fn service_up<'s>(
    up: &'s Up<'_, '_>,
    service: &ServiceState,
    deps: Vec<(WaitFor, String, watch::Receiver<Reached>)>,
    tx: &watch::Sender<Reached>,
    keeper: &Keeper<'s>,
) -> Result<(), Failure> {
    let name = &service.name;
    let deadline = up.deadline();

    up.stop_if_interrupted(name)?;
    built(up, service, deadline).await?;
    let instances = service.plan.instances(up.engine.runs_copies());
    let (tasks, running): (Vec<&Instance>, Vec<&Instance>) = instances.iter().partition(|i| i.task);
    let created = lifecycle::create_ahead(up, service, &instances).await.map_err(|f| up.failed(name, f))?;
    // What never starts is removed: nothing of it is left for the next
    // `up` to find (a failed task is kept, for inspection).
    if let Err(failure) = gate(up, name, deps, deadline).await {
        lifecycle::remove_unstarted(up, created.ids.values()).await;
        return Err(failure);
    }
    for task in tasks {
        let result = match up.stop_if_interrupted(name) {
            Ok(()) => lifecycle::run_task(up, service, task, created.ids.get(&task.container.name), deadline).await.map_err(|f| up.failed(name, f)),
            Err(failure) => Err(failure),
        };
        if let Err(failure) = result {
            lifecycle::remove_unstarted(up, running.iter().filter_map(|i| created.ids.get(&i.container.name))).await;
            return Err(failure);
        }
    }

    // The first container is the service's main one; the others (its
    // copies, an exporter) start once it has, so their first connection to
    // it finds it on the network instead of waiting out a TCP retry (1 s).
    let mut ids = Vec::new();
    up.stop_if_interrupted(name)?;
    let ids_of = &created.ids;
    if let Some((main, others)) = running.split_first() {
        let started = lifecycle::start_container(up, service, &main.container, ids_of.get(&main.container.name)).await;
        ids.push(started.map_err(|f| up.failed(name, f))?);
        let others = others.iter().map(|i| lifecycle::start_container(up, service, &i.container, ids_of.get(&i.container.name)));
        for result in join_all(others).await {
            ids.push(result.map_err(|f| up.failed(name, f))?);
        }
    }
    // A container keeping a snapshot is sealed until its copy is taken:
    // for its dependents the service has started only then (`snapshots`).
    if created.keep.is_empty() {
        let _ = tx.send(Reached::Started);
    }

    // Dependents wait for what answers to the service's name (its main
    // container and its copies), not for its sidecars: an exporter that
    // is still retrying a login the main container's hook has just set
    // (a second, for postgres's) stays off their path. Its snapshots are
    // copied before they are let go, as nothing of theirs has written yet.
    let sealed_sidecar = created.keep.iter().any(|k| running.iter().any(|i| i.container.name == k.container && !i.answers_to_name));
    let group = |named: bool| {
        let mine: Vec<_> = running.iter().zip(&ids).filter(|(i, _)| i.answers_to_name == named).collect();
        let keep = &created.keep;
        async move {
            for result in join_all(mine.iter().map(|(i, (id, fresh))| readiness::ready(up, service, &i.container, id, *fresh, deadline))).await {
                result.map_err(|f| up.failed(name, f))?;
            }
            for sealed in keep {
                if let Some((_, (id, _))) = mine.iter().find(|(i, _)| i.container.name == sealed.container) {
                    snapshots::keep_snapshot(up, name, id, sealed, keeper).await.map_err(|f| up.failed(name, f))?;
                }
            }
            Ok::<(), Failure>(())
        }
    };
    if sealed_sidecar {
        // Rare: a sidecar keeps data of its own; nothing is let go before its copy.
        let (named, sidecars) = tokio::join!(group(true), group(false));
        named.and(sidecars)?;
        let _ = tx.send(Reached::Ready);
    } else {
        let named = async {
            group(true).await?;
            let _ = tx.send(Reached::Ready);
            Ok::<(), Failure>(())
        };
        let (named, sidecars) = tokio::join!(named, group(false));
        named.and(sidecars)?;
    }
    let all_kept = ids.iter().all(|(_, fresh)| !fresh) && !service.plan.containers.is_empty();
    up.emit(name, if all_kept { Phase::Kept } else { Phase::Ready });
    Ok(())
}

/// Wait for the images this service builds (each build runs once, for
/// every service that waits for it, from the moment `up` begins).
async fn built(up: &Up<'_, '_>, service: &ServiceState, deadline: Instant) -> Result<(), Failure> {
    let mine = service.plan.tasks.iter().chain(&service.plan.containers).filter_map(|c| match &c.image {
        Image::Build(spec) => up.builds.get(&spec.input_hash).cloned(),
        Image::Pull(_) => None,
    });
    let fail = |reason: String| Failure::new(&service.name, "building its image", reason);
    match tokio::time::timeout_at(deadline.into(), futures_util::future::try_join_all(mine)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(reason)) => Err(up.failed(&service.name, fail(reason))),
        Err(_) => Err(up.failed(&service.name, fail(format!("it was not built within {:?} (--timeout)", up.options.timeout)))),
    }
}

/// Wait until every dependency has reached what this service needs of it.
async fn gate(up: &Up<'_, '_>, name: &str, deps: Vec<(WaitFor, String, watch::Receiver<Reached>)>, deadline: Instant) -> Result<(), Failure> {
    let fail = |waiting_for: String, reason: String| Failure::new(name, &waiting_for, reason);
    for (wait, dep, mut rx) in deps {
        up.emit(name, Phase::Waiting(dep.clone()));
        let needed = |r: &Reached| match wait {
            WaitFor::Started => matches!(r, Reached::Started | Reached::Ready | Reached::Failed),
            // A service is ready only after its tasks exited 0.
            WaitFor::Ready | WaitFor::Completed => matches!(r, Reached::Ready | Reached::Failed),
            WaitFor::Planned => true,
        };
        let reached = tokio::time::timeout_at(deadline.into(), rx.wait_for(needed)).await;
        match reached {
            Ok(Ok(r)) if *r != Reached::Failed => {}
            Ok(_) => return Err(up.failed(name, fail(format!("waiting for `{dep}`"), format!("`{dep}` did not come up")))),
            Err(_) => return Err(up.failed(name, fail(format!("waiting for `{dep}`"), "timed out".into()))),
        }
    }
    Ok(())
}

/// Build the snapshot images services hand over, each as it comes, until
/// every service is done (None) and every build has finished.
async fn keep_snapshots(mut kept: mpsc::UnboundedReceiver<Option<BoxFuture<'_, ()>>>) {
    let mut building = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = kept.recv() => match next {
                Some(Some(build)) => building.push(build),
                _ => break,
            },
            Some(()) = building.next(), if !building.is_empty() => {}
        }
    }
    while building.next().await.is_some() {}
}
