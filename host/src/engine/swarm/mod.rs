//! The Swarm backend: the same plans as services of a Docker Swarm cluster,
//! through the API of one of its managers (bollard). Owns the translation
//! of engine-boundary types into Swarm objects; must not decide anything
//! about the project (apply does).
//!
//! - A container of a plan is one service, and its replica count is that
//!   service's; `create` makes it with no replica (a task: a
//!   `replicated-job` with no completion), so that a created-but-gated
//!   container costs nothing; `start` scales it up.
//! - The engine runs each service's health check in every replica, on
//!   whichever node it lands, and a task counts as running only once
//!   healthy: readiness is read from the tasks (`Reach::Engine`).
//! - Placement: a service that keeps data in a named volume or a bind,
//!   runs hooks (commands provision runs in it), or publishes a port stays
//!   on the node provision talks to. Volumes are local to a node, hooks run
//!   by exec through this node's engine, and a port is published on the
//!   node that runs the task (host mode; the routing mesh needs IPVS, which
//!   these machines lack). Everything else goes where the scheduler puts it.
//! - Networks are attachable overlays; services are reached by DNS round
//!   robin (`dnsrr`), since service virtual IPs need IPVS too.
//! - Images: with a registry (`[engine.swarm] registry`), each image is
//!   pushed there once per `up` and services name it by digest, so every
//!   node runs the same bytes; without one, every node must have it.
//!
//! Here: the engine trait's methods and the service lifecycle; `spec`
//! translates a container into a service spec (and distributes its image),
//! `tasks` reads state from the tasks, `files` keeps planned files as
//! configs and secrets.

mod files;
mod spec;
mod tasks;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bollard::{
    Docker as Bollard,
    models::{
        HealthConfig, NetworkCreateRequest, Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, ServiceSpecUpdateConfig,
        ServiceSpecUpdateConfigOrderEnum,
    },
    query_parameters::{ListNetworksOptionsBuilder, ListServicesOptionsBuilder, UpdateServiceOptionsBuilder},
};
use futures_util::{StreamExt, stream::BoxStream};

use super::{
    Actual, ContainerSpec, Docker, Engine, EngineError, ExecCommand, Existing, ImageInfo, Input, Kind, Labeled, Labels, LogOptions, OnOutput, Reach,
    Result, Role, Status,
    docker::{is_conflict, is_not_found, nanos, owner_filter, removed},
};
use crate::desired::{BuildSpec, File};

use spec::{HEALTH, REPLICAS, is_job, replicated, wanted};

pub struct Swarm {
    /// This node's engine: images, volumes, and exec into the tasks it runs.
    docker: Docker,
    /// This node's id in the swarm: where pinned services go.
    node: String,
    registry: Option<String>,
    /// Local image reference → the registry's reference by digest, pushed
    /// once per run.
    pushed: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<String>>>>,
    /// Node id → host name, for messages: `status` reports a task's node
    /// on every poll while it is not running.
    node_names: Mutex<HashMap<String, String>>,
}

impl Swarm {
    /// Connect to a manager (DOCKER_HOST, else the default socket).
    pub async fn connect(registry: Option<String>) -> Result<Swarm> {
        let docker = Docker::connect().await?;
        let info = docker.client.info().await?;
        let swarm = info.swarm.unwrap_or_default();
        if !swarm.control_available.unwrap_or(false) {
            return Err(EngineError::NotSwarmManager { state: swarm.local_node_state.map(|s| s.to_string()).unwrap_or_else(|| "inactive".into()) });
        }
        Ok(Swarm { docker, node: swarm.node_id.unwrap_or_default(), registry, pushed: Mutex::default(), node_names: Mutex::default() })
    }

    pub(super) fn client(&self) -> &Bollard {
        &self.docker.client
    }

    async fn service(&self, id: &str) -> Result<Service> {
        Ok(self.client().inspect_service(id, None).await?)
    }

    /// Change a service's spec; `change` returns false when there is
    /// nothing to change. Its version is checked, so a change made meanwhile
    /// is not overwritten; the engine's own (the allocator's, just after a
    /// create) is read again and the change made on top of it.
    async fn update(&self, id: &str, change: impl Fn(&mut ServiceSpec) -> bool) -> Result<()> {
        for attempt in 0.. {
            let service = self.service(id).await?;
            let version = service.version.and_then(|v| v.index).unwrap_or_default();
            let mut spec = service.spec.unwrap_or_default();
            let kept = spec.labels.as_ref().and_then(|l| l.get(HEALTH)).and_then(|h| serde_json::from_str::<HealthConfig>(h).ok());
            if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
                c.health_check = c.health_check.take().or(kept);
            }
            if !change(&mut spec) {
                return Ok(());
            }
            let options = UpdateServiceOptionsBuilder::default().version(i32::try_from(version).unwrap_or(i32::MAX)).build();
            match self.client().update_service(id, spec, options, None).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 10 && e.to_string().contains("out of sequence") => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns")
    }
}

/// A main container with several copies publishing a fixed host port:
/// Swarm runs the copies as one service, and a port of a node is one
/// copy's (Docker gives the copies free ports instead).
pub(super) fn refuses(state: &crate::desired::DesiredState) -> Option<(String, String, String)> {
    state.services.iter().find_map(|service| {
        let main = service.plan.containers.first().filter(|c| c.replicas > 1)?;
        let port = main.ports.iter().find(|p| p.host.is_some_and(|h| h != 0))?;
        let (host, container, replicas) = (port.host.unwrap_or_default(), port.container, main.replicas);
        let message = format!(
            "{replicas} replicas cannot all publish host port {host} on this engine (a port of a node is one replica's): \
             publish free ports (`publish = {{ {container} = 0 }}`), or put a proxy such as nginx in front"
        );
        Some((service.name.clone(), "replicas".to_string(), message))
    })
}

#[async_trait::async_trait]
impl Engine for Swarm {
    fn runs_copies(&self) -> bool {
        true
    }

    async fn containers(&self, project: &str) -> Result<Vec<Actual>> {
        self.actual(project).await
    }

    async fn status(&self, id: &str) -> Result<Status> {
        self.task_status(id).await
    }

    /// Host mode: every address of the node runs the task (the engine
    /// takes no host address for a port).
    fn publishes_on(&self) -> &'static str {
        "0.0.0.0"
    }

    async fn reach(&self) -> Reach {
        Reach::Engine
    }

    async fn network(&self, name: &str) -> Result<Option<Existing>> {
        self.docker.network(name).await
    }

    async fn ensure_network(&self, name: &str, internal: bool, labels: Labels) -> Result<Option<Existing>> {
        let existing =
            |found: bollard::models::NetworkInspect| Existing { labels: found.labels.unwrap_or_default(), internal: found.internal.unwrap_or(false) };
        if let Ok(found) = self.client().inspect_network(name, None).await {
            return Ok(Some(existing(found)));
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            // Attachable: a one-off container (and a debugging one) can join.
            attachable: Some(true),
            internal: Some(internal),
            labels: Some(labels),
            ..Default::default()
        };
        match self.client().create_network(request).await {
            Ok(_) => Ok(None),
            Err(e) if is_conflict(&e) => Ok(Some(existing(self.client().inspect_network(name, None).await?))),
            Err(e) => Err(e.into()),
        }
    }

    /// On this node, where the services that mount volumes are placed.
    async fn ensure_volume(&self, name: &str, labels: Labels) -> Result<Option<Existing>> {
        self.docker.ensure_volume(name, labels).await
    }

    async fn remove_networks(&self, project: &str, owner: Option<&str>) -> Result<Vec<String>> {
        let options = ListNetworksOptionsBuilder::default().filters(&owner_filter(project, owner)).build();
        let networks = self.client().list_networks(Some(options)).await?;
        let removals = networks.into_iter().map(|network| async move {
            let name = network.name.unwrap_or_default();
            let id = network.id.unwrap_or_else(|| name.clone());
            // Tasks leave a network a moment after their service is gone.
            for attempt in 0.. {
                match self.client().remove_network(&id).await {
                    Ok(()) => return Ok(Some(name)),
                    Err(e) if is_not_found(&e) => return Ok(None),
                    Err(_) if attempt < 50 => tokio::time::sleep(Duration::from_millis(200)).await,
                    Err(e) => return Err(e.into()),
                }
            }
            unreachable!("the loop returns")
        });
        removed(futures_util::future::join_all(removals).await)
    }

    async fn remove_volumes(&self, project: &str, owner: Option<&str>) -> Result<Vec<String>> {
        self.docker.remove_volumes(project, owner).await
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        self.docker.ensure_image(image).await
    }

    async fn image_digest(&self, image: &str) -> Result<Option<String>> {
        self.docker.image_digest(image).await
    }

    async fn build_image(
        &self,
        tag: &str,
        spec: &BuildSpec,
        context: &std::path::Path,
        labels: &Labels,
        no_cache: bool,
        progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()> {
        self.docker.build_image(tag, spec, context, labels, no_cache, progress).await
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.docker.image_id(image).await
    }

    async fn images(&self, label: &str) -> Result<Vec<ImageInfo>> {
        self.docker.images(label).await
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        self.docker.remove_image(id).await
    }

    async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String> {
        let service = self.service_spec(spec).await?;
        let created = self.client().create_service(service, None).await?;
        Ok(created.id.unwrap_or_default())
    }

    /// A changed service is updated in place, as a rolling update that
    /// keeps it serving (its new task starts before the old one stops,
    /// unless it keeps data on its node); a job is made anew.
    async fn replace(&self, old: &str, spec: &ContainerSpec<'_>) -> Result<String> {
        let current = self.service(old).await?;
        let old_spec = current.spec.clone().unwrap_or_default();
        if spec.role == Role::Task || is_job(&old_spec) || old_spec.name.as_deref() != Some(spec.name.as_str()) {
            self.remove(old).await?;
            return self.create(spec).await;
        }
        let mut new = self.service_spec(spec).await?;
        let stateful = new.task_template.as_ref().and_then(|t| t.placement.as_ref()).is_some();
        // Scaled as asked if it runs; else left for `start` to scale.
        new.mode = if wanted(&old_spec) > 0 { Some(replicated(spec.container.replicas)) } else { old_spec.mode.clone() };
        new.update_config = Some(ServiceSpecUpdateConfig {
            order: Some(if stateful { ServiceSpecUpdateConfigOrderEnum::STOP_FIRST } else { ServiceSpecUpdateConfigOrderEnum::START_FIRST }),
            monitor: Some(nanos(1000)),
            ..Default::default()
        });
        self.update(old, |spec| {
            *spec = new.clone();
            true
        })
        .await?;
        Ok(old.to_string())
    }

    async fn put_files(&self, id: &str, files: &[File]) -> Result<()> {
        self.put_service_files(id, files).await
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.update(id, |spec| {
            if is_job(spec) {
                // A job runs (again) on every change of its spec.
                spec.mode = Some(ServiceSpecMode {
                    replicated_job: Some(ServiceSpecModeReplicatedJob { max_concurrent: Some(1), total_completions: Some(1) }),
                    ..Default::default()
                });
                if let Some(t) = spec.task_template.as_mut() {
                    t.force_update = Some(t.force_update.unwrap_or(0) + 1);
                }
                // Jobs take no update policy.
                spec.update_config = None;
                spec.rollback_config = None;
            } else if wanted(spec) > 0 {
                // Updated in place, it runs already: another update, even
                // one that changes nothing, would clear its rolling update's state.
                return false;
            } else {
                let replicas = spec.labels.as_ref().and_then(|l| l.get(REPLICAS)).and_then(|n| n.parse().ok()).unwrap_or(1);
                spec.mode = Some(replicated(replicas));
            }
            true
        })
        .await
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        // Only a job exits; a service the engine keeps running is waited
        // for until it is scaled to nothing.
        let job = is_job(&self.service(id).await?.spec.unwrap_or_default());
        loop {
            let status = self.status(id).await?;
            if let Some(code) = status.exit_code {
                return Ok(code);
            }
            if !job && !status.running {
                return Ok(-1);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let name = match self.client().inspect_service(id, None).await {
            Ok(service) => service.spec.and_then(|s| s.name).unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match self.client().delete_service(id).await {
            Err(e) if !is_not_found(&e) => return Err(e.into()),
            _ => {}
        }
        self.remove_files(&name).await?;
        self.gone_here(id).await
    }

    /// The engine stops each task with the service's grace period.
    async fn stop_and_remove(&self, id: &str, _grace_secs: u32) -> Result<()> {
        self.remove(id).await
    }

    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut OnOutput<'_>) -> Result<i64> {
        let container = self.local_container(id).await?;
        self.docker.exec_with(&container, command, on_output).await
    }

    async fn exec_attached(
        &self,
        id: &str,
        command: ExecCommand<'_>,
        stdin: Input,
        tty: Option<(u16, u16)>,
        on_output: &mut OnOutput<'_>,
    ) -> Result<i64> {
        let container = self.local_container(id).await?;
        self.docker.exec_attached(&container, command, stdin, tty, on_output).await
    }

    async fn attach(&self, id: &str, stdin: Option<Input>, tty: Option<(u16, u16)>, detach_keys: &str, on_output: &mut OnOutput<'_>) -> Result<()> {
        let container = self.local_container(id).await?;
        self.docker.attach(&container, stdin, tty, detach_keys, on_output).await
    }

    async fn resize_tty(&self, id: &str, size: (u16, u16)) -> Result<()> {
        let container = self.local_container(id).await?;
        self.docker.resize_tty(&container, size).await
    }

    async fn labeled(&self, label: &str) -> Result<Vec<Labeled>> {
        let filter = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let services = self.client().list_services(Some(ListServicesOptionsBuilder::default().filters(&filter).build())).await?;
        let mut found: Vec<Labeled> = self.docker.labeled(label).await?.into_iter().filter(|item| item.kind != Kind::Container).collect();
        found.extend(services.into_iter().map(|s| {
            let spec = s.spec.unwrap_or_default();
            Labeled {
                kind: Kind::Container,
                id: s.id.unwrap_or_default(),
                name: spec.name.unwrap_or_default(),
                labels: spec.labels.unwrap_or_default(),
            }
        }));
        Ok(found)
    }

    async fn remove_labeled(&self, item: &Labeled) -> Result<()> {
        match item.kind {
            Kind::Container => self.remove(&item.id).await,
            _ => self.docker.remove_labeled(item).await,
        }
    }

    /// Every task's log, wherever it runs (the managers gather them).
    fn logs(&self, id: &str, options: &LogOptions) -> BoxStream<'static, Result<String>> {
        self.client().service_logs(id, Some(options.query())).map(|chunk| Ok(chunk?.to_string())).boxed()
    }
}
