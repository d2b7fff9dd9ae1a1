//! `provision env` and `provision port`: how to reach a running project's
//! services from this machine. Outputs name container addresses (`db:5432`,
//! the engine's DNS); here each becomes the port published on 127.0.0.1.

use std::{collections::HashMap, process::ExitCode};

use super::{
    Prepared,
    args::{EnvArgs, EnvFormat, PortArgs},
    connect, prepare, project_containers,
};
use crate::{
    desired::{DesiredState, output_variable},
    engine::Actual,
};

pub async fn env(args: EnvArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, .. } = prepare(&args.stack, args.stack.locked)?;
    let state = &planned.state;
    for service in &args.services {
        if !state.services.iter().any(|s| &s.name == service) {
            let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
            return Err(miette::miette!(help = format!("its services: {}", names.join(", ")), "the stack has no service `{service}`"));
        }
    }
    let engine = connect(&args.stack.project, Some(&stack)).await?;
    let actual = engine.containers(&state.project).await?;
    if actual.is_empty() {
        return Err(miette::miette!(help = "bring it up first: provision up", "project {} has no containers", state.project));
    }
    let vars = host_env(state, &actual, &args.env_prefix, &args.services);
    print!("{}", format(&vars, args.format));
    Ok(ExitCode::SUCCESS)
}

pub async fn port(args: PortArgs) -> miette::Result<ExitCode> {
    let (project, _, containers) = project_containers(&args.project).await?;
    let target = super::service_container(&project, &containers, &args.service, args.container.as_deref())?;
    let published = target.published.iter().find(|(container, _)| args.port.is_none_or(|p| p == *container));
    match published {
        Some((_, host)) => {
            println!("127.0.0.1:{host}");
            Ok(ExitCode::SUCCESS)
        }
        None => Err(miette::miette!(
            help = "publish it in stack.toml, e.g. publish = { PORT = 0 } for any free port",
            "service `{}` publishes {}",
            args.service,
            args.port.map_or("no port".to_string(), |p| format!("no port {p}"))
        )),
    }
}

/// Every output of `services` (all when empty) as variables, `(NAME,
/// value)`, with addresses as seen from this machine. Notes on stderr
/// what cannot be reached from here.
pub(super) fn host_env(state: &DesiredState, actual: &[Actual], prefix: &str, services: &[String]) -> Vec<(String, String)> {
    let addresses = Addresses::of(state, actual);
    let mut vars = Vec::new();
    for service in state.services.iter().filter(|s| services.is_empty() || services.contains(&s.name)) {
        for output in &service.plan.outputs {
            let value = addresses.seen_from_host(&service.name, &output.name, &output.value);
            if let Some(unpublished) = addresses.unpublished(&value) {
                eprintln!(
                    "note: {}.{} names {unpublished}, which is not published; publish it to reach it from here (publish = {{ PORT = 0 }})",
                    service.name, output.name
                );
            }
            vars.push((output_variable(prefix, &service.name, &output.name), value));
        }
    }
    vars
}

/// The project's DNS names and the ports each publishes.
struct Addresses {
    /// (DNS name, container port) → host port.
    published: HashMap<(String, u16), u16>,
    names: Vec<String>,
}

impl Addresses {
    fn of(state: &DesiredState, actual: &[Actual]) -> Addresses {
        let mut published = HashMap::new();
        let mut names = Vec::new();
        for service in &state.services {
            names.push(service.name.clone());
            let main = service.plan.containers.first().map(|c| c.name.as_str());
            for c in actual.iter().filter(|a| a.label("service") == Some(service.name.as_str())) {
                let container = c.label("container").unwrap_or_default();
                let dns = format!("{}-{container}", service.name);
                for &(port, host) in &c.published {
                    published.insert((dns.clone(), port), host);
                    if Some(container) == main {
                        published.insert((service.name.clone(), port), host);
                    }
                }
                names.push(dns);
            }
        }
        // Longest first, so `db-exporter` is not read as `db`.
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Addresses { published, names }
    }

    /// Output `output` of `service` as seen from the host.
    fn seen_from_host(&self, service: &str, output: &str, value: &str) -> String {
        if output == "host" && self.published.keys().any(|(name, _)| name == value) {
            return "127.0.0.1".into();
        }
        if output == "port"
            && let Some(host) = value.parse::<u16>().ok().and_then(|p| self.published.get(&(service.to_string(), p)))
        {
            return host.to_string();
        }
        let mut value = value.to_string();
        for ((name, port), host) in &self.published {
            value = replace_address(&value, &format!("{name}:{port}"), &format!("127.0.0.1:{host}"));
        }
        value
    }

    /// A `NAME:PORT` of the project still in `value` (not published).
    fn unpublished(&self, value: &str) -> Option<String> {
        self.names.iter().find_map(|name| {
            let at = find_address(value, &format!("{name}:"))?;
            let port: String = value[at + name.len() + 1..].chars().take_while(char::is_ascii_digit).collect();
            (!port.is_empty()).then(|| format!("{name}:{port}"))
        })
    }
}

/// `address` in `value` where it stands alone: after the start, `/` or `@`,
/// and not followed by a digit (`db:5432` is not in `db:54321`).
fn find_address(value: &str, address: &str) -> Option<usize> {
    value.match_indices(address).map(|(i, _)| i).find(|&i| {
        let before = value[..i].chars().next_back();
        let after = value[i + address.len()..].chars().next();
        matches!(before, None | Some('/' | '@')) && (address.ends_with(':') || !after.is_some_and(|c| c.is_ascii_digit()))
    })
}

fn replace_address(value: &str, address: &str, with: &str) -> String {
    let mut value = value.to_string();
    while let Some(i) = find_address(&value, address) {
        value.replace_range(i..i + address.len(), with);
    }
    value
}

fn format(vars: &[(String, String)], format: EnvFormat) -> String {
    let quoted = |v: &str| format!("'{}'", v.replace('\'', "'\\''"));
    match format {
        EnvFormat::Sh => vars.iter().map(|(k, v)| format!("export {k}={}\n", quoted(v))).collect(),
        EnvFormat::Dotenv => vars.iter().map(|(k, v)| format!("{k}={}\n", quoted(v))).collect(),
        EnvFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> = vars.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            format!("{}\n", serde_json::to_string_pretty(&map).expect("JSON"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses() -> Addresses {
        let published = HashMap::from([(("db".to_string(), 5432), 40001), (("db-server".to_string(), 5432), 40001)]);
        Addresses { published, names: vec!["db-exporter".into(), "db-server".into(), "cache".into(), "db".into()] }
    }

    #[test]
    fn container_addresses_become_published_ports() {
        let a = addresses();
        assert_eq!(a.seen_from_host("db", "url", "postgres://app:pw@db:5432/app"), "postgres://app:pw@127.0.0.1:40001/app");
        assert_eq!(a.seen_from_host("db", "host", "db"), "127.0.0.1");
        assert_eq!(a.seen_from_host("db", "port", "5432"), "40001");
        assert_eq!(a.seen_from_host("cache", "port", "5432"), "5432", "another service's port");
        assert_eq!(a.seen_from_host("db", "url", "postgres://db:54321/x"), "postgres://db:54321/x", "another port is another address");
        assert_eq!(a.unpublished("redis://cache:6379/0").as_deref(), Some("cache:6379"));
        assert_eq!(a.unpublished("postgres://app:pw@127.0.0.1:40001/app"), None);
        assert_eq!(output_variable("T_", "my-db", "url"), "T_MY_DB_URL");
        assert_eq!(format(&[("A".into(), "it's".into())], EnvFormat::Sh), "export A='it'\\''s'\n");
    }
}
