//! Checks on what a plugin returns, before anything is applied: the plan
//! must be well formed, and any power beyond an ordinary container
//! (privileged mode, host namespaces, devices, added capabilities, the
//! Docker socket, host paths outside the project) needs the user's explicit
//! `allow` for that service. Must not change a plan: it accepts or refuses,
//! naming plugin, service and field.

use std::{
    collections::HashSet,
    path::{Component, Path},
};

use super::host_path;
use crate::{
    desired::{Container, HostPaths, Image, MountSource, PluginInfo, ServicePlan},
    stack::Permission,
};

/// How much one service's plan may hold. A plan is written by hand in a
/// plugin; thousands of anything are a mistake or an attack (each published
/// port is a process on the host: 150 of them cost 500 MiB). `allow =
/// ["large-plan"]` raises every limit to `LARGE`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub containers: usize,
    pub volumes: usize,
    pub networks: usize,
    pub published_ports: usize,
    /// Files placed in containers, all of them.
    pub files: usize,
}

impl Limits {
    pub const NORMAL: Limits = Limits { containers: 256, volumes: 64, networks: 64, published_ports: 64, files: 256 };
    pub const LARGE: Limits = Limits { containers: 1024, volumes: 256, networks: 256, published_ports: 1024, files: 4096 };
}

/// Label namespaces of provision itself and of other tools: a plugin setting
/// `com.docker.compose.project` would pass its container off as theirs.
const RESERVED_LABELS: &[&str] = &["dev.provision.", "com.docker.", "io.docker.", "org.opencontainers.", "io.kubernetes.", "io.containerd."];

#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// e.g. `containers.server.privileges.privileged: privileged mode`
    pub message: String,
    /// The `allow` entry that would permit it; None for malformed plans.
    pub permission: Option<Permission>,
}

/// What the user's stack.toml grants one service.
pub struct Grants<'a> {
    pub allow: &'a [Permission],
    /// Every string the user wrote in the service's config: a bind of a path
    /// named there may be writable (`code = "app"` lets `app` be written).
    pub named: &'a [&'a str],
    pub project_dir: &'a Path,
}

/// Check a plan; returns the host paths it names as resolved now, which
/// are the ones every later use must find (`host_path::pinned`).
pub fn check(plan: &ServicePlan, info: &PluginInfo, grants: &Grants) -> Result<HostPaths, Refusal> {
    let malformed = |message: String| Refusal { message: format!("its plan is malformed: {message}"), permission: None };

    for output in &plan.outputs {
        if !info.outputs.iter().any(|o| o.name == output.name) {
            return Err(malformed(format!("output `{}` is not declared in its info", output.name)));
        }
    }
    let large = grants.allow.contains(&Permission::LargePlan);
    let limits = if large { Limits::LARGE } else { Limits::NORMAL };
    let everything = || plan.containers.iter().chain(&plan.tasks);
    let counts = [
        ("containers and tasks", plan.containers.len() + plan.tasks.len(), limits.containers),
        ("volumes", plan.volumes.len(), limits.volumes),
        ("networks", plan.networks.len(), limits.networks),
        ("published ports", everything().flat_map(|c| &c.ports).filter(|p| p.host.is_some()).count(), limits.published_ports),
        ("files", everything().map(|c| c.files.len()).sum(), limits.files),
    ];
    if let Some((what, count, limit)) = counts.into_iter().find(|(_, count, limit)| count > limit) {
        let message = format!("its plan has {count} {what}, over the limit of {limit} for one service");
        return Err(Refusal { message, permission: (!large).then_some(Permission::LargePlan) });
    }
    for volume in &plan.volumes {
        if !valid_last_name(volume) {
            return Err(malformed(format!("volume name {volume:?} is empty, too long or not [a-z0-9_-]")));
        }
    }
    for (i, network) in plan.networks.iter().enumerate() {
        if !valid_last_name(&network.name) {
            return Err(malformed(format!("network name {:?} is empty, too long or not [a-z0-9_-]", network.name)));
        }
        if plan.networks[..i].iter().any(|n| n.name == network.name) {
            return Err(malformed(format!("network `{}` is declared twice", network.name)));
        }
    }
    let mut names = HashSet::new();
    let mut pins = HostPaths::new();
    for (kind, container) in plan.containers.iter().map(|c| ("containers", c)).chain(plan.tasks.iter().map(|c| ("tasks", c))) {
        let at = format!("{kind}.{}", container.name);
        if !valid_name(&container.name) || !names.insert(&container.name) {
            return Err(malformed(format!("{kind} name {:?} is empty, repeated or not [a-z0-9-]", container.name)));
        }
        check_container(container, &at, plan, grants, &mut pins, &malformed)?;
    }
    super::watch_policy::check(plan, grants.project_dir)?;
    for m in &plan.metrics {
        if !names.contains(&m.container) || !valid_url_path(&m.path) {
            return Err(malformed(format!(
                "metrics endpoint {:?} on `{}` names no container of the plan or is not a plain path",
                m.path, m.container
            )));
        }
    }
    Ok(pins)
}

fn check_container(
    c: &Container,
    at: &str,
    plan: &ServicePlan,
    grants: &Grants,
    pins: &mut HostPaths,
    malformed: &dyn Fn(String) -> Refusal,
) -> Result<(), Refusal> {
    let needs = |permission: Permission, field: String, what: &str| -> Result<(), Refusal> {
        if grants.allow.contains(&permission) {
            Ok(())
        } else {
            Err(Refusal { message: format!("{at}.{field} asks for {what}"), permission: Some(permission) })
        }
    };
    let p = &c.privileges;
    if p.privileged {
        needs(Permission::Privileged, "privileges.privileged".into(), "privileged mode")?;
    }
    if !p.cap_add.is_empty() {
        needs(Permission::CapAdd, "privileges.cap-add".into(), &format!("added capabilities {}", p.cap_add.join(", ")))?;
    }
    if p.host_network {
        needs(Permission::HostNetwork, "privileges.host-network".into(), "the host's network")?;
    }
    if p.host_pid {
        needs(Permission::HostPid, "privileges.host-pid".into(), "the host's PID namespace")?;
    }
    if !p.devices.is_empty() {
        needs(Permission::Devices, "privileges.devices".into(), &format!("host devices {}", p.devices.join(", ")))?;
    }
    // `KEY=value` is how the engine takes env: a name holding `=` would set
    // another variable after the user's (`DATABASE_URL=postgres://evil` = "").
    if let Some(key) = c.env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
        return Err(malformed(format!("{at}.env: {key:?} is not a variable name (empty, or holding `=` or NUL)")));
    }
    if let Some(key) = c.labels.keys().find(|k| RESERVED_LABELS.iter().any(|r| k.starts_with(r))) {
        return Err(malformed(format!("{at}.labels: `{key}` is in a namespace of provision or another tool")));
    }

    let refused = |field: &str, message: String| Refusal { message: format!("{at}.{field}: {message}"), permission: None };
    if let Image::Build(build) = &c.image {
        let context = host_path::resolve(grants.project_dir, &build.context).map_err(|e| refused("image.build.context", e))?;
        pins.insert(build.context.clone(), context.real.clone());
        if !context.inside {
            needs(
                Permission::BindOutsideProject,
                "image.build.context".into(),
                &format!("build context {} outside the project folder", context.real.display()),
            )?;
        }
    }
    let mut binds = Vec::new();
    for (i, mount) in c.mounts.iter().enumerate() {
        if !is_absolute(&mount.target) {
            return Err(malformed(format!("{at}.mounts.{i}: target {:?} is not an absolute path", mount.target)));
        }
        match &mount.source {
            MountSource::Bind(path) => {
                let host = host_path::resolve(grants.project_dir, path).map_err(|e| refused(&format!("mounts.{i}"), e))?;
                pins.insert(path.clone(), host.real.clone());
                binds.push(mount.target.as_str());
                if is_engine_socket(&host.real) {
                    needs(Permission::DockerSocket, format!("mounts.{i}"), &format!("the container engine's socket ({})", host.real.display()))?;
                    continue;
                }
                if !host.inside {
                    needs(
                        Permission::BindOutsideProject,
                        format!("mounts.{i}"),
                        &format!("host path {} outside the project folder", host.real.display()),
                    )?;
                }
                if !mount.read_only && !grants.named.iter().any(|n| host_path::same(grants.project_dir, &host.real, n)) {
                    return Err(refused(
                        &format!("mounts.{i}"),
                        format!(
                            "asks to write to host path {} (bind {path:?} is not read-only); a plugin may only write where the service's \
                             config in stack.toml names the path, e.g. `code = {path:?}`",
                            host.real.display()
                        ),
                    ));
                }
            }
            MountSource::Volume(name) if !name.contains('/') && !plan.volumes.contains(name) => {
                return Err(malformed(format!("{at}.mounts.{i}: volume `{name}` is not in the plan's volumes")));
            }
            _ => {}
        }
    }
    for (i, file) in c.files.iter().enumerate() {
        if !is_absolute(&file.path) {
            return Err(malformed(format!("{at}.files.{i}: path {:?} is not absolute and plain", file.path)));
        }
        // Files are copied in before start; under a bind they would land on the host.
        if let Some(bind) = binds.iter().find(|b| Path::new(&file.path).starts_with(b)) {
            return Err(refused(&format!("files.{i}"), format!("{:?} is under the bind mount {bind:?}: it would be written to the host", file.path)));
        }
    }
    for network in &c.networks {
        if !plan.networks.iter().any(|n| &n.name == network) {
            return Err(malformed(format!("{at}.networks: `{network}` is not in the plan's networks")));
        }
    }
    Ok(())
}

/// An absolute path without `.` or `..`: a container path the host compares
/// by prefix must mean what it says.
pub fn is_absolute(path: &str) -> bool {
    path.starts_with('/') && Path::new(path).components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// A URL path fit to be written into another plugin's config (e.g.
/// prometheus.yml): no quotes, spaces, newlines or query.
pub fn valid_url_path(path: &str) -> bool {
    path.starts_with('/') && path.len() <= 256 && path.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
}

fn is_engine_socket(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "docker.sock" || n == "podman.sock" || n == "containerd.sock")
}

/// Volume and network names come last in their engine names (`P_S_NAME`,
/// `P_NAME`), after parts that cannot contain `_`: they may.
fn valid_last_name(name: &str) -> bool {
    valid_name(&name.replace('_', "-"))
}

/// Container names are DNS names (`SERVICE-CONTAINER`): [a-z0-9-].
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_must_be_plain() {
        assert!(is_absolute("/app/config"));
        assert!(!is_absolute("/app/../etc/passwd"));
        assert!(!is_absolute("app"));
        assert!(valid_url_path("/metrics"));
        assert!(!valid_url_path("/metrics'\n- job_name: x"));
    }

    #[test]
    fn sockets_are_recognised_anywhere() {
        assert!(is_engine_socket(Path::new("/var/run/docker.sock")));
        assert!(is_engine_socket(Path::new("/run/user/1000/podman/podman.sock")));
        assert!(!is_engine_socket(Path::new("/p/app/docker-compose.yml")));
    }
}
