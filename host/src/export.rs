//! `provision export`: the plan as a Compose file (the compose spec, no
//! `version` key), for a colleague who has only Docker, or a team leaving.
//! Built from the same engine specs `up` creates, so names, aliases, mounts
//! and env are what `up` would use; what Compose cannot say the same way is
//! approximated and listed in the file's header.
//!
//! - every container is a compose service answering to the same DNS names:
//!   the main one is `SERVICE`, the others `SERVICE-CONTAINER`;
//! - a task is a one-shot service its service's containers wait for with
//!   `service_completed_successfully`;
//! - a hook is a `post_start` command (Compose runs it once the container
//!   starts, not once it is ready);
//! - health checks become the equivalent command run in the container;
//! - files are `configs` with their content inline;
//! - secret outputs' values are `${SERVICE_OUTPUT}` references, their values
//!   in a `.env` only when asked (`--with-secrets`).

use std::{collections::BTreeMap, path::Path};

use serde_json::{Map, Value, json};

use crate::{
    apply::{Role, Start, container_spec},
    desired::{DesiredState, Image, Instance, Probe, RestartPolicy, ServiceState, WaitFor, output_variable},
    engine::{LABEL_PREFIX, Labels, MountSpec},
    reconcile::Names,
};

/// A compose file and the secrets it references.
pub struct Exported {
    pub yaml: String,
    /// `NAME=value` lines for `.env`.
    pub secrets: Vec<(String, String)>,
}

pub fn compose(state: &DesiredState, project_dir: &Path) -> Result<Exported, String> {
    let names = Names { project: &state.project };
    let secrets = secret_refs(state);
    let mut services = Map::new();
    let mut volumes = Map::new();
    let mut configs = Map::new();
    let mut notes = Vec::new();
    let mut networks = Map::new();
    networks.insert("default".into(), json!({}));
    for service in &state.services {
        for network in &service.plan.networks {
            let definition = match state.external_networks.get(&network.name) {
                Some(external) => json!({"external": true, "name": external}),
                None if network.internal => json!({"internal": true}),
                None => json!({}),
            };
            networks.insert(network.name.clone(), definition);
        }
    }
    for service in &state.services {
        let mut waits = depends_on(state, service);
        let instances = service.plan.instances(compose_runs_copies(service));
        for task in instances.iter().filter(|i| i.task) {
            let name = task_name(service, &task.container.name);
            let mut out = container(state, project_dir, &names, service, task, Role::Task, &mut volumes, &mut configs, &mut notes)?;
            out.insert("restart".into(), json!("no"));
            if !waits.is_empty() {
                out.insert("depends_on".into(), Value::Object(waits.clone()));
            }
            insert(&mut services, name.clone(), out)?;
            waits = Map::from_iter([(name, json!({"condition": "service_completed_successfully"}))]);
        }
        for instance in instances.iter().filter(|i| !i.task) {
            let c = &instance.container;
            let mut out = container(state, project_dir, &names, service, instance, Role::Container, &mut volumes, &mut configs, &mut notes)?;
            if !waits.is_empty() {
                out.insert("depends_on".into(), Value::Object(waits.clone()));
            }
            if c.replicas > 1 {
                let deploy = out.entry("deploy").or_insert_with(|| json!({}));
                deploy["replicas"] = json!(c.replicas);
            }
            insert(&mut services, compose_name(service, &c.name), out)?;
        }
    }
    let mut file = Map::new();
    file.insert("services".into(), Value::Object(services));
    file.insert("networks".into(), Value::Object(networks));
    if !volumes.is_empty() {
        file.insert("volumes".into(), Value::Object(volumes));
    }
    if !configs.is_empty() {
        file.insert("configs".into(), Value::Object(configs));
    }
    let mut value = Value::Object(file);
    literal(&mut value, &secrets);
    let yaml = serde_yaml_ng::to_string(&value).map_err(|e| e.to_string())?;
    let mut header = format!(
        "# Written by `provision export` from stack.toml (project {}, profile {}).\n\
         # `docker compose up --wait` brings the same stack up. Secrets are ${{VARIABLES}}: their\n\
         # values are in .env with `provision export --with-secrets`, or set them yourself.\n",
        state.project, state.profile
    );
    notes.sort();
    notes.dedup();
    if !notes.is_empty() {
        header.push_str("# Approximated:\n");
        for note in &notes {
            header.push_str(&format!("#   - {note}\n"));
        }
    }
    Ok(Exported { yaml: header + &yaml, secrets })
}

/// The compose service of a container: the service's name for its main
/// (first) container, so `docker compose exec db …` works as with any
/// compose file; SERVICE-CONTAINER for the others (sidecars, replicas).
fn compose_name(service: &ServiceState, container: &str) -> String {
    match service.plan.containers.first() {
        Some(main) if main.name == container => service.name.clone(),
        _ => format!("{}-{container}", service.name),
    }
}

/// A task's compose service: the service's name when the service is that
/// one task (a migration run once), else SERVICE-TASK.
fn task_name(service: &ServiceState, task: &str) -> String {
    if service.plan.containers.is_empty() && service.plan.tasks.len() == 1 { service.name.clone() } else { format!("{}-{task}", service.name) }
}

/// Whether compose runs the main container's copies itself, as
/// `deploy.replicas`: not when it publishes a fixed host port, which compose
/// would give every copy (then each copy is a service of its own, as
/// provision makes them on one engine).
fn compose_runs_copies(service: &ServiceState) -> bool {
    service.plan.containers.first().is_none_or(|main| !main.ports.iter().any(|p| matches!(p.host, Some(h) if h != 0)))
}

/// A compose service, unless two containers would get one name (service
/// `a-b`'s `c` and service `a`'s `b-c`).
fn insert(services: &mut Map<String, Value>, name: String, service: Map<String, Value>) -> Result<(), String> {
    if services.contains_key(&name) {
        return Err(format!("two containers would both be the compose service `{name}`; rename a service or container"));
    }
    services.insert(name, Value::Object(service));
    Ok(())
}

/// Every secret output's value, by the variable that replaces it (longest
/// value first, so a URL holding a password is replaced whole).
fn secret_refs(state: &DesiredState) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = state
        .services
        .iter()
        .flat_map(|s| {
            s.plan.outputs.iter().filter(|o| o.secret && !o.value.is_empty()).map(move |o| (output_variable("", &s.name, &o.name), o.value.clone()))
        })
        .collect();
    refs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    refs
}

/// What the service waits for, in compose's conditions.
fn depends_on(state: &DesiredState, service: &ServiceState) -> Map<String, Value> {
    let mut waits = Map::new();
    for dep in service.depends_on.iter().filter(|d| d.wait != WaitFor::Planned) {
        let Some(used) = state.services.iter().find(|s| s.name == dep.service) else { continue };
        if dep.wait == WaitFor::Completed || used.plan.containers.is_empty() {
            for task in &used.plan.tasks {
                waits.insert(task_name(used, &task.name), json!({"condition": "service_completed_successfully"}));
            }
            if dep.wait == WaitFor::Completed {
                continue;
            }
        }
        for instance in used.plan.instances(compose_runs_copies(used)).iter().filter(|i| !i.task) {
            let c = &instance.container;
            let healthy = dep.wait == WaitFor::Ready && c.health.is_some();
            let condition = if healthy { "service_healthy" } else { "service_started" };
            waits.insert(compose_name(used, &c.name), json!({"condition": condition}));
        }
    }
    waits
}

#[allow(clippy::too_many_arguments)]
fn container(
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
    if c.read_only {
        out.insert("read_only".into(), json!(true));
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

/// Compose interpolates `$` in every string, and the plan's values are
/// literal: `$` becomes `$$`; then each secret becomes its `${VARIABLE}`.
fn literal(value: &mut Value, secrets: &[(String, String)]) {
    match value {
        Value::String(s) => {
            *s = s.replace('$', "$$");
            for (name, secret) in secrets {
                *s = s.replace(&secret.replace('$', "$$"), &format!("${{{name}}}"));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| literal(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| literal(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::planned;

    const STACK: &str = r#"
[stack]
name = "p"

[services.web]
plugin = "container"
image = "web:1"
ports = ["8080:3000"]
replicas = 2
env = { DATABASE_URL = "${db.url}" }
health = { tcp = 3000 }

[services.db]
plugin = "postgres"
"#;

    fn exported() -> (serde_yaml_ng::Value, Exported) {
        let planned = planned(STACK).unwrap_or_else(|e| panic!("{e:?}"));
        let exported = compose(&planned.state, Path::new("/projects/p")).unwrap();
        (serde_yaml_ng::from_str(&exported.yaml).unwrap(), exported)
    }

    #[test]
    fn secrets_are_variables_in_the_file_and_their_values_only_in_the_list_for_env() {
        let (yaml, exported) = exported();
        assert_eq!(yaml["services"]["web"]["environment"]["DATABASE_URL"].as_str(), Some("${DB_URL}"));
        assert_eq!(yaml["services"]["db"]["environment"]["POSTGRES_PASSWORD"].as_str(), Some("${DB_PASSWORD}"));
        let password = &exported.secrets.iter().find(|(k, _)| k == "DB_PASSWORD").unwrap().1;
        assert!(!exported.yaml.contains(password.as_str()), "no secret value in the compose file");
    }

    #[test]
    fn replicas_are_services_answering_to_one_name_on_loopback_ports_after_what_they_wait_for() {
        let (yaml, _) = exported();
        let services = yaml["services"].as_mapping().unwrap();
        let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(names, ["db", "web", "web-server-2"]);
        assert_eq!(yaml["services"]["web"]["ports"][0].as_str(), Some("127.0.0.1:8080:3000"));
        assert_eq!(yaml["services"]["web-server-2"]["ports"][0].as_str(), Some("127.0.0.1::3000"), "a fixed host port is one copy's");
        for copy in ["web", "web-server-2"] {
            let aliases = &yaml["services"][copy]["networks"]["default"]["aliases"];
            assert!(aliases.as_sequence().unwrap().iter().any(|a| a.as_str() == Some("web")), "{copy} answers to the service's name");
            assert_eq!(yaml["services"][copy]["depends_on"]["db"]["condition"].as_str(), Some("service_healthy"));
        }
    }
}
