//! The one hop from the plan to the engine: a planned container (one
//! instance of it, `desired::instances`) becomes the `ContainerSpec` the
//! engine gets — the container itself, plus only what is resolved here: its
//! engine name, the labels that mark it as the project's, its networks with
//! their DNS names, its mounts with absolute host paths (binds checked
//! against what `plan` pinned, hidden folders covered), what is copied in,
//! and the image its data starts from. How its data starts (`Start`) is
//! decided before the hop, never by editing the spec after it.

use std::path::Path;

use crate::{
    desired::{DesiredState, HostPaths, Image, Instance, Mount, MountSource, ServiceState},
    engine::{ContainerSpec, CopySpec, Labels, MountSpec, Role},
    plan::host_path,
    reconcile::{Names, label},
};

/// How a container's data starts.
#[derive(Debug, Clone, Copy, Default)]
pub enum Start<'a> {
    /// As planned.
    #[default]
    AsPlanned,
    /// From a snapshot: its image, and no tmpfs over the data path (a
    /// volume there is filled from the image when it is new).
    FromSnapshot { image: &'a str, data: &'a str },
    /// Alone on this network until its snapshot is taken (`snapshots`).
    Sealed(&'a str),
}

/// The spec of `instance` of `service` in its `role`, with `extra` labels.
pub fn container_spec<'c>(
    state: &DesiredState,
    project_dir: &Path,
    extra: &Labels,
    service: &ServiceState,
    instance: &'c Instance<'_>,
    role: Role,
    start: Start,
) -> Result<ContainerSpec<'c>, String> {
    let c = instance.container.as_ref();
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
    let mut mounts = Vec::new();
    let mut copies = Vec::new();
    for m in &c.mounts {
        match &m.source {
            MountSource::Copy(path) => {
                let source = host_path::pinned(&state.host_paths, project_dir, path).map_err(|e| format!("copy of {path:?}: {e}"))?;
                copies.push(CopySpec { source, target: m.target.clone() });
            }
            // A snapshot's data is in its image: no tmpfs over it.
            MountSource::Tmpfs { .. } if matches!(start, Start::FromSnapshot { data, .. } if data == m.target) => {}
            _ => mounts.extend(mount_specs(m, names, &service.name, project_dir, &state.host_paths)?),
        }
    }
    let (image, networks) = match start {
        Start::AsPlanned => (image_of(state, c), networks(state, service, instance, role)),
        Start::FromSnapshot { image, .. } => (image.to_string(), networks(state, service, instance, role)),
        Start::Sealed(network) => (image_of(state, c), vec![(network.to_string(), Vec::new())]),
    };
    Ok(ContainerSpec {
        container: c,
        name: names.container(&service.name, &c.name),
        image,
        labels,
        networks,
        mounts,
        copies,
        role,
        stdin: c.stdin_open,
        tty: c.tty,
    })
}

/// The image a planned container runs: the reference it pulls, or the tag
/// its build gets.
pub fn image_of(state: &DesiredState, c: &crate::desired::Container) -> String {
    match &c.image {
        Image::Pull(reference) => reference.clone(),
        Image::Build(spec) => spec.tag(&state.build_scope),
    }
}

/// The networks `instance` joins, each with the DNS names it has there:
/// `SERVICE-CONTAINER` on every one, and the service's own name for what
/// answers to it (the main container and its copies); a one-off none.
pub fn networks(state: &DesiredState, service: &ServiceState, instance: &Instance, role: Role) -> Vec<(String, Vec<String>)> {
    let c = &instance.container;
    let mut aliases = vec![format!("{}-{}", service.name, c.name)];
    match role {
        Role::Container if instance.answers_to_name => {
            aliases.push(service.name.clone());
            aliases.extend(c.aliases.iter().cloned());
        }
        // A one-off answers to no name: the service's traffic must not reach it.
        Role::Run => aliases.clear(),
        _ => {}
    }
    if c.networks.is_empty() {
        vec![(state.network_name("default"), aliases)]
    } else {
        c.networks.iter().map(|n| (state.network_name(n), aliases.clone())).collect()
    }
}

/// A mount of `service`'s container in engine terms. A bind is resolved
/// again now, as it is handed to the engine, and must still lead where
/// `plan` checked it; the project's hidden folders below it are each
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
