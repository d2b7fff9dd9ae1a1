//! The Swarm backend: the same plans as services of a Docker Swarm cluster,
//! through the API of one of its managers (bollard). Owns the translation
//! of engine-boundary types into Swarm objects; must not decide anything
//! about the project (apply does).
//!
//! - A container of a plan is one service, and a service's replicas are
//!   that service's (the plan's copies are folded into it, see
//!   `plan::options::fold_replicas`); `create` makes it with no replica (a
//!   task: a `replicated-job` with no completion), so that a
//!   created-but-gated container costs nothing; `start` scales it up.
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

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use bollard::{
    Docker as Bollard,
    models::{
        ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
        HealthConfig, Limit, NetworkAttachmentConfig, NetworkCreateRequest, SecretSpec, Service, ServiceSpec, ServiceSpecMode,
        ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum,
        ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
        TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
        TaskSpecRestartPolicyConditionEnum, TaskState,
    },
    query_parameters::{
        ListConfigsOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListSecretsOptionsBuilder, ListServicesOptionsBuilder,
        ListTasksOptionsBuilder, LogsOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder, UpdateServiceOptionsBuilder,
    },
};
use futures_util::{StreamExt, stream::BoxStream};

use super::{
    Actual, ContainerSpec, Docker, Engine, EngineError, ExecCommand, Existing, ImageInfo, Kind, LABEL_PREFIX, Labeled, Labels, MountSpec,
    OutputStream, Reach, Result, Status,
    docker::{is_conflict, is_not_found, mount, nanos, owner_filter, project_filter, removed},
};
use crate::desired::{BuildSpec, File, Protocol, RestartPolicy};

/// The label that ties a config or secret (a planned file) to its service.
const CONFIG_OF: &str = "dev.provision.config-of";

/// A service's health check, kept in a label too: Docker 20.10 answers with
/// `Healthcheck` where bollard reads `HealthCheck`, so an inspected spec
/// comes back without it, and an update would drop it.
const HEALTH: &str = "dev.provision.health-check";

/// How many replicas `start` scales a service to (it is made with none).
const REPLICAS: &str = "dev.provision.replicas";

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

    fn client(&self) -> &Bollard {
        &self.docker.client
    }

    /// The reference every node pulls `image` by: pushed to the registry and
    /// pinned to its digest, when there is one.
    async fn distributed(&self, image: &str) -> Result<String> {
        let Some(registry) = &self.registry else { return Ok(image.to_string()) };
        let cell = self.pushed.lock().expect("not poisoned").entry(image.to_string()).or_default().clone();
        cell.get_or_try_init(|| async {
            let (repository, tag) = in_registry(registry, image);
            let tag_options = TagImageOptionsBuilder::default().repo(&repository).tag(&tag).build();
            self.client().tag_image(image, Some(tag_options)).await.map_err(|e| EngineError::Image { image: image.into(), source: e.into() })?;
            let failed = |message: String| EngineError::Push { image: image.into(), registry: registry.clone(), message };
            // A progress stream cut short ("bytes remaining on stream", seen
            // with the engine busy) is pushed again: a push is idempotent. What
            // the registry refuses is not.
            for attempt in 1.. {
                let push = PushImageOptionsBuilder::default().tag(&tag).build();
                let mut progress = self.client().push_image(&repository, Some(push), None);
                let mut cut = None;
                while let Some(info) = progress.next().await {
                    match info {
                        Ok(info) => {
                            if let Some(detail) = info.error_detail {
                                return Err(failed(detail.message.unwrap_or_default()));
                            }
                        }
                        Err(e) => {
                            cut = Some(e.to_string());
                            break;
                        }
                    }
                }
                match cut {
                    None => break,
                    Some(message) if attempt == 3 => return Err(failed(message)),
                    Some(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                }
            }
            let pushed = self.client().inspect_image(&format!("{repository}:{tag}")).await?;
            let digest = pushed.repo_digests.unwrap_or_default().into_iter().find(|d| d.starts_with(&format!("{repository}@"))).ok_or_else(|| {
                EngineError::Push { image: image.into(), registry: registry.clone(), message: "the registry returned no digest".into() }
            })?;
            Ok(digest)
        })
        .await
        .cloned()
    }

    /// A planned container as a service with no replica (a job with no
    /// completion): `start` asks for one.
    async fn service_spec(&self, spec: &ContainerSpec) -> Result<ServiceSpec> {
        let p = &spec.privileges;
        let refused = [(p.privileged, "privileged"), (p.host_pid, "pid = \"host\""), (!p.devices.is_empty(), "devices")];
        if let Some((_, what)) = refused.iter().find(|(asked, _)| *asked) {
            return Err(EngineError::Unsupported { what: format!("{} asks for {what}", spec.name), engine: "a Swarm service" });
        }
        if spec.stdin || spec.tty {
            return Err(EngineError::Unsupported { what: "a one-off attached to this terminal".into(), engine: "Swarm" });
        }
        let pinned = spec.hooks
            || spec.ports.iter().any(|p| p.host.is_some())
            || spec.mounts.iter().any(|m| matches!(m, MountSpec::Volume { .. } | MountSpec::Bind { .. }));
        let health_check = spec.health.as_ref().map(|h| HealthConfig {
            test: Some(std::iter::once("CMD".to_string()).chain(h.probe.in_container()).collect()),
            interval: Some(nanos(h.interval_ms)),
            timeout: Some(nanos(h.timeout_ms)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period_ms)),
            start_interval: None,
        });
        let container = TaskSpecContainerSpec {
            image: Some(self.distributed(&spec.image).await?),
            // Swarm's Command is the image's ENTRYPOINT, Args its CMD.
            command: spec.entrypoint.clone(),
            args: spec.command.clone(),
            env: Some(spec.env.clone()),
            dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            read_only: Some(spec.read_only),
            mounts: Some(spec.mounts.iter().map(mount).collect()),
            health_check: health_check.clone(),
            init: Some(spec.init),
            stop_grace_period: Some(spec.stop_timeout * 1_000_000_000),
            capability_add: (!p.cap_add.is_empty()).then(|| p.cap_add.clone()),
            ..Default::default()
        };
        let networks = if p.host_network {
            vec![NetworkAttachmentConfig { target: Some("host".into()), ..Default::default() }]
        } else {
            spec.networks
                .iter()
                .map(|(name, aliases)| NetworkAttachmentConfig { target: Some(name.clone()), aliases: Some(aliases.clone()), ..Default::default() })
                .collect()
        };
        let restart = if spec.task {
            TaskSpecRestartPolicyConditionEnum::NONE
        } else {
            // The engine cannot tell a lost node from a failure: with
            // `none`, a service whose node is gone would never run again.
            match spec.restart {
                RestartPolicy::No | RestartPolicy::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                RestartPolicy::Always | RestartPolicy::UnlessStopped => TaskSpecRestartPolicyConditionEnum::ANY,
            }
        };
        let r = &spec.resources;
        let task_template = TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: r.milli_cpus.map(|m| i64::from(m) * 1_000_000),
                    memory_bytes: r.memory_bytes.map(|b| b as i64),
                    pids: r.pids.map(i64::from),
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy { condition: Some(restart), delay: Some(nanos(1000)), ..Default::default() }),
            placement: pinned.then(|| TaskSpecPlacement { constraints: Some(vec![format!("node.id=={}", self.node)]), ..Default::default() }),
            networks: Some(networks),
            ..Default::default()
        };
        let ports = spec
            .ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPortConfig {
                    protocol: Some(if port.protocol == Protocol::Udp {
                        EndpointPortConfigProtocolEnum::UDP
                    } else {
                        EndpointPortConfigProtocolEnum::TCP
                    }),
                    target_port: Some(i64::from(port.container)),
                    published_port: port.host.filter(|h| *h != 0).map(i64::from),
                    publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                    ..Default::default()
                })
                .filter(|_| port.host.is_some())
            })
            .collect();
        let mode = if spec.task {
            ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob { max_concurrent: Some(1), total_completions: Some(0) }),
                ..Default::default()
            }
        } else {
            replicated(0)
        };
        let mut labels = spec.labels.clone();
        if let Some(health) = &health_check {
            labels.insert(HEALTH.into(), serde_json::to_string(health).expect("JSON"));
        }
        labels.insert(REPLICAS.into(), spec.replicas.to_string());
        let service = ServiceSpec {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            task_template: Some(task_template),
            mode: Some(mode),
            endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports: Some(ports) }),
            ..Default::default()
        };
        Ok(service)
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

    async fn tasks(&self, service: &str) -> Result<Vec<Task>> {
        let filter = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        Ok(self.client().list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filter).build())).await?)
    }

    /// The container of a running task of the service on this node.
    async fn local_container(&self, id: &str) -> Result<String> {
        let tasks = self.tasks(id).await?;
        let running = || tasks.iter().filter(|t| state(t) == Some(TaskState::RUNNING));
        if let Some(container) = running().filter(|t| t.node_id.as_deref() == Some(&self.node)).find_map(container_id) {
            return Ok(container);
        }
        let elsewhere = running().find_map(|t| t.node_id.clone());
        Err(EngineError::Api(
            match elsewhere {
                Some(node) => format!(
                    "its task runs on node {}; provision runs commands only in tasks on the node it talks to (a service that publishes a port, \
                     keeps a volume or runs hooks stays there)",
                    self.node_name(Some(&node)).await
                ),
                None => "it has no running task".into(),
            }
            .into(),
        ))
    }

    /// A node's host name, for messages (its id when it has none), asked
    /// of the engine once per node.
    async fn node_name(&self, id: Option<&str>) -> String {
        let Some(id) = id.filter(|id| !id.is_empty()) else { return "(none yet)".into() };
        if let Some(name) = self.node_names.lock().expect("not poisoned").get(id) {
            return name.clone();
        }
        let node = self.client().inspect_node(id).await.ok();
        let name = node.and_then(|n| n.description?.hostname).unwrap_or_else(|| id.to_string());
        self.node_names.lock().expect("not poisoned").insert(id.to_string(), name.clone());
        name
    }

    /// Wait until this node's containers of a removed service are gone, so
    /// its volumes and networks can go too. The engine stops them itself,
    /// but leaves a job's exited ones behind: those are removed here, as is
    /// whatever still runs after 10 s.
    async fn gone_here(&self, id: &str) -> Result<()> {
        let filter = HashMap::from([("label".to_string(), vec![format!("com.docker.swarm.service.id={id}")])]);
        for attempt in 0..150 {
            let options = ListContainersOptionsBuilder::default().all(true).filters(&filter).build();
            let left = self.client().list_containers(Some(options)).await?;
            if left.is_empty() {
                return Ok(());
            }
            for c in left {
                let running = c.state.is_some_and(|s| s.to_string() == "running");
                if !running || attempt >= 100 {
                    self.docker.remove(c.id.as_deref().unwrap_or_default()).await?;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The configs and secrets made of a removed service's files.
    async fn remove_files(&self, service: &str) -> Result<()> {
        let filter = HashMap::from([("label".to_string(), vec![format!("{CONFIG_OF}={service}")])]);
        let configs = self.client().list_configs(Some(ListConfigsOptionsBuilder::default().filters(&filter).build())).await?;
        let secrets = self.client().list_secrets(Some(ListSecretsOptionsBuilder::default().filters(&filter).build())).await?;
        for config in configs {
            match self.client().delete_config(config.id.as_deref().unwrap_or_default()).await {
                Err(e) if !is_not_found(&e) => return Err(e.into()),
                _ => {}
            }
        }
        for secret in secrets {
            match self.client().delete_secret(secret.id.as_deref().unwrap_or_default()).await {
                Err(e) if !is_not_found(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// `image` under `registry`: its repository and tag (a digest-only
/// reference gets a tag made of the digest).
fn in_registry(registry: &str, image: &str) -> (String, String) {
    let (name, digest) = image.split_once('@').map_or((image, None), |(n, d)| (n, Some(d)));
    // A first part with a dot or a port, or `localhost`, is a registry host.
    let path = match name.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
        _ => name,
    };
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag.to_string()),
        _ => (path, digest.map(|d| d.trim_start_matches("sha256:").chars().take(16).collect()).unwrap_or_else(|| "latest".into())),
    };
    (format!("{}/{repository}", registry.trim_end_matches('/')), tag)
}

/// What tells a task of the service's current spec from an older one: the
/// container's own settings (the engine's answers fill in other parts of a
/// task's spec differently, and lose its health check: see `HEALTH`).
fn comparable(spec: &TaskSpec) -> serde_json::Value {
    let c = spec.container_spec.clone().unwrap_or_default();
    serde_json::json!([c.image, c.command, c.args, c.env, c.dir, c.user, c.mounts, c.configs, c.secrets, c.read_only, spec.force_update])
}

fn state(task: &Task) -> Option<TaskState> {
    task.status.as_ref()?.state
}

fn timestamp(task: &Task) -> Option<String> {
    Some(task.status.as_ref()?.timestamp.as_ref()?.to_string())
}

fn container_id(task: &Task) -> Option<String> {
    task.status.as_ref()?.container_status.as_ref()?.container_id.clone().filter(|c| !c.is_empty())
}

fn is_job(spec: &ServiceSpec) -> bool {
    spec.mode.as_ref().is_some_and(|m| m.replicated_job.is_some())
}

fn replicated(replicas: u32) -> ServiceSpecMode {
    ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(replicas)) }), ..Default::default() }
}

/// Replicas asked for (a job: completions asked for).
fn wanted(spec: &ServiceSpec) -> i64 {
    let mode = spec.mode.clone().unwrap_or_default();
    match (mode.replicated, mode.replicated_job) {
        (Some(r), _) => r.replicas.unwrap_or(1),
        (_, Some(j)) => j.total_completions.unwrap_or(0),
        _ => 1,
    }
}

/// (container port, published port) of a task (listed once per address
/// family by the engine: once here).
fn published(ports: Option<&Vec<EndpointPortConfig>>) -> Vec<(u16, u16)> {
    let mut pairs: Vec<(u16, u16)> = ports
        .into_iter()
        .flatten()
        .filter_map(|p| Some((u16::try_from(p.target_port?).ok()?, u16::try_from(p.published_port?).ok().filter(|p| *p != 0)?)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// What a task that is not running says about why.
fn problem(task: &Task, node: &str) -> Option<String> {
    let status = task.status.as_ref()?;
    let said = status.err.clone().filter(|e| !e.is_empty()).or_else(|| status.message.clone())?;
    Some(format!("task {} on node {node}: {} ({said})", task.slot.unwrap_or(0), status.state?))
}

#[async_trait::async_trait]
impl Engine for Swarm {
    async fn containers(&self, project: &str) -> Result<Vec<Actual>> {
        let options = ListServicesOptionsBuilder::default().filters(&project_filter(project)).build();
        let services = self.client().list_services(Some(options)).await?;
        // A port published in host mode without a number gets one per task:
        // read from the running tasks of the project's services that publish.
        let publishing: Vec<String> = services
            .iter()
            .filter(|s| s.spec.as_ref().and_then(|s| s.endpoint_spec.as_ref()).and_then(|e| e.ports.as_ref()).is_some_and(|p| !p.is_empty()))
            .filter_map(|s| s.id.clone())
            .collect();
        let tasks = if publishing.is_empty() {
            Vec::new()
        } else {
            let filter = HashMap::from([("desired-state".to_string(), vec!["running".to_string()]), ("service".to_string(), publishing)]);
            self.client().list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filter).build())).await?
        };
        let ports_of = |service: &str| -> Vec<(u16, u16)> {
            tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(service))
                .flat_map(|t| published(t.status.as_ref().and_then(|s| s.port_status.as_ref()).and_then(|p| p.ports.as_ref())))
                .collect()
        };
        Ok(services
            .into_iter()
            .map(|s| {
                let spec = s.spec.clone().unwrap_or_default();
                let container = spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref());
                Actual {
                    id: s.id.clone().unwrap_or_default(),
                    name: spec.name.clone().unwrap_or_default(),
                    labels: spec.labels.clone().unwrap_or_default(),
                    // Started: the engine keeps it running (or ran the job).
                    running: wanted(&spec) > 0 && !is_job(&spec),
                    published: ports_of(s.id.as_deref().unwrap_or_default()),
                    writes_host: container
                        .and_then(|c| c.mounts.as_ref())
                        .is_some_and(|m| m.iter().any(|m| m.typ == Some(bollard::models::MountType::BIND) && m.read_only != Some(true))),
                }
            })
            .collect())
    }

    async fn status(&self, id: &str) -> Result<Status> {
        let service = self.service(id).await?;
        let spec = service.spec.clone().unwrap_or_default();
        let tasks = self.tasks(id).await?;
        let job = is_job(&spec);
        let wanted = wanted(&spec);
        // The tasks of the current run: a job's newest iteration, else those
        // the engine wants running.
        let iteration = service.job_status.as_ref().and_then(|j| j.job_iteration.as_ref()).and_then(|v| v.index);
        let current: Vec<&Task> = tasks
            .iter()
            .filter(|t| {
                if job {
                    iteration.is_some() && t.job_iteration.as_ref().and_then(|v| v.index) == iteration
                } else {
                    t.desired_state == Some(TaskState::RUNNING)
                }
            })
            .collect();
        // Running, and of the current spec: during a rolling update the old
        // task runs on beside the new one.
        let template = spec.task_template.as_ref().map(comparable);
        let running = current.iter().filter(|t| state(t) == Some(TaskState::RUNNING) && t.spec.as_ref().map(comparable) == template).count() as i64;
        let failed = current.iter().find(|t| matches!(state(t), Some(TaskState::FAILED | TaskState::REJECTED)));
        let exit_code = if job {
            match (current.iter().any(|t| state(t) == Some(TaskState::COMPLETE)), failed) {
                (true, _) => Some(0),
                (false, Some(t)) => Some(t.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.exit_code).unwrap_or(-1)),
                _ => None,
            }
        } else {
            None
        };
        // The latest word on a task that is not (yet) running: its error,
        // if one has one (a retried task's successor is only "preparing").
        let has_error = |t: &&Task| t.status.as_ref().and_then(|s| s.err.as_deref()).is_some_and(|e| !e.is_empty());
        let problem = match tasks.iter().filter(|t| state(t) != Some(TaskState::RUNNING)).max_by_key(|t| (has_error(t), timestamp(t))) {
            Some(task) => problem(task, &self.node_name(task.node_id.as_deref()).await),
            None => None,
        };
        // A rolling update is done when the engine says so: until then the
        // old task may still be the one running.
        let update = service.update_status.as_ref().and_then(|u| u.state);
        let updating = matches!(update, Some(ServiceUpdateStatusStateEnum::UPDATING | ServiceUpdateStatusStateEnum::PAUSED));
        let problem = match (update, service.update_status.as_ref().and_then(|u| u.message.clone())) {
            (Some(ServiceUpdateStatusStateEnum::PAUSED), Some(message)) => Some(format!("its update is paused: {message}")),
            _ => problem,
        };
        let ready = wanted > 0 && running >= wanted && !updating;
        Ok(Status {
            // A service runs as long as the engine keeps it so (it restarts
            // failed tasks); a job, until it is done.
            running: if job { wanted > 0 && exit_code.is_none() } else { wanted > 0 },
            exit_code,
            ip: None,
            health: (!job).then(|| if ready { "healthy" } else { "starting" }.into()),
            started_at: current
                .iter()
                .filter(|t| state(t) == Some(TaskState::RUNNING))
                .map(|t| format!("{}@{}", t.id.clone().unwrap_or_default(), timestamp(t).unwrap_or_default()))
                .min(),
            published: current
                .iter()
                .flat_map(|t| published(t.status.as_ref().and_then(|s| s.port_status.as_ref()).and_then(|p| p.ports.as_ref())))
                .collect(),
            problem,
            replicas: (wanted > 1).then(|| (u32::try_from(running).unwrap_or(0), u32::try_from(wanted).unwrap_or(0))),
        })
    }

    /// Host mode: every address of the node runs the task (the engine
    /// takes no host address for a port).
    fn publishes_on(&self) -> &'static str {
        "0.0.0.0"
    }

    async fn reach(&self) -> Reach {
        Reach::Engine
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
        progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()> {
        self.docker.build_image(tag, spec, context, labels, progress).await
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

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let service = self.service_spec(spec).await?;
        let created = self.client().create_service(service, None).await?;
        Ok(created.id.unwrap_or_default())
    }

    /// A changed service is updated in place, as a rolling update that
    /// keeps it serving (its new task starts before the old one stops,
    /// unless it keeps data on its node); a job is made anew.
    async fn replace(&self, old: &str, spec: &ContainerSpec) -> Result<String> {
        let current = self.service(old).await?;
        let old_spec = current.spec.clone().unwrap_or_default();
        if spec.task || is_job(&old_spec) || old_spec.name.as_deref() != Some(spec.name.as_str()) {
            self.remove(old).await?;
            return self.create(spec).await;
        }
        let mut new = self.service_spec(spec).await?;
        let stateful = new.task_template.as_ref().and_then(|t| t.placement.as_ref()).is_some();
        // Scaled as asked if it runs; else left for `start` to scale.
        new.mode = if wanted(&old_spec) > 0 { Some(replicated(spec.replicas)) } else { old_spec.mode.clone() };
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

    /// Files become configs (one per file and content: configs cannot
    /// change), attached to the service before it starts. A file that holds
    /// a secret (a password a plugin put in it) becomes a Swarm secret
    /// instead: encrypted in the managers' store, sent only to the nodes
    /// that run the service, kept in memory there, never shown by the API.
    async fn put_files(&self, id: &str, files: &[File]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let spec = self.service(id).await?.spec.unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let mut labels: Labels = spec.labels.unwrap_or_default().into_iter().filter(|(k, _)| k.starts_with(LABEL_PREFIX)).collect();
        labels.retain(|k, _| k != HEALTH && k != REPLICAS);
        labels.insert(CONFIG_OF.into(), name.clone());
        let (mut configs, mut secrets) = (Vec::new(), Vec::new());
        for file in files {
            use sha2::Digest;
            let digest = sha2::Sha256::new().chain_update(&file.path).chain_update([0]).chain_update(&file.contents).finalize();
            let object = format!("{name}-{}", &hex::encode(digest)[..16]);
            let data = base64::engine::general_purpose::STANDARD.encode(&file.contents);
            let target =
                TaskSpecContainerSpecFile1 { name: Some(file.path.clone()), uid: Some("0".into()), gid: Some("0".into()), mode: Some(file.mode) };
            if crate::secrets::holds_secret(&file.contents) {
                let request = SecretSpec { name: Some(object.clone()), labels: Some(labels.clone()), data: Some(data), ..Default::default() };
                let secret_id = match self.client().create_secret(request).await {
                    Ok(made) => made.id,
                    Err(e) if is_conflict(&e) => self.client().inspect_secret(&object).await?.id.unwrap_or_default(),
                    Err(e) => return Err(e.into()),
                };
                secrets.push(TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile { name: target.name, uid: target.uid, gid: target.gid, mode: target.mode }),
                    secret_id: Some(secret_id),
                    secret_name: Some(object),
                });
            } else {
                let request = ConfigSpec { name: Some(object.clone()), labels: Some(labels.clone()), data: Some(data), ..Default::default() };
                let config_id = match self.client().create_config(request).await {
                    Ok(made) => made.id,
                    Err(e) if is_conflict(&e) => self.client().inspect_config(&object).await?.id.unwrap_or_default(),
                    Err(e) => return Err(e.into()),
                };
                configs.push(TaskSpecContainerSpecConfigs {
                    file: Some(target),
                    config_id: Some(config_id),
                    config_name: Some(object),
                    ..Default::default()
                });
            }
        }
        self.update(id, |spec| {
            if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
                c.configs = Some(configs.clone());
                c.secrets = Some(secrets.clone());
            }
            true
        })
        .await
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

    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send)) -> Result<i64> {
        let container = self.local_container(id).await?;
        self.docker.exec_with(&container, command, on_output).await
    }

    async fn exec_attached(
        &self,
        id: &str,
        command: ExecCommand<'_>,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        tty: Option<(u16, u16)>,
        on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send),
    ) -> Result<i64> {
        let container = self.local_container(id).await?;
        self.docker.exec_attached(&container, command, stdin, tty, on_output).await
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
    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<String>> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()))
            .build();
        self.client().service_logs(id, Some(options)).map(|chunk| Ok(chunk?.to_string())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::in_registry;

    #[test]
    fn an_image_is_renamed_into_the_registry_keeping_its_path_and_tag() {
        let cases = [
            ("provision-standin/postgres:16", ("127.0.0.1:5000/provision-standin/postgres", "16")),
            ("redis", ("127.0.0.1:5000/redis", "latest")),
            ("ghcr.io/acme/app:1.2", ("127.0.0.1:5000/acme/app", "1.2")),
            ("localhost:5001/app", ("127.0.0.1:5000/app", "latest")),
            ("app@sha256:0123456789abcdef0123", ("127.0.0.1:5000/app", "0123456789abcdef")),
        ];
        for (image, (repository, tag)) in cases {
            assert_eq!(in_registry("127.0.0.1:5000", image), (repository.to_string(), tag.to_string()), "{image}");
        }
    }
}
