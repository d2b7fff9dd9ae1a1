//! A planned container as a Swarm service spec, and its image distributed
//! to every node (pushed to the registry once per run, named by digest).

use bollard::{
    models::{
        EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HealthConfig,
        Limit, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob, TaskSpec,
        TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
    },
    query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder},
};
use futures_util::StreamExt;

use crate::desired::{Protocol, RestartPolicy};
use crate::engine::{
    ContainerSpec, EngineError, MountSpec, Result, Role, STOP_TIMEOUT_SECS,
    docker::{mount, nanos},
};

use super::Swarm;

/// The label that ties a config or secret (a planned file) to its service.
pub(super) const CONFIG_OF: &str = "dev.provision.config-of";

/// A service's health check, kept in a label too: Docker 20.10 answers with
/// `Healthcheck` where bollard reads `HealthCheck`, so an inspected spec
/// comes back without it, and an update would drop it.
pub(super) const HEALTH: &str = "dev.provision.health-check";

/// How many replicas `start` scales a service to (it is made with none).
pub(super) const REPLICAS: &str = "dev.provision.replicas";

impl Swarm {
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
    pub(super) async fn service_spec(&self, spec: &ContainerSpec<'_>) -> Result<ServiceSpec> {
        let c = spec.container;
        let p = &c.privileges;
        let refused = [(p.privileged, "privileged"), (p.host_pid, "pid = \"host\""), (!p.devices.is_empty(), "devices")];
        if let Some((_, what)) = refused.iter().find(|(asked, _)| *asked) {
            return Err(EngineError::Unsupported { what: format!("{} asks for {what}", spec.name), engine: "a Swarm service" });
        }
        if spec.role == Role::Run && (spec.stdin || spec.tty) {
            return Err(EngineError::Unsupported { what: "a one-off attached to this terminal".into(), engine: "Swarm" });
        }
        let pinned = spec.has_hooks()
            || c.ports.iter().any(|p| p.host.is_some())
            || spec.mounts.iter().any(|m| matches!(m, MountSpec::Volume { .. } | MountSpec::Bind { .. }));
        let health_check = c.health.as_ref().map(|h| HealthConfig {
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
            command: c.entrypoint.clone(),
            args: c.command.clone(),
            env: Some(spec.env()),
            dir: c.working_dir.clone(),
            user: c.user.clone(),
            read_only: Some(c.read_only),
            mounts: Some(spec.mounts.iter().map(mount).collect()),
            health_check: health_check.clone(),
            init: Some(c.init),
            stop_grace_period: Some(i64::from(STOP_TIMEOUT_SECS) * 1_000_000_000),
            capability_add: (!p.cap_add.is_empty()).then(|| p.cap_add.clone()),
            open_stdin: Some(spec.stdin),
            tty: Some(spec.tty),
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
        let restart = if spec.role == Role::Task {
            TaskSpecRestartPolicyConditionEnum::NONE
        } else {
            // The engine cannot tell a lost node from a failure: with
            // `none`, a service whose node is gone would never run again.
            match c.restart {
                RestartPolicy::No | RestartPolicy::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                RestartPolicy::Always | RestartPolicy::UnlessStopped => TaskSpecRestartPolicyConditionEnum::ANY,
            }
        };
        let r = &c.resources;
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
        let ports = c
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
        let mode = if spec.role == Role::Task {
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
        labels.insert(REPLICAS.into(), c.replicas.to_string());
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
pub(super) fn comparable(spec: &TaskSpec) -> serde_json::Value {
    let c = spec.container_spec.clone().unwrap_or_default();
    serde_json::json!([c.image, c.command, c.args, c.env, c.dir, c.user, c.mounts, c.configs, c.secrets, c.read_only, spec.force_update])
}

pub(super) fn is_job(spec: &ServiceSpec) -> bool {
    spec.mode.as_ref().is_some_and(|m| m.replicated_job.is_some())
}

pub(super) fn replicated(replicas: u32) -> ServiceSpecMode {
    ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(replicas)) }), ..Default::default() }
}

/// Replicas asked for (a job: completions asked for).
pub(super) fn wanted(spec: &ServiceSpec) -> i64 {
    let mode = spec.mode.clone().unwrap_or_default();
    match (mode.replicated, mode.replicated_job) {
        (Some(r), _) => r.replicas.unwrap_or(1),
        (_, Some(j)) => j.total_completions.unwrap_or(0),
        _ => 1,
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
