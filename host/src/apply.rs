//! Converge the engine to the desired state: diff what runs against the
//! plan by labels, then start services in dependency order, in parallel
//! where nothing orders them, each the moment what it uses is ready.
//! Readiness is probed by the host with a fast, growing backoff.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use provision_registry::LockedImage;
use serde::Serialize;
use tokio::sync::watch;

use crate::{
    desired::{BuildSpec, Container, DesiredState, Image, MountSource, Probe, ServiceState, WaitFor},
    engine::{Actual, ContainerSpec, Engine, EngineError, LABEL_PREFIX, Labels, MountSpec},
};

/// Seconds a container gets to stop before it is killed: with an init as
/// PID 1, services shut down promptly, so `down` takes about a second.
const STOP_TIMEOUT_SECS: i64 = 3;

/// Engine names of the project's resources.
pub struct Names<'a> {
    pub project: &'a str,
}

impl Names<'_> {
    pub fn container(&self, service: &str, container: &str) -> String {
        format!("{}-{service}-{container}", self.project)
    }
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }
    /// `NAME` is the service's own volume; `SERVICE/NAME` another's.
    pub fn volume(&self, service: &str, name: &str) -> String {
        match name.split_once('/') {
            Some((owner, name)) => format!("{}_{owner}_{name}", self.project),
            None => format!("{}_{service}_{name}", self.project),
        }
    }
}

pub fn label(key: &str) -> String {
    format!("{LABEL_PREFIX}{key}")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    Create,
    /// With the top-level spec fields that differ.
    Recreate { fields: Vec<String> },
    Keep,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub service: String,
    pub container: String,
    pub task: bool,
    #[serde(flatten)]
    pub change: Change,
    #[serde(skip)]
    pub actual: Option<Actual>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub steps: Vec<Step>,
    /// Containers of the project no longer in the stack: removed by `up`.
    pub orphans: Vec<String>,
    #[serde(skip)]
    orphan_ids: Vec<String>,
}

impl Diff {
    pub fn step(&self, service: &str, container: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.service == service && s.container == container)
    }
}

/// Compare the plan with what the engine runs for the project.
pub fn diff(state: &DesiredState, actual: &[Actual]) -> Diff {
    let mut steps = Vec::new();
    let mut matched = Vec::new();
    for service in &state.services {
        let all = service.plan.tasks.iter().map(|c| (c, true)).chain(service.plan.containers.iter().map(|c| (c, false)));
        for (container, task) in all {
            let found = actual.iter().find(|a| a.label("service") == Some(&service.name) && a.label("container") == Some(&container.name));
            let change = match found {
                None => Change::Create,
                Some(a) if a.label("spec-hash") == Some(&container.spec_hash()) => Change::Keep,
                Some(a) => Change::Recreate { fields: changed_fields(container, a.label("spec")) },
            };
            if let Some(a) = found {
                matched.push(a.id.clone());
            }
            steps.push(Step { service: service.name.clone(), container: container.name.clone(), task, change, actual: found.cloned() });
        }
    }
    let orphans: Vec<&Actual> = actual.iter().filter(|a| !matched.contains(&a.id)).collect();
    Diff {
        steps,
        orphans: orphans.iter().map(|a| a.name.clone()).collect(),
        orphan_ids: orphans.iter().map(|a| a.id.clone()).collect(),
    }
}

/// Which spec fields differ from the spec recorded on the running container.
fn changed_fields(desired: &Container, recorded: Option<&str>) -> Vec<String> {
    let desired = serde_json::to_value(desired).expect("a container serializes");
    let Some(recorded) = recorded.and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()) else {
        return vec!["(spec not recorded)".into()];
    };
    let (Some(new), Some(old)) = (desired.as_object(), recorded.as_object()) else { return vec![] };
    new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
}

/// What `up` reports as it goes.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub service: String,
    #[serde(flatten)]
    pub phase: Phase,
    /// Since `up` began.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "phase", content = "detail", rename_all = "kebab-case")]
pub enum Phase {
    Waiting(String),
    /// A line of image build output.
    Building(String),
    Task(String),
    Creating(String),
    Starting,
    Probing(String),
    Hook(String),
    Ready,
    Kept,
    Failed(String),
}

pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error(
        "project `{project}` is already running from {other}; this stack is in {ours}. \
         Choose another project name with -p NAME, or run `provision down` in {other} first"
    )]
    Collision { project: String, other: String, ours: String },
    #[error("service `{service}` wants host port {port}, which is already in use on 127.0.0.1; nothing was created. Free the port, or set another one in stack.toml")]
    PortTaken { service: String, port: u16 },
    #[error(
        "image {reference} is locked at {expected}, but the engine has {actual}; nothing was created. \
         If the new image is intended, run `provision lock` (and commit stack.lock)"
    )]
    LockedImage { reference: String, expected: String, actual: String },
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("{}", failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n\n"))]
    Failed { failures: Vec<Failure> },
}

/// Why one service did not come up, with what is needed to see why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub service: String,
    pub waiting_for: String,
    pub reason: String,
    pub last_probe: Option<String>,
    pub container: Option<String>,
    pub log_tail: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service `{}` failed while {}: {}", self.service, self.waiting_for, self.reason)?;
        if let Some(probe) = self.last_probe.as_deref().filter(|p| !p.trim().is_empty()) {
            write!(f, "\n  last probe output: {}", probe.trim())?;
        }
        if let Some(tail) = self.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
            write!(f, "\n  last lines of its log:")?;
            for line in tail.trim_end().lines() {
                write!(f, "\n    | {line}")?;
            }
        }
        if let Some(container) = &self.container {
            write!(f, "\n  the container `{container}` is kept for inspection (`provision logs {}`, `docker inspect {container}`)", self.service)?;
        }
        Ok(())
    }
}

pub struct UpOptions {
    pub project_dir: PathBuf,
    pub timeout: Duration,
    /// `up --locked`: images must resolve to these digests.
    pub locked_images: Option<Vec<LockedImage>>,
    /// Containers a previous `up` saw ready: id → the start it saw. One that
    /// has not restarted since needs no probe (the engine's own check may
    /// not have run yet).
    pub seen_ready: HashMap<String, String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub created: usize,
    pub recreated: usize,
    pub kept: usize,
    pub removed: usize,
    /// What every image of the plan resolved to, for stack.lock.
    pub images: Vec<LockedImage>,
    /// Containers seen ready by this `up`: id → start time (see `UpOptions::seen_ready`).
    #[serde(skip)]
    pub ready: HashMap<String, String>,
}

/// How far a service has come, for its dependents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reached {
    Pending,
    Started,
    Ready,
    Failed,
}

/// Bring the project to the desired state. Returns when every service is
/// ready, or with every failure found.
pub async fn up<E: Engine + Sync>(engine: &E, state: &DesiredState, options: &UpOptions, events: &dyn Events) -> Result<Summary, ApplyError> {
    let started = Instant::now();
    let names = Names { project: &state.project };
    let actual = engine.containers(&state.project).await?;
    let ours = options.project_dir.display().to_string();
    if let Some(other) = actual.iter().filter_map(|a| a.label("project-dir")).find(|d| *d != ours) {
        return Err(ApplyError::Collision { project: state.project.clone(), other: other.to_string(), ours });
    }
    let diff = diff(state, &actual);
    check_ports(state, &diff, &actual)?;

    // Images first: a missing one fails before anything is created.
    let mut images: Vec<&str> = Vec::new();
    for service in &state.services {
        for c in service.plan.tasks.iter().chain(&service.plan.containers) {
            let changing = diff.step(&service.name, &c.name).is_some_and(|s| s.change != Change::Keep);
            match (&c.image, changing) {
                (Image::Pull(image), true) if !images.contains(&image.as_str()) => images.push(image),
                (Image::Build(spec), true) => build(engine, state, &service.name, spec, options, events, started).await?,
                _ => {}
            }
        }
    }
    for result in join_all(images.iter().map(|i| engine.ensure_image(i))).await {
        result?;
    }
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

    for id in &diff.orphan_ids {
        engine.remove(id).await?;
    }
    let project_labels = || Labels::from([(label("project"), state.project.clone()), (label("project-dir"), ours.clone())]);
    engine.ensure_network(&names.network("default"), false, project_labels()).await?;
    for service in &state.services {
        for network in &service.plan.networks {
            engine.ensure_network(&names.network(&network.name), network.internal, project_labels()).await?;
        }
        for volume in &service.plan.volumes {
            let mut labels = project_labels();
            labels.insert(label("service"), service.name.clone());
            engine.ensure_volume(&names.volume(&service.name, volume), labels).await?;
        }
    }

    let channels: HashMap<&str, (watch::Sender<Reached>, watch::Receiver<Reached>)> =
        state.services.iter().map(|s| (s.name.as_str(), watch::channel(Reached::Pending))).collect();
    let run = ServiceRun { engine, state, diff: &diff, options, events, started, names: &names };
    let results = join_all(state.services.iter().map(|service| {
        let run = &run;
        let channels = &channels;
        async move {
            // `planned` dependencies only ordered the plugin calls.
            let deps: Vec<(WaitFor, String, watch::Receiver<Reached>)> = service
                .depends_on
                .iter()
                .filter(|d| d.wait != WaitFor::Planned)
                .map(|d| (d.wait, d.service.clone(), channels[d.service.as_str()].1.clone()))
                .collect();
            let tx = &channels[service.name.as_str()].0;
            let result = run.service(service, deps, tx).await;
            let _ = tx.send(if result.is_ok() { Reached::Ready } else { Reached::Failed });
            result
        }
    }))
    .await;

    let mut failures = Vec::new();
    let mut ready = HashMap::new();
    for result in results {
        match result {
            Ok(seen) => ready.extend(seen),
            Err(failure) => failures.push(failure),
        }
    }
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
        ready,
    })
}

/// Every pulled image of the plan with the digest the engine has for it,
/// keyed by the reference the plugin asked for.
pub async fn image_digests<E: Engine>(engine: &E, state: &DesiredState) -> Result<Vec<LockedImage>, ApplyError> {
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

/// Build an image from its Dockerfile unless an image with its input hash
/// is already there; build output streams into the progress display.
async fn build<E: Engine>(
    engine: &E,
    state: &DesiredState,
    service: &str,
    spec: &BuildSpec,
    options: &UpOptions,
    events: &dyn Events,
    started: Instant,
) -> Result<(), ApplyError> {
    let tag = spec.tag(&state.project);
    if engine.image_digest(&tag).await?.is_some() {
        return Ok(());
    }
    let context = crate::build_context::Context::load(&options.project_dir, spec).map_err(|message| EngineError::Build { tag: tag.clone(), message })?;
    let tar = context.tar(spec).map_err(|e| EngineError::Build { tag: tag.clone(), message: e.to_string() })?;
    let emit = |line: &str| {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        events.emit(Event { service: service.to_string(), phase: Phase::Building(line.to_string()), elapsed_ms });
    };
    engine.build_image(&tag, spec, tar, &emit).await?;
    Ok(())
}

/// Host ports a new container would publish must be free, unless the
/// project's own container that holds them is about to be replaced.
fn check_ports(state: &DesiredState, diff: &Diff, actual: &[Actual]) -> Result<(), ApplyError> {
    let ours: Vec<u16> = actual.iter().flat_map(|a| a.host_ports.iter().copied()).collect();
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

struct ServiceRun<'a, E> {
    engine: &'a E,
    state: &'a DesiredState,
    diff: &'a Diff,
    options: &'a UpOptions,
    events: &'a dyn Events,
    started: Instant,
    names: &'a Names<'a>,
}

impl<E: Engine + Sync> ServiceRun<'_, E> {
    fn emit(&self, service: &str, phase: Phase) {
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        self.events.emit(Event { service: service.to_string(), phase, elapsed_ms });
    }

    /// Bring one service up; returns its containers seen ready (id → start).
    async fn service(
        &self,
        service: &ServiceState,
        deps: Vec<(WaitFor, String, watch::Receiver<Reached>)>,
        tx: &watch::Sender<Reached>,
    ) -> Result<HashMap<String, String>, Failure> {
        let name = &service.name;
        let fail = |waiting_for: &str, reason: String| Failure {
            service: name.clone(),
            waiting_for: waiting_for.to_string(),
            reason,
            last_probe: None,
            container: None,
            log_tail: None,
        };
        let deadline = self.started + self.options.timeout;

        for (wait, dep, mut rx) in deps {
            self.emit(name, Phase::Waiting(dep.clone()));
            let needed = |r: &Reached| match wait {
                WaitFor::Started => matches!(r, Reached::Started | Reached::Ready | Reached::Failed),
                WaitFor::Ready => matches!(r, Reached::Ready | Reached::Failed),
                WaitFor::Planned => true,
            };
            let reached = tokio::time::timeout_at(deadline.into(), rx.wait_for(needed)).await;
            match reached {
                Ok(Ok(r)) if *r != Reached::Failed => {}
                Ok(_) => return Err(self.failed(name, fail(&format!("waiting for `{dep}`"), format!("`{dep}` did not come up")))),
                Err(_) => return Err(self.failed(name, fail(&format!("waiting for `{dep}`"), "timed out".into()))),
            }
        }

        for task in &service.plan.tasks {
            self.run_task(service, task, deadline).await.map_err(|f| self.failed(name, f))?;
        }

        // The first container is the service's main one; the others (an
        // exporter, say) start once it has, so their first connection to it
        // finds it on the network instead of waiting out a TCP retry (1 s).
        let mut ids = Vec::new();
        if let Some((main, sidecars)) = service.plan.containers.split_first() {
            ids.push(self.start_container(service, main).await.map_err(|f| self.failed(name, f))?);
            for result in join_all(sidecars.iter().map(|c| self.start_container(service, c))).await {
                ids.push(result.map_err(|f| self.failed(name, f))?);
            }
        }
        let _ = tx.send(Reached::Started);

        let readies = service.plan.containers.iter().zip(&ids).map(|(c, (id, fresh))| self.ready(service, c, id, *fresh, deadline));
        let mut seen = HashMap::new();
        for (result, (id, _)) in join_all(readies).await.into_iter().zip(&ids) {
            if let Some(started_at) = result.map_err(|f| self.failed(name, f))? {
                seen.insert(id.clone(), started_at);
            }
        }
        let all_kept = ids.iter().all(|(_, fresh)| !fresh) && !service.plan.containers.is_empty();
        self.emit(name, if all_kept { Phase::Kept } else { Phase::Ready });
        Ok(seen)
    }

    fn failed(&self, service: &str, failure: Failure) -> Failure {
        self.emit(service, Phase::Failed(failure.reason.clone()));
        failure
    }

    /// Start (creating if needed) one container. Returns its id and whether
    /// it was (re)created or (re)started now.
    async fn start_container(&self, service: &ServiceState, c: &Container) -> Result<(String, bool), Failure> {
        let step = self.diff.step(&service.name, &c.name).expect("every container has a step");
        let failure = |what: &str, e: &dyn std::fmt::Display| Failure {
            service: service.name.clone(),
            waiting_for: what.to_string(),
            reason: e.to_string(),
            last_probe: None,
            container: None,
            log_tail: None,
        };
        if let (Change::Keep, Some(actual)) = (&step.change, &step.actual) {
            if actual.running {
                return Ok((actual.id.clone(), false));
            }
            self.emit(&service.name, Phase::Starting);
            self.engine.start(&actual.id).await.map_err(|e| failure("starting", &e))?;
            return Ok((actual.id.clone(), true));
        }
        if let Some(actual) = &step.actual {
            self.engine.remove(&actual.id).await.map_err(|e| failure("removing the old container", &e))?;
        }
        self.emit(&service.name, Phase::Creating(c.name.clone()));
        let spec = self.spec(service, c, false);
        let id = self.engine.create(&spec).await.map_err(|e| failure("creating", &e))?;
        self.engine.put_files(&id, &c.files).await.map_err(|e| failure("placing files", &e))?;
        self.emit(&service.name, Phase::Starting);
        self.engine.start(&id).await.map_err(|e| failure("starting", &e))?;
        Ok((id, true))
    }

    async fn run_task(&self, service: &ServiceState, task: &Container, deadline: Instant) -> Result<(), Failure> {
        let name = &service.name;
        let step = self.diff.step(name, &task.name).expect("every task has a step");
        let waiting_for = format!("running task `{}`", task.name);
        let failure = |reason: String| Failure { service: name.clone(), waiting_for: waiting_for.clone(), reason, last_probe: None, container: None, log_tail: None };
        if let Some(actual) = &step.actual {
            // An unchanged task that already succeeded is not run again.
            let done = self.engine.status(&actual.id).await.map_err(|e| failure(e.to_string()))?;
            if step.change == Change::Keep && !done.running && done.exit_code == Some(0) {
                return Ok(());
            }
            self.engine.remove(&actual.id).await.map_err(|e| failure(e.to_string()))?;
        }
        self.emit(name, Phase::Task(task.name.clone()));
        let spec = self.spec(service, task, true);
        let id = self.engine.create(&spec).await.map_err(|e| failure(e.to_string()))?;
        self.engine.put_files(&id, &task.files).await.map_err(|e| failure(e.to_string()))?;
        self.engine.start(&id).await.map_err(|e| failure(e.to_string()))?;
        // The engine says when it exits: no polling delay between steps.
        let mut f = match tokio::time::timeout_at(deadline.into(), self.engine.wait_exit(&id)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(code)) => failure(format!("it exited with code {code}")),
            Ok(Err(e)) => failure(e.to_string()),
            Err(_) => failure("timed out".into()),
        };
        f.log_tail = self.engine.log_tail(&id, 20).await.ok();
        f.container = Some(spec.name.clone());
        Err(f)
    }

    /// Wait until the container passes its probe, then run its hooks (only
    /// when it was just started: hooks belong to a container's first start).
    /// Returns the start time it was seen ready in.
    async fn ready(&self, service: &ServiceState, c: &Container, id: &str, fresh: bool, deadline: Instant) -> Result<Option<String>, Failure> {
        let name = &service.name;
        let container_name = self.names.container(name, &c.name);
        let mut failure = Failure {
            service: name.clone(),
            waiting_for: format!("waiting for `{}` to be ready", c.name),
            reason: String::new(),
            last_probe: None,
            container: Some(container_name.clone()),
            log_tail: None,
        };
        let mut started_at = None;
        if let Some(health) = &c.health {
            self.emit(name, Phase::Probing(c.name.clone()));
            let mut backoff = Backoff::for_probe(&health.probe);
            loop {
                let status = self.engine.status(id).await.map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?;
                started_at = status.started_at.clone();
                // A kept container that the engine finds healthy, or that was
                // seen ready in this same start, needs no probe: that keeps a
                // no-op `up` to a few engine calls.
                let seen = started_at.is_some() && self.options.seen_ready.get(id) == started_at.as_ref();
                if !fresh && status.running && (status.health.as_deref() == Some("healthy") || (seen && status.health.as_deref() != Some("unhealthy"))) {
                    break;
                }
                if !status.running {
                    failure.reason = format!("its container exited (code {})", status.exit_code.unwrap_or(-1));
                    failure.log_tail = self.engine.log_tail(id, 20).await.ok();
                    return Err(failure);
                }
                let (ok, output) = self.probe(id, &health.probe, status.ip.as_deref()).await;
                if ok {
                    break;
                }
                failure.last_probe = Some(output);
                if Instant::now() > deadline {
                    failure.reason = format!("not ready after {:?}", self.options.timeout);
                    failure.log_tail = self.engine.log_tail(id, 20).await.ok();
                    return Err(failure);
                }
                backoff.sleep().await;
            }
        }
        if fresh {
            for hook in &c.hooks {
                self.emit(name, Phase::Hook(hook.name.clone()));
                let env: Vec<String> = hook.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let (code, output) = self
                    .engine
                    .exec(id, &hook.command, hook.user.as_deref(), &env)
                    .await
                    .map_err(|e| Failure { reason: e.to_string(), ..failure.clone() })?;
                if code != 0 {
                    failure.waiting_for = format!("running hook `{}`", hook.name);
                    failure.reason = format!("it exited with code {code}");
                    failure.last_probe = Some(output);
                    return Err(failure);
                }
            }
        }
        Ok(started_at)
    }

    /// One readiness probe: (ready, output worth showing if not).
    async fn probe(&self, id: &str, probe: &Probe, ip: Option<&str>) -> (bool, String) {
        match probe {
            Probe::Exec(cmd) => match self.engine.exec(id, cmd, None, &[]).await {
                Ok((code, output)) => (code == 0, format!("exit {code}: {output}")),
                Err(e) => (false, e.to_string()),
            },
            Probe::Tcp(port) => match ip {
                Some(ip) => match tokio::net::TcpStream::connect((ip, *port)).await {
                    Ok(_) => (true, String::new()),
                    Err(e) => (false, format!("connect {ip}:{port}: {e}")),
                },
                None => (false, "the container has no address yet".into()),
            },
            Probe::Http { port, path } => match ip {
                Some(ip) => http_get(ip, *port, path).await,
                None => (false, "the container has no address yet".into()),
            },
        }
    }

    fn spec(&self, service: &ServiceState, c: &Container, task: bool) -> ContainerSpec {
        let names = self.names;
        let plugin = self.state.plugins.iter().find(|p| p.name == service.plugin);
        let mut labels: Labels = c.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, value) in [
            ("project", self.state.project.clone()),
            ("project-dir", self.options.project_dir.display().to_string()),
            ("service", service.name.clone()),
            ("container", c.name.clone()),
            ("role", if task { "task" } else { "container" }.to_string()),
            ("spec-hash", c.spec_hash()),
            ("spec", serde_json::to_string(c).expect("a container serializes")),
            ("plugin", plugin.map(|p| format!("{}@{}+sha256:{}", p.name, p.version, &p.sha256[..12])).unwrap_or_default()),
        ] {
            labels.insert(label(key), value);
        }
        let first = service.plan.containers.first().is_some_and(|f| f.name == c.name);
        let mut aliases = vec![format!("{}-{}", service.name, c.name)];
        if first && !task {
            aliases.push(service.name.clone());
        }
        let networks = if c.networks.is_empty() {
            vec![(names.network("default"), aliases)]
        } else {
            c.networks.iter().map(|n| (names.network(n), aliases.clone())).collect()
        };
        ContainerSpec {
            name: names.container(&service.name, &c.name),
            image: match &c.image {
                Image::Pull(reference) => reference.clone(),
                Image::Build(spec) => spec.tag(&self.state.project),
            },
            command: c.command.clone(),
            entrypoint: c.entrypoint.clone(),
            env: c.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
            ports: c.ports.clone(),
            mounts: c.mounts.iter().map(|m| mount_spec(m, names, &service.name, &self.options.project_dir)).collect(),
            health: c.health.clone(),
            read_only: c.read_only,
            init: c.init,
            no_new_privileges: c.no_new_privileges,
            resources: c.resources.clone(),
            restart: c.restart,
            privileges: c.privileges.clone(),
            labels,
            networks,
            stop_timeout: STOP_TIMEOUT_SECS,
        }
    }
}

/// A mount of `service`'s container in engine terms.
fn mount_spec(m: &crate::desired::Mount, names: &Names, service: &str, project_dir: &Path) -> MountSpec {
    let target = m.target.clone();
    match &m.source {
        MountSource::Volume(name) => MountSpec::Volume { name: names.volume(service, name), target, read_only: m.read_only },
        MountSource::Bind(path) => MountSpec::Bind { source: project_dir.join(path).display().to_string(), target, read_only: m.read_only },
        MountSource::Tmpfs { size_bytes, mode } => MountSpec::Tmpfs { target, size_bytes: *size_bytes, mode: *mode },
        MountSource::Anonymous => MountSpec::Anonymous { target },
    }
}

/// A minimal HTTP/1.0 GET: ready on 2xx or 3xx.
async fn http_get(ip: &str, port: u16, path: &str) -> (bool, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes()).await?;
        let mut head = vec![0u8; 256];
        let n = stream.read(&mut head).await?;
        Ok::<String, std::io::Error>(String::from_utf8_lossy(&head[..n]).to_string())
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(head)) => {
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
            ((200..400).contains(&status), head.lines().next().unwrap_or("").to_string())
        }
        Ok(Err(e)) => (false, format!("GET http://{ip}:{port}{path}: {e}")),
        Err(_) => (false, format!("GET http://{ip}:{port}{path}: no answer in 3 s")),
    }
}

/// Probe delays: start small and grow by half each time, so readiness is
/// seen within tens of milliseconds. HTTP and TCP probes come from the host
/// and cost nothing: up to 250 ms apart. An exec probe starts a process in
/// the container through the engine, which costs CPU the services starting
/// beside it need: up to 500 ms apart.
struct Backoff {
    delay: Duration,
    cap: Duration,
}

impl Backoff {
    fn for_probe(probe: &Probe) -> Self {
        let cap = if matches!(probe, Probe::Exec(_)) { 500 } else { 250 };
        Backoff { delay: Duration::from_millis(25), cap: Duration::from_millis(cap) }
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 3 / 2).min(self.cap);
    }
}

/// The project's containers by service, for `ps`, `logs` and `exec`.
pub fn by_service(actual: Vec<Actual>) -> BTreeMap<String, Vec<Actual>> {
    let mut map: BTreeMap<String, Vec<Actual>> = BTreeMap::new();
    for a in actual {
        map.entry(a.label("service").unwrap_or("?").to_string()).or_default().push(a);
    }
    map
}
