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

mod service;

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::{
    apply::Role,
    desired::{DesiredState, ServiceState, WaitFor, output_variable},
    reconcile::Names,
};
use service::container;

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
