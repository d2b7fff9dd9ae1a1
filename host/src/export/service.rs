//! One engine spec as a compose service: image or build, command, env,
//! mounts, health check, networks and aliases, as `up` would create it.

use std::{collections::BTreeMap, path::Path};

use serde_json::{Map, Value, json};

use crate::{
    apply::{Role, Start, container_spec},
    desired::{DesiredState, Image, Instance, Probe, RestartPolicy, ServiceState},
    engine::{LABEL_PREFIX, Labels, MountSpec},
    reconcile::Names,
};

#[allow(clippy::too_many_arguments)]
pub(super) fn container(
    state: &DesiredState,
    project_dir: &Path,
    names: &Names,
    service: &ServiceState,
    instance: &Instance,
    role: Role,
    volumes: &mut Map<String, Value>,
    configs: &mut Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let spec = container_spec(state, project_dir, &Labels::new(), service, instance, role, Start::AsPlanned)?;
    let c = spec.container;
    let mut out = Map::new();
    out.insert("image".into(), json!(spec.image));
    if let Image::Build(build) = &c.image {
        // Compose sends a context as its .dockerignore leaves it, and
        // provision's state must not go into an image that way either.
        let root = crate::plan::host_path::pinned(&state.host_paths, project_dir, &build.context)?;
        let sent = crate::plan::build_context::sends_hidden(project_dir, &root)?;
        if let Some(hidden) = sent.first() {
            return Err(format!(
                "the build context `{}` of service `{}` holds {hidden}/, which compose would send to the engine; \
                 add `.provision` and `.git` to {}/.dockerignore, then export again",
                build.context,
                service.name,
                relative(project_dir, &root)
            ));
        }
        let mut section = Map::from_iter([("context".to_string(), json!(relative(project_dir, &project_dir.join(&build.context))))]);
        if let Some(dockerfile) = &build.dockerfile {
            section.insert("dockerfile".into(), json!(dockerfile));
        }
        if let Some(target) = &build.target {
            section.insert("target".into(), json!(target));
        }
        if !build.args.is_empty() {
            section.insert("args".into(), json!(build.args));
        }
        if !build.from_substitutes.is_empty() {
            notes.push("base images the [images] table substitutes in Dockerfiles are not substituted by compose".into());
        }
        out.insert("build".into(), Value::Object(section));
    }
    if let Some(command) = &c.command {
        out.insert("command".into(), json!(command));
    }
    if let Some(entrypoint) = &c.entrypoint {
        out.insert("entrypoint".into(), json!(entrypoint));
    }
    if !c.env.is_empty() {
        let env: BTreeMap<&str, &str> = c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        out.insert("environment".into(), json!(env));
    }
    for (key, value) in [("working_dir", &c.working_dir), ("user", &c.user)] {
        if let Some(value) = value {
            out.insert(key.into(), json!(value));
        }
    }
    if c.init {
        out.insert("init".into(), json!(true));
    }
    for (key, set) in [("read_only", c.read_only), ("stdin_open", c.stdin_open), ("tty", c.tty)] {
        if set {
            out.insert(key.into(), json!(true));
        }
    }
    if c.no_new_privileges {
        out.insert("security_opt".into(), json!(["no-new-privileges:true"]));
    }
    let ports: Vec<String> = c
        .ports
        .iter()
        .filter_map(|p| {
            let proto = if p.protocol == crate::desired::Protocol::Udp { "/udp" } else { "" };
            p.host.map(|host| match host {
                0 => format!("127.0.0.1::{}{proto}", p.container),
                host => format!("127.0.0.1:{host}:{}{proto}", p.container),
            })
        })
        .collect();
    if !ports.is_empty() {
        out.insert("ports".into(), json!(ports));
    }
    // Listened on but not published: compose notes these as `expose`.
    let exposed: Vec<u16> = c.ports.iter().filter(|p| p.host.is_none()).map(|p| p.container).collect();
    if !exposed.is_empty() {
        out.insert("expose".into(), json!(exposed));
    }
    let prefix = format!("{}_", names.project);
    let mut mounts = Vec::new();
    let mut tmpfs = Vec::new();
    for mount in &spec.mounts {
        match mount {
            MountSpec::Volume { name, target, read_only } => {
                let key = name.strip_prefix(&prefix).unwrap_or(name).to_string();
                volumes.insert(key.clone(), json!({}));
                mounts.push(json!({"type": "volume", "source": key, "target": target, "read_only": read_only}));
            }
            MountSpec::Bind { source, target, read_only } => {
                mounts.push(json!({"type": "bind", "source": relative(project_dir, Path::new(source)), "target": target, "read_only": read_only}));
            }
            MountSpec::Tmpfs { target, size_bytes, mode } => {
                let mut options = Vec::new();
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                if let Some(mode) = mode {
                    options.push(format!("mode={mode:o}"));
                }
                tmpfs.push(if options.is_empty() { target.clone() } else { format!("{target}:{}", options.join(",")) });
            }
            MountSpec::Anonymous { target } => mounts.push(json!({"type": "volume", "target": target})),
        }
    }
    for copy in &spec.copies {
        // Compose has no hand-over by copy: a read-only bind, as written.
        mounts.push(json!({"type": "bind", "source": relative(project_dir, &copy.source), "target": copy.target, "read_only": true}));
        notes.push(format!("{} is copied in by provision (it lies inside a folder a plugin's container writes); compose binds it", copy.target));
    }
    if !mounts.is_empty() {
        out.insert("volumes".into(), json!(mounts));
    }
    if !tmpfs.is_empty() {
        out.insert("tmpfs".into(), json!(tmpfs));
    }
    if !c.files.is_empty() {
        let mut refs = Vec::new();
        for (i, file) in c.files.iter().enumerate() {
            let name = format!("{}-{}-{}", service.name, c.name, i + 1);
            configs.insert(name.clone(), json!({"content": file.contents}));
            refs.push(json!({"source": name, "target": file.path, "mode": file.mode}));
        }
        out.insert("configs".into(), json!(refs));
    }
    if let (Some(health), Role::Container) = (&c.health, role) {
        let test = health.probe.in_container();
        let ms = |v: u32| format!("{v}ms");
        out.insert(
            "healthcheck".into(),
            json!({
                "test": std::iter::once("CMD".to_string()).chain(test).collect::<Vec<_>>(),
                "interval": ms(health.interval_ms),
                "timeout": ms(health.timeout_ms),
                "retries": health.retries,
                "start_period": ms(health.start_period_ms),
            }),
        );
        if !matches!(health.probe, Probe::Exec(_)) {
            notes.push("probes provision makes from the host run in the container (pg_isready, redis-cli, nc, wget/curl/bash)".into());
        }
    }
    if !c.hooks.is_empty() {
        // post_start runs as the container starts; provision's hooks run
        // once it is ready: each waits for its health check first.
        let ready = c.health.as_ref().map(|h| h.probe.in_container());
        let hooks: Vec<Value> = c
            .hooks
            .iter()
            .map(|h| {
                let command = match &ready {
                    Some(probe) => {
                        let wait = format!(
                            "i=0; until {} >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1; done; exec \"$@\"",
                            probe.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
                        );
                        ["sh".to_string(), "-c".to_string(), wait, "sh".to_string()].into_iter().chain(h.command.iter().cloned()).collect()
                    }
                    None => h.command.clone(),
                };
                let mut hook = Map::from_iter([("command".to_string(), json!(command))]);
                if let Some(user) = &h.user {
                    hook.insert("user".into(), json!(user));
                }
                if !h.env.is_empty() {
                    hook.insert("environment".into(), json!(h.env));
                }
                Value::Object(hook)
            })
            .collect();
        out.insert("post_start".into(), json!(hooks));
        notes.push("hooks run as post_start, each waiting for its container's health check first".into());
    }
    let restart = match c.restart {
        RestartPolicy::No => None,
        RestartPolicy::OnFailure => Some("on-failure"),
        RestartPolicy::Always => Some("always"),
        RestartPolicy::UnlessStopped => Some("unless-stopped"),
    };
    if let Some(restart) = restart {
        out.insert("restart".into(), json!(restart));
    }
    let r = &c.resources;
    let mut limits = Map::new();
    if let Some(milli) = r.milli_cpus {
        limits.insert("cpus".into(), json!(format!("{}", f64::from(milli) / 1000.0)));
    }
    if let Some(memory) = r.memory_bytes {
        limits.insert("memory".into(), json!(format!("{memory}b")));
    }
    if let Some(pids) = r.pids {
        limits.insert("pids".into(), json!(pids));
    }
    if !limits.is_empty() {
        out.insert("deploy".into(), json!({"resources": {"limits": limits}}));
    }
    let p = &c.privileges;
    if p.privileged {
        out.insert("privileged".into(), json!(true));
    }
    if !p.cap_add.is_empty() {
        out.insert("cap_add".into(), json!(p.cap_add));
    }
    if p.host_network {
        out.insert("network_mode".into(), json!("host"));
    }
    if p.host_pid {
        out.insert("pid".into(), json!("host"));
    }
    if !p.devices.is_empty() {
        out.insert("devices".into(), json!(p.devices));
    }
    let labels: BTreeMap<&String, &String> = spec.labels.iter().filter(|(k, _)| !k.starts_with(LABEL_PREFIX)).collect();
    if !labels.is_empty() {
        out.insert("labels".into(), json!(labels));
    }
    out.insert("stop_grace_period".into(), json!(format!("{}s", crate::engine::STOP_TIMEOUT_SECS)));
    if !p.host_network {
        let networks: Map<String, Value> = spec
            .networks
            .iter()
            .map(|(name, aliases)| {
                // An external network by its stack name, as declared above.
                let external = state.external_networks.iter().find(|(_, engine)| *engine == name).map(|(stack, _)| stack.as_str());
                (external.unwrap_or_else(|| name.strip_prefix(&prefix).unwrap_or(name)).to_string(), json!({"aliases": aliases}))
            })
            .collect();
        out.insert("networks".into(), Value::Object(networks));
    }
    Ok(out)
}

/// One word for `sh`, whatever it holds.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `./sub/path` for a path inside the project, else the path as it is.
fn relative(project_dir: &Path, path: &Path) -> String {
    match path.strip_prefix(project_dir) {
        Ok(rest) if rest.as_os_str().is_empty() => ".".into(),
        Ok(rest) => format!("./{}", rest.display()),
        Err(_) => path.display().to_string(),
    }
}
