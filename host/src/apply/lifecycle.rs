//! A container's life on the engine: create (or keep), place its files,
//! start; one-shot tasks run to exit 0; and `down`. Owns the translation of
//! a planned container into an engine spec (names, labels, networks,
//! mounts). Must not decide order (the scheduler does) or readiness.

use std::{collections::HashMap, path::Path, time::Instant};

use futures_util::future::join_all;

use super::{
    context::{Failure, Up},
    events::Phase,
    snapshots::{self, Sealed},
};
use crate::{
    desired::{Container, DesiredState, HostPaths, Image, Mount, MountSource, ServiceState},
    engine::{ContainerSpec, CopySpec, Engine, EngineError, Labels, MountSpec},
    journal::Stage,
    plan::host_path,
    reconcile::{Change, Names, label},
};

/// Seconds a container gets to stop before it is killed: with an init as
/// PID 1, services shut down promptly, so `down` takes about a second.
const STOP_TIMEOUT_SECS: u32 = 3;

/// Create, without starting, every container and task of the service
/// that is new or changed (removing the one it replaces): done while
/// the service still waits for its dependencies, so no create is on the
/// critical path. A container whose new data has a snapshot starts from
/// it; one whose has none yet is to keep one once ready.
pub(super) async fn create_ahead(up: &Up<'_, '_>, service: &ServiceState) -> Result<Created, Failure> {
    let all = service.plan.tasks.iter().map(|c| (c, true)).chain(service.plan.containers.iter().map(|c| (c, false)));
    let mut created = Created::default();
    for (c, task) in all {
        let step = up.diff.step(&service.name, &c.name).expect("every container has a step");
        if step.change == Change::Keep {
            continue;
        }
        let failure = |e: &dyn std::fmt::Display| Failure::new(&service.name, &format!("creating `{}`", c.name), e.to_string());
        up.emit(&service.name, Phase::Creating(c.name.clone()));
        let mut spec = spec(up, service, c, task).map_err(|e| failure(&e))?;
        if let Some(keep) = snapshots::seed_or_seal(up, service, c, &mut spec).await.map_err(|e| failure(&e))? {
            created.keep.push(keep);
        }
        let replacing = step.actual.as_ref().map(|a| a.id.as_str());
        created.ids.insert(c.name.clone(), create(up, &spec, c, replacing).await.map_err(|e| failure(&e))?);
    }
    Ok(created)
}

/// Remove containers `create_ahead` made that will not start.
pub(super) async fn remove_unstarted(up: &Up<'_, '_>, ids: impl Iterator<Item = &String>) {
    join_all(ids.map(|id| up.engine.remove(id))).await;
}

/// Start one container: `created` ahead, or kept. Returns its id and
/// whether it was (re)started now.
pub(super) async fn start_container(
    up: &Up<'_, '_>,
    service: &ServiceState,
    c: &Container,
    created: Option<&String>,
) -> Result<(String, bool), Failure> {
    let step = up.diff.step(&service.name, &c.name).expect("every container has a step");
    let failure = |e: &dyn std::fmt::Display| Failure::new(&service.name, "starting", e.to_string());
    let id = match (created, &step.actual) {
        (Some(id), _) => id.clone(),
        (None, Some(actual)) if actual.running => return Ok((actual.id.clone(), false)),
        (None, Some(actual)) => actual.id.clone(),
        (None, None) => return Err(failure(&"it was not created")),
    };
    up.emit(&service.name, Phase::Starting);
    up.engine.start(&id).await.map_err(|e| failure(&e))?;
    up.options.journal.reached(&id, Stage::Started);
    Ok((id, true))
}

/// Run a task to exit 0: `created` ahead, or kept — then run again
/// unless it already exited 0 after being started.
pub(super) async fn run_task(
    up: &Up<'_, '_>,
    service: &ServiceState,
    task: &Container,
    created: Option<&String>,
    deadline: Instant,
) -> Result<(), Failure> {
    let name = &service.name;
    let step = up.diff.step(name, &task.name).expect("every task has a step");
    let waiting_for = format!("running task `{}`", task.name);
    let failure = |reason: String| Failure::new(name, &waiting_for, reason);
    let id = match (created, &step.actual) {
        (Some(id), _) => id.clone(),
        (None, Some(actual)) => {
            // An unchanged task that ran to exit 0 (the journal says so: a
            // task created but never started also reads exit code 0) is
            // not run again.
            let done = up.engine.status(&actual.id).await.map_err(|e| failure(e.to_string()))?;
            if !done.running && done.exit_code == Some(0) {
                return Ok(());
            }
            up.engine.remove(&actual.id).await.map_err(|e| failure(e.to_string()))?;
            let spec = spec(up, service, task, true).map_err(|e| failure(e.to_string()))?;
            create(up, &spec, task, None).await.map_err(|e| failure(e.to_string()))?
        }
        (None, None) => return Err(failure("it was not created".into())),
    };
    up.emit(name, Phase::Task(task.name.clone()));
    up.engine.start(&id).await.map_err(|e| failure(e.to_string()))?;
    up.options.journal.reached(&id, Stage::Started);
    // The engine says when it exits: no polling delay between steps.
    let mut f = match tokio::time::timeout_at(deadline.into(), up.engine.wait_exit(&id)).await {
        Ok(Ok(0)) => {
            up.options.journal.done(&id, None);
            return Ok(());
        }
        Ok(Ok(code)) => failure(format!("it exited with code {code}")),
        Ok(Err(e)) => failure(e.to_string()),
        Err(_) => failure("timed out".into()),
    };
    f.log_tail = up.engine.log_tail(&id, 20).await.ok();
    f.container = Some(up.names.container(name, &task.name));
    Err(f)
}

/// Create (replacing the container of the last `up`, if any) and place
/// its files, each step in the journal as it is done.
async fn create(up: &Up<'_, '_>, spec: &ContainerSpec, c: &Container, replacing: Option<&str>) -> Result<String, EngineError> {
    let id = match replacing {
        Some(old) => up.engine.replace(old, spec).await?,
        None => up.engine.create(spec).await?,
    };
    up.options.journal.created(&id, c);
    up.engine.put_files(&id, &c.files).await?;
    for copy in &spec.copies {
        up.engine.put_archive(&id, copy.archive().map_err(|message| EngineError::Copy { target: copy.target.clone(), message })?).await?;
    }
    up.options.journal.reached(&id, Stage::FilesPlaced);
    Ok(id)
}

fn spec(up: &Up<'_, '_>, service: &ServiceState, c: &Container, task: bool) -> Result<ContainerSpec, String> {
    let role = if task { Role::Task } else { Role::Container };
    container_spec(up.state, &up.options.project_dir, &up.options.labels, service, c, role)
}

/// What `create_ahead` made: ids by container name, and the snapshots to
/// keep once their containers are ready.
#[derive(Default)]
pub(super) struct Created {
    pub ids: HashMap<String, String>,
    pub keep: Vec<Sealed>,
}

/// What a container is to its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs as long as the project does; answers to the service's name.
    Container,
    /// Runs once, to exit 0, before the service's containers start.
    Task,
    /// A one-off command in the service's image (`provision run SERVICE`):
    /// answers to no name, and `up` leaves it alone.
    Run,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Container => "container",
            Role::Task => "task",
            Role::Run => "run",
        }
    }
}

/// A planned container in engine terms: its engine name, the labels that
/// mark it as the project's (plus `extra`), its networks and DNS names, and
/// its mounts resolved on the host.
pub fn container_spec(
    state: &DesiredState,
    project_dir: &Path,
    extra: &Labels,
    service: &ServiceState,
    c: &Container,
    role: Role,
) -> Result<ContainerSpec, String> {
    let names = &Names { project: &state.project };
    let plugin = state.plugins.iter().find(|p| p.name == service.plugin);
    let mut labels: Labels = c.labels.iter().map(|(k, v)| (k.clone(), v.clone())).chain(extra.clone()).collect();
    for (key, value) in [
        ("project", state.project.clone()),
        ("project-dir", project_dir.display().to_string()),
        ("service", service.name.clone()),
        ("container", c.name.clone()),
        ("role", role.label().to_string()),
        // A hash only: the spec itself (env, files: secrets) is in the journal.
        ("spec-hash", c.spec_hash()),
        ("plugin", plugin.map(|p| format!("{}@{}+sha256:{}", p.name, p.version, &p.sha256[..12])).unwrap_or_default()),
    ] {
        labels.insert(label(key), value);
    }
    let named = service.plan.containers.iter().position(|p| p.name == c.name).is_some_and(|i| service.plan.answers_to_name(i));
    let mut aliases = vec![format!("{}-{}", service.name, c.name)];
    match role {
        Role::Container if named => aliases.push(service.name.clone()),
        // A one-off answers to no name: the service's traffic must not reach it.
        Role::Run => aliases.clear(),
        _ => {}
    }
    let networks = if c.networks.is_empty() {
        vec![(names.network("default"), aliases)]
    } else {
        c.networks.iter().map(|n| (names.network(n), aliases.clone())).collect()
    };
    let mut mounts = Vec::new();
    let mut copies = Vec::new();
    for m in &c.mounts {
        match &m.source {
            MountSource::Copy(path) => {
                let source = host_path::pinned(&state.host_paths, project_dir, path).map_err(|e| format!("copy of {path:?}: {e}"))?;
                copies.push(CopySpec { source, target: m.target.clone() });
            }
            _ => mounts.extend(mount_specs(m, names, &service.name, project_dir, &state.host_paths)?),
        }
    }
    Ok(ContainerSpec {
        name: names.container(&service.name, &c.name),
        image: match &c.image {
            Image::Pull(reference) => reference.clone(),
            Image::Build(spec) => spec.tag(&state.build_scope),
        },
        command: c.command.clone(),
        entrypoint: c.entrypoint.clone(),
        env: c.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
        ports: c.ports.clone(),
        mounts,
        copies,
        health: c.health.clone(),
        read_only: c.read_only,
        init: c.init,
        no_new_privileges: c.no_new_privileges,
        resources: c.resources.clone(),
        restart: c.restart,
        privileges: c.privileges.clone(),
        labels,
        networks,
        stop_timeout: i64::from(STOP_TIMEOUT_SECS),
        stdin: false,
        tty: false,
        replicas: c.replicas.unwrap_or(1),
        task: role == Role::Task,
        hooks: !c.hooks.is_empty(),
    })
}

/// A mount of `service`'s container in engine terms. A bind is resolved
/// again now, as it is handed to the engine (a link may have changed since
/// `plan` checked it), and the project's hidden folders below it are each
/// covered by an empty read-only tmpfs.
fn mount_specs(m: &Mount, names: &Names, service: &str, project_dir: &Path, pins: &HostPaths) -> Result<Vec<MountSpec>, String> {
    let target = m.target.clone();
    Ok(match &m.source {
        MountSource::Volume(name) => vec![MountSpec::Volume { name: names.volume(service, name), target, read_only: m.read_only }],
        MountSource::Bind(path) => {
            let real = host_path::pinned(pins, project_dir, path).map_err(|e| format!("bind mount {path:?}: {e}"))?;
            let covers: Vec<MountSpec> = host_path::hidden_below(project_dir, &real)
                .into_iter()
                .map(|below| MountSpec::Tmpfs {
                    target: Path::new(&target).join(below).display().to_string(),
                    size_bytes: Some(4096),
                    mode: Some(0o500),
                })
                .collect();
            let bind = MountSpec::Bind { source: real.display().to_string(), target, read_only: m.read_only };
            std::iter::once(bind).chain(covers).collect()
        }
        MountSource::Tmpfs { size_bytes, mode } => vec![MountSpec::Tmpfs { target, size_bytes: *size_bytes, mode: *mode }],
        MountSource::Anonymous => vec![MountSpec::Anonymous { target }],
        MountSource::Copy(_) => Vec::new(),
    })
}

/// What `down` removed.
pub struct Removed {
    pub containers: usize,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

/// "2 containers, 1 networks, 2 volumes", as `down` and `run` report it.
impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} containers, {} networks, {} volumes", self.containers, self.networks.len(), self.volumes.len())
    }
}

/// Remove the project's containers (in parallel), then its networks, and
/// its named volumes only when asked. A container is stopped gracefully,
/// unless all it wrote is removed with it (`down -v`, and no writable bind
/// mount): then it is killed at once, as nothing of it can be left torn.
/// `owner`: the project folder whose networks and volumes these are (None:
/// every one of the project, for `down -p`).
pub async fn down(
    engine: &dyn Engine,
    project: &str,
    owner: Option<&str>,
    containers: &[crate::engine::Actual],
    volumes: bool,
) -> Result<Removed, EngineError> {
    let remove = containers.iter().map(|c| async move {
        if volumes && !c.writes_host { engine.remove(&c.id).await } else { engine.stop_and_remove(&c.id, STOP_TIMEOUT_SECS).await }
    });
    for result in join_all(remove).await {
        result?;
    }
    // Networks and volumes each only wait for the containers, not for each other.
    let named_volumes = async { if volumes { engine.remove_volumes(project, owner).await } else { Ok(Vec::new()) } };
    let (networks, volumes) = tokio::join!(engine.remove_networks(project, owner), named_volumes);
    let (networks, volumes) = (networks?, volumes?);
    Ok(Removed { containers: containers.len(), networks, volumes })
}
