//! A container spec as Docker's create call: host config, mounts, ports,
//! health check, networks with their aliases; a leftover of the same name
//! from an interrupted run is removed first.

use std::collections::HashMap;

use bollard::{
    models::{
        ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, Mount as BollardMount, MountTmpfsOptions, MountType, NetworkingConfig,
        PortBinding, RestartPolicy as BollardRestart, RestartPolicyNameEnum,
    },
    query_parameters::CreateContainerOptionsBuilder,
};

use crate::desired::{Probe, Protocol, RestartPolicy};
use crate::engine::{ContainerSpec, Engine, LABEL_PREFIX, MountSpec, Result, Role, STOP_TIMEOUT_SECS};

use super::{Docker, is_conflict, nanos};

impl Docker {
    /// A container of `spec`'s name and project that the caller did not
    /// know of when it planned this create: one a killed `up` asked for,
    /// made by the engine after that `up` was gone (so its journal never
    /// heard of it). Removed, it is made again as planned; one of another
    /// project or folder is left alone (and the create fails, saying so).
    async fn remove_late_leftover(&self, spec: &ContainerSpec<'_>) -> Result<bool> {
        let Ok(found) = self.client.inspect_container(&spec.name, None).await else { return Ok(false) };
        let labels = found.config.and_then(|c| c.labels).unwrap_or_default();
        let same = |key: &str| {
            let key = format!("{LABEL_PREFIX}{key}");
            labels.get(&key).is_some_and(|value| spec.labels.get(&key) == Some(value))
        };
        if !(same("project") && same("project-dir")) {
            return Ok(false);
        }
        self.remove(&found.id.unwrap_or_else(|| spec.name.clone())).await?;
        Ok(true)
    }

    pub(super) async fn create_container(&self, spec: &ContainerSpec<'_>) -> Result<String> {
        let c = spec.container;
        let (network, aliases) = spec.networks.first().cloned().unwrap_or_default();
        let mut port_bindings = HashMap::new();
        let mut exposed = Vec::new();
        for port in &c.ports {
            let key = format!("{}/{}", port.container, if port.protocol == Protocol::Udp { "udp" } else { "tcp" });
            exposed.push(key.clone());
            if let Some(host) = port.host {
                let binding =
                    PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(if host == 0 { String::new() } else { host.to_string() }) };
                port_bindings.insert(key, Some(vec![binding]));
            }
        }
        let mounts = spec.mounts.iter().map(mount).collect();
        let p = &c.privileges;
        let host_config = HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(mounts),
            init: Some(c.init),
            readonly_rootfs: Some(c.read_only),
            security_opt: c.no_new_privileges.then(|| vec!["no-new-privileges:true".to_string()]),
            memory: c.resources.memory_bytes.map(|b| b as i64),
            nano_cpus: c.resources.milli_cpus.map(|m| i64::from(m) * 1_000_000),
            pids_limit: c.resources.pids.map(i64::from),
            restart_policy: Some(BollardRestart {
                name: Some(match c.restart {
                    RestartPolicy::No => RestartPolicyNameEnum::NO,
                    RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
                    RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
                    RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
                }),
                maximum_retry_count: None,
            }),
            privileged: Some(p.privileged),
            cap_add: (!p.cap_add.is_empty()).then(|| p.cap_add.clone()),
            network_mode: Some(if p.host_network { "host".into() } else { network.clone() }),
            pid_mode: p.host_pid.then(|| "host".into()),
            devices: (!p.devices.is_empty()).then(|| {
                p.devices
                    .iter()
                    .map(|d| bollard::models::DeviceMapping {
                        path_on_host: Some(d.clone()),
                        path_in_container: Some(d.clone()),
                        cgroup_permissions: Some("rwm".into()),
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let healthcheck = c.health.as_ref().map(|h| HealthConfig {
            test: Some(match &h.probe {
                Probe::Exec(cmd) => std::iter::once("CMD".to_string()).chain(cmd.iter().cloned()).collect(),
                // The engine's check runs inside the container, where no HTTP
                // client can be assumed (the host probes HTTP itself): a TCP
                // connect by bash, as `sh` may be dash or busybox without
                // /dev/tcp.
                Probe::Http { port, .. } | Probe::Tcp(port) | Probe::Postgres(port) | Probe::Redis(port) => {
                    ["CMD", "bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")].map(String::from).to_vec()
                }
            }),
            interval: Some(nanos(h.interval_ms)),
            timeout: Some(nanos(h.timeout_ms)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period_ms)),
            start_interval: None,
        });
        let networking_config = (!p.host_network).then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.clone(), EndpointSettings { aliases: Some(aliases), ..Default::default() })])),
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: c.command.clone(),
            entrypoint: c.entrypoint.clone(),
            env: Some(spec.env()),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
            exposed_ports: Some(exposed),
            labels: Some(spec.labels.clone()),
            healthcheck,
            stop_timeout: Some(i64::from(STOP_TIMEOUT_SECS)),
            host_config: Some(host_config),
            networking_config,
            open_stdin: Some(spec.stdin),
            // A one-off's stdin closes with ours; a service's stays open
            // for the next `provision attach` after one detaches.
            stdin_once: Some(spec.stdin && spec.role == Role::Run),
            attach_stdin: Some(spec.stdin && spec.role == Role::Run),
            tty: Some(spec.tty),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = match self.client.create_container(Some(options.clone()), body.clone()).await {
            Err(e) if is_conflict(&e) && self.remove_late_leftover(spec).await? => self.client.create_container(Some(options), body).await?,
            created => created?,
        };
        // Further networks are joined before start, so DNS works from the first moment.
        self.join_networks(&created.id, spec.networks.get(1..).unwrap_or_default()).await?;
        Ok(created.id)
    }
}

pub(in crate::engine) fn mount(m: &MountSpec) -> BollardMount {
    let base = |typ, target: &str, read_only| BollardMount {
        typ: Some(typ),
        target: Some(target.to_string()),
        read_only: Some(read_only),
        ..Default::default()
    };
    match m {
        MountSpec::Volume { name, target, read_only } => BollardMount { source: Some(name.clone()), ..base(MountType::VOLUME, target, *read_only) },
        MountSpec::Bind { source, target, read_only } => BollardMount { source: Some(source.clone()), ..base(MountType::BIND, target, *read_only) },
        MountSpec::Tmpfs { target, size_bytes, mode } => BollardMount {
            tmpfs_options: Some(MountTmpfsOptions { size_bytes: size_bytes.map(|s| s as i64), mode: mode.map(i64::from), ..Default::default() }),
            ..base(MountType::TMPFS, target, false)
        },
        MountSpec::Anonymous { target } => base(MountType::VOLUME, target, false),
    }
}
