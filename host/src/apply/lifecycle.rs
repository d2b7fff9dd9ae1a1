//! A container's life on the engine: create (or keep), place its files,
//! start; one-shot tasks run to exit 0; and `down`. The spec each create
//! hands over is `hop`'s. Must not decide order (the scheduler does) or
//! readiness.

use std::{collections::HashMap, time::Instant};

use futures_util::future::join_all;

use super::{
    context::{Failure, Up},
    events::Phase,
    hop::{Start, container_spec, networks},
    snapshots::{self, Data, Sealed},
};
use crate::{
    desired::{Container, Instance, ServiceState},
    engine::{ContainerSpec, Engine, EngineError, Role, STOP_TIMEOUT_SECS},
    journal::Stage,
    reconcile::Change,
};

/// Create, without starting, every container and task of the service
/// that is new or changed (removing the one it replaces): done while
/// the service still waits for its dependencies, so no create is on the
/// critical path. A container whose new data has a snapshot starts from
/// it; one whose has none yet is to keep one once ready.
pub(super) async fn create_ahead(up: &Up<'_, '_>, service: &ServiceState, instances: &[Instance<'_>]) -> Result<Created, Failure> {
    let mut created = Created::default();
    for instance in instances {
        let c = instance.container.as_ref();
        let step = up.diff.step(&service.name, &c.name).expect("every container has a step");
        if step.change == Change::Keep {
            continue;
        }
        let failure = |e: &dyn std::fmt::Display| Failure::new(&service.name, &format!("creating `{}`", c.name), e.to_string());
        up.emit(&service.name, Phase::Creating(c.name.clone()));
        let role = if instance.task { Role::Task } else { Role::Container };
        let data = snapshots::data_of(up, service, c).await.map_err(|e| failure(&e))?;
        let sealed = match &data {
            Data::Sealed(_) => Some(snapshots::seal(up, service, c).await.map_err(|e| failure(&e))?),
            _ => None,
        };
        let start = match (&data, &sealed) {
            (Data::Seeded(snapshot), _) => Start::FromSnapshot { image: &snapshot.tag, data: &snapshot.declared.path },
            (_, Some(network)) => Start::Sealed(network),
            _ => Start::AsPlanned,
        };
        let spec = container_spec(up.state, &up.options.project_dir, &up.options.labels, service, instance, role, start).map_err(|e| failure(&e))?;
        let replacing = step.actual.as_ref().map(|a| a.id.as_str());
        created.ids.insert(c.name.clone(), create(up, &spec, replacing).await.map_err(|e| failure(&e))?);
        if let (Data::Sealed(snapshot), Some(network)) = (data, sealed) {
            let planned = networks(up.state, service, instance, role);
            created.keep.push(Sealed { container: c.name.clone(), snapshot, network, planned });
        }
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
    task: &Instance<'_>,
    created: Option<&String>,
    deadline: Instant,
) -> Result<(), Failure> {
    let name = &service.name;
    let task_name = &task.container.name;
    let step = up.diff.step(name, task_name).expect("every task has a step");
    let waiting_for = format!("running task `{task_name}`");
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
            let spec = container_spec(up.state, &up.options.project_dir, &up.options.labels, service, task, Role::Task, Start::AsPlanned)
                .map_err(failure)?;
            create(up, &spec, None).await.map_err(|e| failure(e.to_string()))?
        }
        (None, None) => return Err(failure("it was not created".into())),
    };
    up.emit(name, Phase::Task(task_name.clone()));
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
    f.container = Some(up.names.container(name, task_name));
    Err(f)
}

/// Create (replacing the container of the last `up`, if any) and place
/// its files and copies, each step in the journal as it is done.
async fn create(up: &Up<'_, '_>, spec: &ContainerSpec<'_>, replacing: Option<&str>) -> Result<String, EngineError> {
    let id = match replacing {
        Some(old) => up.engine.replace(old, spec).await?,
        None => up.engine.create(spec).await?,
    };
    up.options.journal.created(&id, spec.container);
    up.engine.put_files(&id, &spec.container.files).await?;
    for copy in &spec.copies {
        up.engine.put_archive(&id, copy.archive().map_err(|message| EngineError::Copy { target: copy.target.clone(), message })?).await?;
    }
    up.options.journal.reached(&id, Stage::FilesPlaced);
    Ok(id)
}

/// What `create_ahead` made: ids by container name, and the snapshots to
/// keep once their containers are ready.
#[derive(Default)]
pub(super) struct Created {
    pub ids: HashMap<String, String>,
    pub keep: Vec<Sealed>,
}

/// What `down` removed.
pub struct Removed {
    pub containers: usize,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

/// "2 containers, 1 network, 2 volumes", as `down` and `run` report it.
impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::ui::count;
        write!(f, "{}, {}, {}", count(self.containers, "container"), count(self.networks.len(), "network"), count(self.volumes.len(), "volume"))
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
