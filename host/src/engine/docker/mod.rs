//! The Docker backend (bollard): Docker, and Podman's compatible socket.
//! Owns the translation of engine-boundary types into Docker API calls;
//! must not decide anything about the project (apply does).
//!
//! Here: the connection, errors, filters and the trait's methods; `create`
//! translates a container spec into Docker's, `images` pulls, builds and
//! lists images, `exec` runs commands in containers and attaches to them.

mod create;
mod errors;
mod exec;
mod files;
mod images;

use std::{collections::HashMap, time::Duration};

use bollard::{
    Docker as Bollard,
    models::{EndpointSettings, NetworkCreateRequest, VolumeCreateRequest},
    query_parameters::{
        ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder, RemoveVolumeOptions, ResizeContainerTTYOptionsBuilder,
    },
};
use futures_util::{StreamExt, stream::BoxStream};

use super::{
    Actual, ContainerSpec, Engine, EngineError, ExecCommand, Existing, ImageInfo, Input, Kind, LABEL_PREFIX, Labeled, Labels, LogOptions, OnOutput,
    Reach, Result, Status,
};
use crate::desired::{BuildSpec, File};

pub(super) use create::mount;
pub(super) use errors::{is_conflict, is_not_found};
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

impl Docker {
    /// SIGTERM, then SIGKILL after `grace_secs`; false: no such container.
    async fn stop_gracefully(&self, id: &str, grace_secs: u32) -> Result<bool> {
        let options = bollard::query_parameters::StopContainerOptionsBuilder::default().t(grace_secs as i32).build();
        match self.client.stop_container(id, Some(options)).await {
            // 304: already stopped.
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
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
                image_id: c.image_id,
            })
            .collect())
    }

    async fn network(&self, name: &str) -> Result<Option<Existing>> {
        match self.client.inspect_network(name, None).await {
            Ok(found) => Ok(Some(Existing { labels: found.labels.unwrap_or_default(), internal: found.internal.unwrap_or(false) })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_network(&self, name: &str, internal: bool, labels: Labels) -> Result<Option<Existing>> {
        // Docker accepts two networks of one name; never make a second
        // (nor a third, when two are there and the name is ambiguous).
        if let Some(found) = self.network(name).await? {
            return Ok(Some(found));
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
        self.pull_if_missing(image).await
    }

    async fn image_digest(&self, image: &str) -> Result<Option<String>> {
        self.digest_of(image).await
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn images(&self, label: &str) -> Result<Vec<ImageInfo>> {
        self.list_images(label).await
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
        no_cache: bool,
        progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()> {
        self.build(tag, spec, context, labels, no_cache, progress).await
    }

    async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String> {
        self.create_container(spec).await
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
        self.put_files_archive(id, files).await
    }

    async fn put_archive(&self, id: &str, archive: Vec<u8>) -> Result<()> {
        self.upload(id, archive).await
    }

    async fn get_archive(&self, id: &str, path: &str, out: &mut (dyn std::io::Write + Send), max_bytes: u64) -> Result<()> {
        self.download(id, path, out, max_bytes).await
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
            restarts: info.restart_count.and_then(|n| u32::try_from(n).ok()),
            image: info.image.filter(|i| !i.is_empty()),
            stdin_open: info.config.as_ref().and_then(|c| c.open_stdin).unwrap_or(false),
            tty: info.config.as_ref().and_then(|c| c.tty).unwrap_or(false),
        })
    }

    async fn reach(&self) -> Reach {
        *self.reach.get_or_init(|| self.find_reach()).await
    }

    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut OnOutput<'_>) -> Result<i64> {
        self.exec_streaming(id, command, on_output).await
    }

    async fn exec_attached(
        &self,
        id: &str,
        command: ExecCommand<'_>,
        stdin: Input,
        tty: Option<(u16, u16)>,
        on_output: &mut OnOutput<'_>,
    ) -> Result<i64> {
        self.exec_with_input(id, command, stdin, tty, on_output).await
    }

    async fn start_attached(&self, id: &str, stdin: Option<Input>, tty: Option<(u16, u16)>, on_output: &mut OnOutput<'_>) -> Result<i64> {
        self.start_with_input(id, stdin, tty, on_output).await
    }

    async fn attach(&self, id: &str, stdin: Option<Input>, tty: Option<(u16, u16)>, detach_keys: &str, on_output: &mut OnOutput<'_>) -> Result<()> {
        self.attach_running(id, stdin, tty, detach_keys, on_output).await
    }

    async fn resize_tty(&self, id: &str, (w, h): (u16, u16)) -> Result<()> {
        let options = ResizeContainerTTYOptionsBuilder::default().w(w.into()).h(h.into()).build();
        Ok(self.client.resize_container_tty(id, options).await?)
    }

    async fn labeled(&self, label: &str) -> Result<Vec<Labeled>> {
        self.list_labeled(label).await
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

    fn logs(&self, id: &str, options: &LogOptions) -> BoxStream<'static, Result<String>> {
        self.client.logs(id, Some(options.query())).map(|chunk| Ok(chunk?.to_string())).boxed()
    }

    async fn stop(&self, id: &str, grace_secs: u32) -> Result<()> {
        self.stop_gracefully(id, grace_secs).await.map(drop)
    }

    async fn stop_and_remove(&self, id: &str, grace_secs: u32) -> Result<()> {
        if self.stop_gracefully(id, grace_secs).await? { self.remove(id).await } else { Ok(()) }
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
