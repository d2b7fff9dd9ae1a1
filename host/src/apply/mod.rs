//! Apply: converge the engine to the desired state. Owns `up`'s outline:
//! diff, check what must hold before anything is created (ownership, host
//! ports, images, locked digests), networks and volumes, then hand the
//! services to the scheduler. The steps live in submodules, each taking
//! the one `up`'s shared state (`context::Up`):
//!
//! - `schedule`: services in dependency order, in parallel where nothing orders them
//! - `lifecycle`: create / files / start / tasks / remove, and `down`
//! - `readiness`: probes from the host, then hooks
//! - `snapshots`: data seeded from a snapshot, or sealed until one is kept
//! - `events`: what is reported as it goes (apply reports; it never prints)

mod build;
mod context;
mod events;
mod hop;
mod lifecycle;
mod readiness;
mod schedule;
mod snapshots;

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use futures_util::{FutureExt, future::join_all};
use provision_registry::LockedImage;
use serde::Serialize;

use crate::{
    desired::{DesiredState, Image, Network},
    engine::{Actual, Engine, EngineError, Existing, STOP_TIMEOUT_SECS},
    reconcile::{self, Change, Diff, Names, label},
};

pub use crate::engine::Role;
pub use build::{Built, build_services};
use context::{Builds, Up};
pub use context::{Failure, UpOptions};
pub use events::{Event, Events, Phase};
pub use hop::{Start, container_spec};
pub use lifecycle::{Removed, down};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error("project `{project}` is already running from {other}; this stack is in {ours}")]
    #[diagnostic(help(
        "choose another project name with -p NAME, or run `provision down` in {other} first; \
         if that folder was deleted, `provision gc --gone` removes what it left (its volumes too)"
    ))]
    Collision { project: String, other: String, ours: String },
    #[error(
        "service `{service}` wants host port {port}, which is already in use on 127.0.0.1; nothing was created. Free the port, or set another one in stack.toml"
    )]
    PortTaken { service: String, port: u16 },
    #[error(
        "image {reference} is locked at {expected}, but the engine has {actual}; nothing was created. \
         If the new image is intended, run `provision lock` (and commit stack.lock)"
    )]
    LockedImage { reference: String, expected: String, actual: String },
    #[error("{kind} `{name}` on the engine belongs to {owner}, not to project `{project}` in {ours}; nothing of it was used")]
    #[diagnostic(help("choose another project name with -p NAME, or remove that {kind} if it is no longer needed"))]
    NotOurs { kind: &'static str, name: String, owner: String, project: String, ours: String },
    #[error(
        "network `{name}` exists with internal = {actual}, but the plan wants internal = {wanted}; a network's setting cannot change while it exists"
    )]
    #[diagnostic(help("run `provision down` and then `provision up` to recreate it with the new setting"))]
    NetworkChanged { name: String, actual: bool, wanted: bool },
    #[error("network `{name}` is external (made outside the stack), and the engine has no network `{engine_name}`; nothing was created")]
    #[diagnostic(help(
        "create it (`docker network create {engine_name}`) or bring up the stack that makes it, then run `provision up` again; \
         or drop `external = true` from [networks.{name}] for the stack to make its own"
    ))]
    ExternalNetworkMissing { name: String, engine_name: String },
    #[error("`{service}`'s `{container}` cannot just be started: {why}; nothing was started")]
    #[diagnostic(help("`provision up {service}` creates or recreates it (and starts it)"))]
    NotStartable { service: String, container: String, why: String },
    #[error("images were not pulled within {0:?}; nothing was created")]
    #[diagnostic(help("a slow registry needs a longer --timeout"))]
    ImagesTimedOut(Duration),
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    #[diagnostic(transparent)]
    Engine(#[from] EngineError),
    #[error("{}", failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n\n"))]
    Failed { failures: Vec<Failure> },
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub created: usize,
    pub recreated: usize,
    pub kept: usize,
    pub removed: usize,
    /// What every image of the plan resolved to, for stack.lock.
    pub images: Vec<LockedImage>,
}

/// Bring the project to the desired state. Returns when every service is
/// ready, or with every failure found.
pub async fn up(engine: &dyn Engine, state: &DesiredState, options: &UpOptions, events: &dyn Events) -> Result<Summary, ApplyError> {
    let started = Instant::now();
    let state = &*scoped(state, options);
    let names = Names { project: &state.project };
    let (all, diff) = compare(engine, state, options).await?;
    let ours = options.project_dir.display().to_string();
    check_ports(state, &diff, &all)?;
    // A network made outside the stack is there before anything is pulled,
    // built, made or removed, or nothing is done.
    for (name, external) in &state.external_networks {
        if engine.network(external).await?.is_none() {
            return Err(ApplyError::ExternalNetworkMissing { name: name.clone(), engine_name: external.clone() });
        }
    }

    // Pulls first, all at once: a missing image fails before anything is
    // created, and counts against --timeout like every other wait. Builds
    // go on beside the services that do not need them: each service waits
    // for its own (a build's lock entry is its inputs' hash, known now).
    let mut pulls: Vec<&str> = Vec::new();
    let mut builds: Builds = HashMap::new();
    for service in &state.services {
        for c in service.plan.tasks.iter().chain(&service.plan.containers) {
            if diff.step(&service.name, &c.name).is_some_and(|s| s.change == Change::Keep) {
                continue;
            }
            match &c.image {
                Image::Pull(image) if !pulls.contains(&image.as_str()) => pulls.push(image),
                Image::Build(spec) if !builds.contains_key(&spec.input_hash) => {
                    let build =
                        build::build(engine, state, &service.name, spec, options, events, started).map(|r| r.map(drop).map_err(|e| e.to_string()));
                    builds.insert(spec.input_hash.clone(), build.boxed().shared());
                }
                _ => {}
            }
        }
    }
    let pulls = join_all(pulls.iter().map(|i| engine.ensure_image(i)));
    let pulled = tokio::time::timeout_at((started + options.timeout).into(), pulls).await.map_err(|_| ApplyError::ImagesTimedOut(options.timeout))?;
    pulled.into_iter().collect::<Result<Vec<()>, EngineError>>()?;
    let resolved_images = image_digests(engine, state).await?;
    if let Some(locked) = &options.locked_images {
        for image in &resolved_images {
            let expected = locked.iter().find(|l| l.reference == image.reference).map(|l| l.digest.as_str());
            if expected != Some(image.digest.as_str()) {
                return Err(ApplyError::LockedImage {
                    reference: image.reference.clone(),
                    expected: expected.unwrap_or("(not in stack.lock)").to_string(),
                    actual: image.digest.clone(),
                });
            }
        }
    }

    // Gone from the stack (a scaled-down replica, a removed service): each
    // stopped as `down` stops it, so a server closes its listener and ends
    // the requests it holds before its address leaves the network.
    let orphans = diff.orphan_ids.iter().filter(|_| !options.existing_only).map(|id| engine.stop_and_remove(id, STOP_TIMEOUT_SECS));
    join_all(orphans).await.into_iter().collect::<Result<Vec<()>, EngineError>>()?;
    let project_labels = || options.project_labels(&state.project);
    // A network or volume of this name that another project or checkout
    // made is never used: it would share its data or its network.
    let not_ours = |kind: &'static str, name: String, existing: Option<Existing>| -> Result<Option<Existing>, ApplyError> {
        let Some(existing) = existing else { return Ok(None) };
        if existing.labels.get(&label("project")) == Some(&state.project) && existing.labels.get(&label("project-dir")) == Some(&ours) {
            return Ok(Some(existing));
        }
        let owner = match (existing.labels.get(&label("project")), existing.labels.get(&label("project-dir"))) {
            (Some(project), Some(dir)) => format!("project `{project}` in {dir}"),
            _ => "something other than provision".to_string(),
        };
        Err(ApplyError::NotOurs { kind, name, owner, project: state.project.clone(), ours: ours.clone() })
    };
    let mut networks = vec![Network { name: "default".into(), internal: false }];
    networks.extend(state.services.iter().flat_map(|s| s.plan.networks.iter().cloned()));
    for network in networks.iter().filter(|n| !n.name.is_empty()) {
        stopped(options)?;
        if state.external_networks.contains_key(&network.name) {
            continue;
        }
        let name = names.network(&network.name);
        let existing = not_ours("network", name.clone(), engine.ensure_network(&name, network.internal, project_labels()).await?)?;
        if let Some(existing) = existing.filter(|e| e.internal != network.internal) {
            return Err(ApplyError::NetworkChanged { name, actual: existing.internal, wanted: network.internal });
        }
    }
    // New volumes hold no data yet: only theirs is seeded from a snapshot.
    let mut new_volumes = HashSet::new();
    for service in &state.services {
        for volume in &service.plan.volumes {
            let mut labels = project_labels();
            labels.insert(label("service"), service.name.clone());
            stopped(options)?;
            let name = names.volume(&service.name, volume);
            let existing = engine.ensure_volume(&name, labels).await?;
            if existing.is_none() {
                new_volumes.insert(name.clone());
            }
            not_ours("volume", name, existing)?;
        }
    }

    stopped(options)?;
    let up = Up { engine, state, diff: &diff, options, events, started, names: &names, new_volumes: &new_volumes, builds: &builds };
    let results = schedule::all(&up).await;

    let failures: Vec<Failure> = results.into_iter().filter_map(Result::err).collect();
    let now = engine.containers(&state.project).await?;
    options.journal.retain(&now.iter().map(|a| a.id.as_str()).collect());
    if !failures.is_empty() {
        return Err(ApplyError::Failed { failures });
    }
    let count = |f: fn(&Change) -> bool| diff.steps.iter().filter(|s| f(&s.change)).count();
    Ok(Summary {
        created: count(|c| *c == Change::Create),
        recreated: count(|c| matches!(c, Change::Recreate { .. })),
        kept: count(|c| *c == Change::Keep),
        removed: diff.orphans.len(),
        images: resolved_images,
    })
}

/// `up SERVICE…`: the rest of the project is not this up's to change.
fn scoped<'a>(state: &'a DesiredState, options: &UpOptions) -> Cow<'a, DesiredState> {
    match &options.only {
        Some(only) => Cow::Owned(state.only(only)),
        None => Cow::Borrowed(state),
    }
}

/// Every container of the project, and the diff of the (scoped) plan with
/// those in scope; for `start`, refused unless every one is to be kept.
async fn compare(engine: &dyn Engine, state: &DesiredState, options: &UpOptions) -> Result<(Vec<Actual>, Diff), ApplyError> {
    let all = engine.containers(&state.project).await?;
    let ours = options.project_dir.display().to_string();
    if let Some(other) = reconcile::other_owner(&options.project_dir, &all) {
        return Err(ApplyError::Collision { project: state.project.clone(), other: other.to_string(), ours });
    }
    let in_scope = |a: &&Actual| options.only.as_ref().is_none_or(|only| a.label("service").is_some_and(|s| only.contains(s)));
    let actual: Vec<Actual> = all.iter().filter(in_scope).cloned().collect();
    let mut diff = reconcile::diff(state, &actual, &options.journal, engine.runs_copies());
    rebuilt(engine, state, &mut diff).await?;
    if options.existing_only
        && let Some(step) = diff.steps.iter().find(|s| s.change != Change::Keep)
    {
        let why = match &step.change {
            Change::Recreate { fields } => format!("it changed since `up` ({})", fields.join(", ")),
            _ => "it has no container yet".to_string(),
        };
        return Err(ApplyError::NotStartable { service: step.service.clone(), container: step.container.clone(), why });
    }
    Ok((all, diff))
}

/// A kept container whose image was built again since (`provision build
/// --no-cache`, or by hand under the same inputs) runs an old image: it is
/// recreated, as compose does after `build`.
async fn rebuilt(engine: &dyn Engine, state: &DesiredState, diff: &mut Diff) -> Result<(), ApplyError> {
    for step in diff.steps.iter_mut().filter(|s| s.change == Change::Keep) {
        let Some(running) = step.actual.as_ref().and_then(|a| a.image_id.clone()) else { continue };
        let service = state.services.iter().find(|s| s.name == step.service);
        let planned = service.into_iter().flat_map(|s| s.plan.containers.iter().chain(&s.plan.tasks)).find(|c| c.name == step.container);
        if let Some(Image::Build(spec)) = planned.map(|c| &c.image)
            && engine.image_id(&spec.tag(&state.build_scope)).await?.is_some_and(|now| now != running)
        {
            step.change = Change::Recreate { fields: vec!["image (built again)".into()] };
        }
    }
    Ok(())
}

/// `restart`, before it stops anything: every container in scope can be
/// started again as it is.
pub async fn check_startable(engine: &dyn Engine, state: &DesiredState, options: &UpOptions) -> Result<(), ApplyError> {
    compare(engine, &scoped(state, options), options).await.map(drop)
}

/// After Ctrl-C nothing new is created (see `UpOptions::interrupted`).
fn stopped(options: &UpOptions) -> Result<(), ApplyError> {
    if options.is_interrupted() { Err(ApplyError::Interrupted) } else { Ok(()) }
}

/// Every pulled image of the plan with the digest the engine has for it,
/// keyed by the reference the plugin asked for.
pub async fn image_digests(engine: &dyn Engine, state: &DesiredState) -> Result<Vec<LockedImage>, ApplyError> {
    let mut images = Vec::new();
    for service in &state.services {
        for c in service.plan.tasks.iter().chain(&service.plan.containers) {
            let run = match &c.image {
                Image::Pull(run) => run,
                Image::Build(spec) => {
                    let reference = format!("build:{}/{}", service.name, c.name);
                    if !images.iter().any(|i: &LockedImage| i.reference == reference) {
                        images.push(LockedImage { reference, substitute: None, digest: format!("inputs:sha256:{}", spec.input_hash) });
                    }
                    continue;
                }
            };
            let original = state.substitutes.iter().find(|(_, s)| *s == run).map(|(o, _)| o.clone());
            let reference = original.clone().unwrap_or_else(|| run.clone());
            if images.iter().any(|i: &LockedImage| i.reference == reference) {
                continue;
            }
            if let Some(digest) = engine.image_digest(run).await? {
                images.push(LockedImage { reference, substitute: original.map(|_| run.clone()), digest });
            }
        }
    }
    // In stack.lock's order, so the two compare equal when nothing changed.
    images.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(images)
}

/// Host ports a new container would publish must be free, unless the
/// project's own container that holds them is about to be replaced.
fn check_ports(state: &DesiredState, diff: &Diff, actual: &[Actual]) -> Result<(), ApplyError> {
    let ours: Vec<u16> = actual.iter().flat_map(Actual::host_ports).collect();
    for service in &state.services {
        for c in service.plan.containers.iter().chain(&service.plan.tasks) {
            if diff.step(&service.name, &c.name).is_some_and(|s| s.change == Change::Keep) {
                continue;
            }
            for port in c.ports.iter().filter_map(|p| p.host).filter(|p| *p != 0) {
                if !ours.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                    return Err(ApplyError::PortTaken { service: service.name.clone(), port });
                }
            }
        }
    }
    Ok(())
}
