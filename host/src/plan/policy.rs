//! Checks on what a plugin returns, before anything is applied: the plan
//! must be well formed, and any power beyond an ordinary container
//! (privileged mode, host namespaces, devices, added capabilities, the
//! Docker socket, host paths outside the project) needs the user's explicit
//! `allow` for that service. Must not change a plan: it accepts or refuses,
//! naming plugin, service and field.

use std::path::{Component, Path, PathBuf};

use crate::desired::{Container, MountSource, PluginInfo, ServicePlan};

#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// e.g. `containers.server.privileges.privileged: privileged mode`
    pub message: String,
    /// The `allow` entry that would permit it; None for malformed plans.
    pub permission: Option<&'static str>,
}

pub fn check(plan: &ServicePlan, info: &PluginInfo, allow: &[String], project_dir: &Path) -> Result<(), Refusal> {
    let malformed = |message: String| Refusal { message: format!("its plan is malformed: {message}"), permission: None };

    for output in &plan.outputs {
        if !info.outputs.iter().any(|o| o.name == output.name) {
            return Err(malformed(format!("output `{}` is not declared in its info", output.name)));
        }
    }
    let mut names = Vec::new();
    for (kind, container) in plan.containers.iter().map(|c| ("containers", c)).chain(plan.tasks.iter().map(|c| ("tasks", c))) {
        let at = format!("{kind}.{}", container.name);
        if !valid_name(&container.name) || names.contains(&&container.name) {
            return Err(malformed(format!("{kind} name {:?} is empty, repeated or not [a-z0-9-]", container.name)));
        }
        names.push(&container.name);
        check_container(container, &at, plan, allow, project_dir, &malformed)?;
    }
    Ok(())
}

fn check_container(
    c: &Container,
    at: &str,
    plan: &ServicePlan,
    allow: &[String],
    project_dir: &Path,
    malformed: &dyn Fn(String) -> Refusal,
) -> Result<(), Refusal> {
    let needs = |permission: &'static str, field: String, what: &str| -> Result<(), Refusal> {
        if allow.iter().any(|a| a == permission) {
            Ok(())
        } else {
            Err(Refusal { message: format!("{at}.{field} asks for {what}"), permission: Some(permission) })
        }
    };
    let p = &c.privileges;
    if p.privileged {
        needs("privileged", "privileges.privileged".into(), "privileged mode")?;
    }
    if !p.cap_add.is_empty() {
        needs("cap-add", "privileges.cap-add".into(), &format!("added capabilities {}", p.cap_add.join(", ")))?;
    }
    if p.host_network {
        needs("host-network", "privileges.host-network".into(), "the host's network")?;
    }
    if p.host_pid {
        needs("host-pid", "privileges.host-pid".into(), "the host's PID namespace")?;
    }
    if !p.devices.is_empty() {
        needs("devices", "privileges.devices".into(), &format!("host devices {}", p.devices.join(", ")))?;
    }

    if let crate::desired::Image::Build(build) = &c.image
        && !normalize(&project_dir.join(&build.context)).starts_with(normalize(project_dir))
    {
        needs("bind-outside-project", "image.build.context".into(), &format!("build context {} outside the project folder", build.context))?;
    }
    for (i, mount) in c.mounts.iter().enumerate() {
        if !mount.target.starts_with('/') {
            return Err(malformed(format!("{at}.mounts.{i}: target {:?} is not an absolute path", mount.target)));
        }
        match &mount.source {
            MountSource::Bind(path) => {
                let host = normalize(&project_dir.join(path));
                if is_engine_socket(&host) {
                    needs("docker-socket", format!("mounts.{i}"), &format!("the container engine's socket ({})", host.display()))?;
                } else if !host.starts_with(normalize(project_dir)) {
                    needs("bind-outside-project", format!("mounts.{i}"), &format!("host path {} outside the project folder", host.display()))?;
                }
            }
            MountSource::Volume(name) if !name.contains('/') && !plan.volumes.contains(name) => {
                return Err(malformed(format!("{at}.mounts.{i}: volume `{name}` is not in the plan's volumes")));
            }
            _ => {}
        }
    }
    for (i, file) in c.files.iter().enumerate() {
        if !file.path.starts_with('/') {
            return Err(malformed(format!("{at}.files.{i}: path {:?} is not absolute", file.path)));
        }
    }
    for network in &c.networks {
        if !plan.networks.iter().any(|n| &n.name == network) {
            return Err(malformed(format!("{at}.networks: `{network}` is not in the plan's networks")));
        }
    }
    Ok(())
}

/// Resolve `.` and `..` without touching the filesystem (the path may not
/// exist yet), so `../../etc` cannot pass for a project path.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn is_engine_socket(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "docker.sock" || n == "podman.sock" || n == "containerd.sock")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_components_cannot_escape_the_project() {
        assert_eq!(normalize(Path::new("/p/app/../../etc/passwd")), PathBuf::from("/etc/passwd"));
        assert!(!normalize(&Path::new("/p/app").join("../x")).starts_with("/p/app"));
        assert!(normalize(&Path::new("/p/app").join("./db/init.sql")).starts_with("/p/app"));
    }

    #[test]
    fn sockets_are_recognised_anywhere() {
        assert!(is_engine_socket(Path::new("/var/run/docker.sock")));
        assert!(is_engine_socket(Path::new("/run/user/1000/podman/podman.sock")));
        assert!(!is_engine_socket(Path::new("/p/app/docker-compose.yml")));
    }
}
