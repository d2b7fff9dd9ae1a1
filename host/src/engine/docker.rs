//! The Docker backend (bollard): Docker, and Podman's compatible socket.
//! Owns the translation of engine-boundary types into Docker API calls;
//! must not decide anything about the project (apply does).

use std::{collections::HashMap, time::Duration};

use bollard::{
    Docker as Bollard,
    models::{
        ContainerCreateBody, EndpointSettings, ExecConfig, HealthConfig, HostConfig, Mount as BollardMount, MountTmpfsOptions, MountType,
        NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy as BollardRestart, RestartPolicyNameEnum, VolumeCreateRequest,
    },
    query_parameters::{
        AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
        ListImagesOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder, RemoveVolumeOptions, ResizeContainerTTYOptionsBuilder, UploadToContainerOptionsBuilder,
    },
};
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};

use super::{
    Actual, ContainerSpec, Engine, EngineError, ExecCommand, Existing, ImageInfo, Kind, LABEL_PREFIX, Labeled, Labels, MountSpec, OutputStream,
    Reach, Result, Status,
};
use crate::desired::{BuildSpec, File, Probe, Protocol, RestartPolicy};
pub struct Docker {
    pub(super) client: Bollard,
    reach: tokio::sync::OnceCell<Reach>,
}

impl Docker {
    /// Connect the usual way (DOCKER_HOST, else the default socket) and
    /// agree on an API version the engine speaks.
    pub async fn connect() -> Result<Docker> {
        let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |e: bollard::errors::Error| EngineError::Unreachable { endpoint: endpoint.clone(), source: e.into() };
        let client = Bollard::connect_with_defaults().map_err(unreachable)?;
        // Asking the version is also the check that an engine answers.
        let client = client.negotiate_version().await.map_err(unreachable)?;
        Ok(Docker { client, reach: tokio::sync::OnceCell::new() })
    }

    /// Where the engine's bridge is: here (a rootful engine on this Linux
    /// machine), behind forwarded ports (Docker Desktop's VM, rootless
    /// Docker's namespace), or on another machine. PROVISION_PROBE_VIA
    /// overrides what this finds.
    async fn find_reach(&self) -> Reach {
        use clap::ValueEnum;
        if let Some(chosen) = std::env::var("PROVISION_PROBE_VIA").ok().and_then(|v| Reach::from_str(&v, true).ok()) {
            return chosen;
        }
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let remote = ["tcp://", "ssh://", "http://", "https://"].iter().any(|scheme| {
            host.strip_prefix(scheme).is_some_and(|rest| !["localhost", "127.0.0.1", "[::1]"].iter().any(|local| rest.starts_with(local)))
        });
        if remote {
            return Reach::Exec;
        }
        match self.client.info().await {
            Ok(info) => {
                let rootless = info.security_options.unwrap_or_default().iter().any(|o| o.contains("rootless"));
                let desktop = info.operating_system.unwrap_or_default().contains("Docker Desktop");
                if rootless || desktop { Reach::Published } else { Reach::Bridge }
            }
            Err(_) => Reach::Bridge,
        }
    }

    /// A container of `spec`'s name and project that the caller did not
    /// know of when it planned this create: one a killed `up` asked for,
    /// made by the engine after that `up` was gone (so its journal never
    /// heard of it). Removed, it is made again as planned; one of another
    /// project or folder is left alone (and the create fails, saying so).
    async fn remove_late_leftover(&self, spec: &ContainerSpec) -> Result<bool> {
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

    /// Whether no container is attached to network `id`, as the engine
    /// reports it (false when it cannot say).
    async fn unattached(&self, id: &str) -> bool {
        let network = self.client.inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>).await;
        network.is_ok_and(|n| n.containers.is_none_or(|c| c.is_empty()))
    }

    /// The exit code is set a moment after an exec's output stream closes.
    async fn exit_code(&self, exec_id: &str) -> Result<i64> {
        for _ in 0..100 {
            let inspect = self.client.inspect_exec(exec_id).await?;
            if let Some(code) = inspect.exit_code.filter(|_| !inspect.running.unwrap_or(false)) {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(-1)
    }
}

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        // Connecting failed after the run began: the engine went away.
        let lost = match &e {
            bollard::errors::Error::HyperLegacyError { err } => err.is_connect(),
            bollard::errors::Error::IOError { .. } => true,
            _ => false,
        };
        if lost { EngineError::Lost(e.into()) } else { EngineError::api(e) }
    }
}

pub(super) fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL_PREFIX}project={project}")])])
}

/// The project's resources, and of those only the ones `owner` (a project
/// folder) made, when given.
pub(super) fn owner_filter(project: &str, owner: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut filter = project_filter(project);
    if let Some(dir) = owner {
        filter.get_mut("label").expect("a label filter").push(format!("{LABEL_PREFIX}project-dir={dir}"));
    }
    filter
}

pub(super) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

pub(super) fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })
}

pub(super) fn nanos(ms: u32) -> i64 {
    i64::from(ms) * 1_000_000
}

#[async_trait::async_trait]
impl Engine for Docker {
    async fn containers(&self, project: &str) -> Result<Vec<Actual>> {
        let options = ListContainersOptionsBuilder::default().all(true).filters(&project_filter(project)).build();
        let list = self.client.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|c| Actual {
                id: c.id.unwrap_or_default(),
                name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
                published: c.ports.unwrap_or_default().iter().filter_map(|p| Some((p.private_port, p.public_port?))).collect(),
                writes_host: c.mounts.unwrap_or_default().iter().any(|m| m.typ.as_deref() == Some("bind") && m.rw == Some(true)),
            })
            .collect())
    }

    async fn ensure_network(&self, name: &str, internal: bool, labels: Labels) -> Result<Option<Existing>> {
        // Docker accepts two networks of one name; never make a second
        // (nor a third, when two are there and the name is ambiguous).
        match self.client.inspect_network(name, None).await {
            Ok(found) => return Ok(Some(Existing { labels: found.labels.unwrap_or_default(), internal: found.internal.unwrap_or(false) })),
            Err(e) if !is_not_found(&e) => return Err(e.into()),
            Err(_) => {}
        }
        let request = NetworkCreateRequest { name: name.to_string(), internal: Some(internal), labels: Some(labels), ..Default::default() };
        match self.client.create_network(request).await {
            Ok(_) => Ok(None),
            // Made meanwhile by someone else: look at it as found.
            Err(e) if is_conflict(&e) => {
                let found = self.client.inspect_network(name, None).await?;
                Ok(Some(Existing { labels: found.labels.unwrap_or_default(), internal: found.internal.unwrap_or(false) }))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_volume(&self, name: &str, labels: Labels) -> Result<Option<Existing>> {
        if let Ok(found) = self.client.inspect_volume(name).await {
            return Ok(Some(Existing { labels: found.labels, internal: false }));
        }
        // Creating a volume that exists returns it unchanged, with its labels.
        let request = VolumeCreateRequest { name: Some(name.to_string()), labels: Some(labels.clone()), ..Default::default() };
        let made = self.client.create_volume(request).await?;
        Ok((made.labels != labels).then_some(Existing { labels: made.labels, internal: false }))
    }

    async fn ensure_image(&self, image: &str) -> Result<()> {
        if self.client.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        self.client
            .create_image(Some(options), None, None)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| EngineError::Image { image: image.to_string(), source: e.into() })?;
        Ok(())
    }

    async fn image_digest(&self, image: &str) -> Result<Option<String>> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(info.repo_digests.unwrap_or_default().into_iter().find_map(|d| d.split_once('@').map(|(_, d)| d.to_string())).or(info.id)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn images(&self, label: &str) -> Result<Vec<ImageInfo>> {
        let filter = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let images = self.client.list_images(Some(ListImagesOptionsBuilder::default().filters(&filter).build())).await?;
        Ok(images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                labels: i.labels,
                size: u64::try_from(i.size).unwrap_or(0),
                created: i.created,
            })
            .collect())
    }

    async fn remove_image(&self, id: &str) -> Result<()> {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        match self.client.remove_image(id, Some(options), None).await {
            Err(e) if !is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn build_image(
        &self,
        tag: &str,
        spec: &BuildSpec,
        context: &std::path::Path,
        labels: &Labels,
        progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()> {
        let mut options = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .dockerfile(spec.dockerfile.as_deref().unwrap_or("Dockerfile"))
            .t(tag)
            // A failed step's container goes too: nothing of a failed build is left.
            .rm(true)
            .forcerm(true)
            .labels(labels)
            .buildargs(&spec.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        if let Some(target) = &spec.target {
            options = options.target(target);
        }
        let file = tokio::fs::File::open(context).await.map_err(|e| EngineError::Build { tag: tag.to_string(), message: e.to_string() })?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let mut stream = self.client.build_image(options.build(), None, Some(body));
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| EngineError::Build { tag: tag.to_string(), message: e.to_string() })?;
            if let Some(detail) = info.error_detail {
                return Err(EngineError::Build { tag: tag.to_string(), message: detail.message.unwrap_or_default() });
            }
            let text = info.stream.unwrap_or_default();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                progress(line);
            }
        }
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let (network, aliases) = spec.networks.first().cloned().unwrap_or_default();
        let mut port_bindings = HashMap::new();
        let mut exposed = Vec::new();
        for port in &spec.ports {
            let key = format!("{}/{}", port.container, if port.protocol == Protocol::Udp { "udp" } else { "tcp" });
            exposed.push(key.clone());
            if let Some(host) = port.host {
                let binding =
                    PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(if host == 0 { String::new() } else { host.to_string() }) };
                port_bindings.insert(key, Some(vec![binding]));
            }
        }
        let mounts = spec.mounts.iter().map(mount).collect();
        let p = &spec.privileges;
        let host_config = HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(mounts),
            init: Some(spec.init),
            readonly_rootfs: Some(spec.read_only),
            security_opt: spec.no_new_privileges.then(|| vec!["no-new-privileges:true".to_string()]),
            memory: spec.resources.memory_bytes.map(|b| b as i64),
            nano_cpus: spec.resources.milli_cpus.map(|m| i64::from(m) * 1_000_000),
            pids_limit: spec.resources.pids.map(i64::from),
            restart_policy: Some(BollardRestart {
                name: Some(match spec.restart {
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
        let healthcheck = spec.health.as_ref().map(|h| HealthConfig {
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
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(spec.env.clone()),
            working_dir: spec.working_dir.clone(),
            user: spec.user.clone(),
            exposed_ports: Some(exposed),
            labels: Some(spec.labels.clone()),
            healthcheck,
            stop_timeout: Some(spec.stop_timeout),
            host_config: Some(host_config),
            networking_config,
            open_stdin: Some(spec.stdin),
            stdin_once: Some(spec.stdin),
            attach_stdin: Some(spec.stdin),
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

    fn joins_networks_later(&self) -> bool {
        true
    }

    async fn join_networks(&self, id: &str, networks: &[(String, Vec<String>)]) -> Result<()> {
        for (network, aliases) in networks {
            let request = bollard::models::NetworkConnectRequest {
                container: id.to_string(),
                endpoint_config: Some(EndpointSettings { aliases: Some(aliases.clone()), ..Default::default() }),
            };
            self.client.connect_network(network, request).await?;
        }
        Ok(())
    }

    async fn leave_network(&self, id: &str, network: &str) -> Result<()> {
        let request = bollard::models::NetworkDisconnectRequest { container: id.to_string(), force: Some(false) };
        self.client.disconnect_network(network, request).await?;
        if self.unattached(network).await {
            match self.client.remove_network(network).await {
                Err(e) if !is_not_found(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn put_files(&self, id: &str, files: &[File]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut archive = tar::Builder::new(Vec::new());
        for file in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(file.contents.len() as u64);
            header.set_mode(file.mode);
            header.set_mtime(0);
            header.set_cksum();
            let path = file.path.trim_start_matches('/');
            archive.append_data(&mut header, path, file.contents.as_bytes()).map_err(EngineError::api)?;
        }
        self.put_archive(id, archive.into_inner().map_err(EngineError::api)?).await
    }

    async fn put_archive(&self, id: &str, archive: Vec<u8>) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.client.upload_to_container(id, Some(options), bollard::body_full(archive.into())).await?;
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.client.start_container(id, None).await?;
        Ok(())
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        let options = bollard::query_parameters::WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut stream = self.client.wait_container(id, Some(options));
        match stream.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Ok(self.status(id).await?.exit_code.unwrap_or(-1)),
        }
    }

    async fn status(&self, id: &str) -> Result<Status> {
        let info = self.client.inspect_container(id, None).await?;
        let state = info.state.unwrap_or_default();
        let networks = info.network_settings.as_ref().and_then(|n| n.networks.as_ref());
        let ip = networks.and_then(|n| n.values().find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty())));
        let health = state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty() && s != "none");
        let published = info
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|(key, bindings)| {
                        let container = key.split('/').next()?.parse().ok()?;
                        let host = bindings.as_ref()?.iter().find_map(|b| b.host_port.as_deref()?.parse().ok())?;
                        Some((container, host))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Status {
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            ip,
            health,
            started_at: state.started_at,
            published,
            problem: None,
            replicas: None,
        })
    }

    async fn reach(&self) -> Reach {
        *self.reach.get_or_init(|| self.find_reach()).await
    }

    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send)) -> Result<i64> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.command.to_vec()),
            user: command.user.map(str::to_string),
            env: Some(command.env.to_vec()),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, config).await?;
        if let bollard::exec::StartExecResults::Attached { output: mut stream, .. } = self.client.start_exec(&exec.id, None).await? {
            while let Some(chunk) = stream.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => on_output(OutputStream::Stderr, &message),
                    other => on_output(OutputStream::Stdout, &other.into_bytes()),
                }
            }
        }
        self.exit_code(&exec.id).await
    }

    async fn exec_attached(
        &self,
        id: &str,
        command: ExecCommand<'_>,
        stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        tty: Option<(u16, u16)>,
        on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send),
    ) -> Result<i64> {
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty.is_some()),
            cmd: Some(command.command.to_vec()),
            user: command.user.map(str::to_string),
            env: Some(command.env.to_vec()),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, config).await?;
        if let bollard::exec::StartExecResults::Attached { output, input } = self.client.start_exec(&exec.id, None).await? {
            if let Some((width, height)) = tty {
                // Best effort: a command that starts before it sees its size still runs.
                let _ = self.client.resize_exec(&exec.id, bollard::exec::ResizeExecOptions { width, height }).await;
            }
            pump(output, input, Some(stdin), tty.is_some(), on_output).await?;
        }
        self.exit_code(&exec.id).await
    }

    async fn start_attached(
        &self,
        id: &str,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        tty: Option<(u16, u16)>,
        on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send),
    ) -> Result<i64> {
        // Attached before it starts, so not a byte of its output is missed.
        let options = AttachContainerOptionsBuilder::default().stream(true).stdin(stdin.is_some()).stdout(true).stderr(true).build();
        let attached = self.client.attach_container(id, Some(options)).await?;
        self.start(id).await?;
        if let Some((w, h)) = tty {
            let _ = self.client.resize_container_tty(id, ResizeContainerTTYOptionsBuilder::default().w(w.into()).h(h.into()).build()).await;
        }
        pump(attached.output, attached.input, stdin, tty.is_some(), on_output).await?;
        self.wait_exit(id).await
    }

    async fn labeled(&self, label: &str) -> Result<Vec<Labeled>> {
        let filter = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let containers = self.client.list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filter).build()));
        let networks = self.client.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filter).build()));
        let volumes = self.client.list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filter).build()));
        let (containers, networks, volumes) = futures_util::try_join!(containers, networks, volumes)?;
        let mut found: Vec<Labeled> = containers
            .into_iter()
            .map(|c| Labeled {
                kind: Kind::Container,
                id: c.id.unwrap_or_default(),
                name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
            })
            .collect();
        found.extend(networks.into_iter().map(|n| Labeled {
            kind: Kind::Network,
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            labels: n.labels.unwrap_or_default(),
        }));
        found.extend(volumes.volumes.unwrap_or_default().into_iter().map(|v| Labeled {
            kind: Kind::Volume,
            id: v.name.clone(),
            name: v.name,
            labels: v.labels,
        }));
        Ok(found)
    }

    async fn remove_labeled(&self, item: &Labeled) -> Result<()> {
        let result = match item.kind {
            Kind::Container => return self.remove(&item.id).await,
            Kind::Network => self.client.remove_network(&item.id).await,
            Kind::Volume => self.client.remove_volume(&item.id, None::<RemoveVolumeOptions>).await,
        };
        match result {
            Err(e) if !is_not_found(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<String>> {
        let mut options = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(follow);
        options = options.tail(&tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()));
        self.client.logs(id, Some(options.build())).map(|chunk| Ok(chunk?.to_string())).boxed()
    }

    async fn stop_and_remove(&self, id: &str, grace_secs: u32) -> Result<()> {
        let options = bollard::query_parameters::StopContainerOptionsBuilder::default().t(grace_secs as i32).build();
        match self.client.stop_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.remove(id).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_networks(&self, project: &str, owner: Option<&str>) -> Result<Vec<String>> {
        let options = ListNetworksOptionsBuilder::default().filters(&owner_filter(project, owner)).build();
        let networks = self.client.list_networks(Some(options)).await?;
        let removals = networks.into_iter().map(|network| async move {
            let name = network.name.unwrap_or_default();
            let id = network.id.as_deref().unwrap_or(&name);
            // Docker 20.10 can count an endpoint on a network after parallel
            // removals of its containers (moby/moby#42119): when no container
            // is attached, wait for a late count a little, then say what it is.
            for attempt in 1..=4 {
                match self.client.remove_network(id).await {
                    Ok(()) => return Ok(Some(name)),
                    Err(e) if is_not_found(&e) => return Ok(None),
                    Err(e) if e.to_string().contains("active endpoints") && self.unattached(id).await => {
                        if attempt < 4 {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(EngineError::StaleNetwork { name })
        });
        removed(futures_util::future::join_all(removals).await)
    }

    async fn remove_volumes(&self, project: &str, owner: Option<&str>) -> Result<Vec<String>> {
        let options = ListVolumesOptionsBuilder::default().filters(&owner_filter(project, owner)).build();
        let volumes = self.client.list_volumes(Some(options)).await?.volumes.unwrap_or_default();
        let removals = volumes.into_iter().map(|volume| async move {
            match self.client.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await {
                Ok(()) => Ok(Some(volume.name)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e.into()),
            }
        });
        removed(futures_util::future::join_all(removals).await)
    }
}

/// The names removed in parallel, or the first error (gone already is neither).
pub(super) fn removed(results: Vec<Result<Option<String>>>) -> Result<Vec<String>> {
    results.into_iter().filter_map(Result::transpose).collect()
}

/// Copy `stdin` to an attached command while its output streams to
/// `on_output`, until the output ends. At the end of input the write side
/// is shut, so the command reads end-of-file (a piped dump ends); not on a
/// terminal, though: the engine would end the session with it (keys,
/// Ctrl-D included, travel as bytes there).
async fn pump(
    mut output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    tty: bool,
    on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send),
) -> Result<()> {
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = tokio::io::copy(&mut stdin, &mut input).await;
            if !tty {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut input).await;
            }
        }
        std::future::pending::<()>().await
    };
    let drain = async {
        while let Some(chunk) = output.next().await {
            match chunk? {
                bollard::container::LogOutput::StdErr { message } => on_output(OutputStream::Stderr, &message),
                other => on_output(OutputStream::Stdout, &other.into_bytes()),
            }
        }
        Ok::<(), EngineError>(())
    };
    tokio::select! {
        result = drain => result,
        () = feed => Ok(()),
    }
}

pub(super) fn mount(m: &MountSpec) -> BollardMount {
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
