//! Any container, as a Compose service or Testcontainers' GenericContainer
//! would run it: an image or a Dockerfile build, its command, ports, health
//! check, one-shot tasks and files, and `host` / `port` / `url` outputs for
//! the services that use it. Environment, volumes, user, read-only root,
//! restart, replicas, networks and hooks are the host-level keys every
//! service has, so this plugin does not repeat them.

use std::collections::BTreeMap;

use provision_sdk::{export, prelude::*};

/// A container from any image or Dockerfile.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Image to run, e.g. "python:3.12-slim". Either this or `build`.
    image: Option<String>,
    /// Build the image from a Dockerfile: a context folder (relative to
    /// stack.toml), or a table with `context`, `dockerfile`, `target`, `args`.
    build: Option<Build>,
    /// Command: a list of arguments, or a string split into words as a
    /// shell would (quotes group; no shell runs). Default: the image's.
    command: Option<Command>,
    /// Entrypoint, in the same forms; `[]` clears the image's (compose's
    /// `entrypoint: []`). Default: the image's.
    entrypoint: Option<Command>,
    /// Ports the container listens on: 8000 (on the project network only),
    /// "8080:8000" (also published on 127.0.0.1:8080), "0:8000" (published
    /// on any free port), "5353/udp". The first is the `port` output.
    #[serde(default)]
    ports: Vec<PortSpec>,
    /// Readiness: `{ http = "/health" }` (on the first port unless `port`),
    /// `{ tcp = 8080 }`, `{ postgres = 5432 }` or `{ redis = 6379 }` (the
    /// host speaks the protocol), or `{ exec = "pg_isready" }`, with
    /// `interval`, `timeout`, `start_period` ("500ms", "2s", "1m") and
    /// `retries`.
    health: Option<Health>,
    /// Working directory inside the container.
    workdir: Option<String>,
    /// One-shot commands run in order before the server starts, each to
    /// exit 0 (migrations); run again only when the service changes.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Command>")]
    tasks: serde_json::Map<String, serde_json::Value>,
    /// Files placed in the container before it starts: path = contents.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Run the command once to completion (exit 0) instead of as a server:
    /// a migration other services wait for with `after = { NAME = "completed" }`.
    #[serde(default)]
    once: bool,
    /// Scheme of the `url` output.
    #[serde(default = "default_scheme")]
    scheme: String,
    /// Powers beyond an ordinary container. Each needs its entry in the
    /// service's `allow` (the host refuses the plan otherwise): privileged
    /// mode (`privileged`),
    #[serde(default)]
    privileged: bool,
    /// added Linux capabilities such as "NET_ADMIN" (`cap-add`),
    #[serde(default)]
    cap_add: Vec<String>,
    /// "host": the host's network namespace (`host-network`),
    network_mode: Option<Namespace>,
    /// "host": the host's process namespace (`host-pid`),
    pid: Option<Namespace>,
    /// host devices such as "/dev/fuse" (`devices`).
    #[serde(default)]
    devices: Vec<String>,
}

/// The only namespace a container can share here: the host's.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Namespace {
    Host,
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Build {
    Context(String),
    Full {
        context: String,
        dockerfile: Option<String>,
        target: Option<String>,
        #[serde(default)]
        args: BTreeMap<String, String>,
    },
}

#[derive(Deserialize, JsonSchema, Clone)]
#[serde(untagged)]
enum Command {
    Words(String),
    Argv(Vec<String>),
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum PortSpec {
    Number(u16),
    Text(String),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Health {
    http: Option<String>,
    tcp: Option<u16>,
    /// A PostgreSQL server on this port accepts connections.
    postgres: Option<u16>,
    /// A Redis server on this port answers PING.
    redis: Option<u16>,
    exec: Option<Command>,
    /// Port of the `http` probe; default: the first of `ports`.
    port: Option<u16>,
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
    retries: Option<u32>,
}

fn default_scheme() -> String {
    "http".into()
}

struct Generic;

impl Plugin for Generic {
    type Config = Config;

    fn info() -> Info {
        Info::new("container", env!("CARGO_PKG_VERSION"), "Any container from an image or a Dockerfile, with ports, health, tasks and files")
            .output("host", "Host name on the project network (every replica answers to it)")
            .output("port", "The first of `ports`")
            .output("url", "SCHEME://HOST:PORT on the project network")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let image = match (&config.image, &config.build) {
            (Some(image), None) => ImageSource::Pull(image.clone()),
            (None, Some(Build::Context(context))) => ImageSource::Build(build(context.clone(), None, None, BTreeMap::new())),
            (None, Some(Build::Full { context, dockerfile, target, args })) => {
                ImageSource::Build(build(context.clone(), dockerfile.clone(), target.clone(), args.clone()))
            }
            (Some(_), Some(_)) => return Err(config_error("build", "give `image` or `build`, not both")),
            (None, None) => return Err(config_error("", "give the service an `image` (e.g. image = \"nginx:1.25\") or a `build` context")),
        };
        let mut base = Container::new("server", "");
        base.image = image;
        base.working_dir = config.workdir.clone();
        base.privileges.privileged = config.privileged;
        base.privileges.cap_add = config.cap_add.clone();
        base.privileges.host_network = config.network_mode == Some(Namespace::Host);
        base.privileges.host_pid = config.pid == Some(Namespace::Host);
        base.privileges.devices = config.devices.clone();
        match &config.entrypoint {
            // Empty, not absent: Docker runs the command with no entrypoint.
            Some(Command::Argv(argv)) if argv.is_empty() => base.entrypoint = Some(Vec::new()),
            Some(entrypoint) => base.entrypoint = Some(words(entrypoint).map_err(|m| config_error("entrypoint", m))?),
            None => {}
        }
        for (path, contents) in &config.files {
            base = base.file(path, contents, 0o644);
        }

        let mut plan = ServicePlan::default();
        // A change in the build context needs a new image (the host keeps
        // `.dockerignore`'s files out of the context, and out of the rule).
        if let ImageSource::Build(spec) = &base.image {
            plan.watch(project_path(&spec.context, ""), [WatchAction::Rebuild]);
        }
        for (name, command) in &config.tasks {
            let key = format!("tasks.{name}");
            if !valid_name(name) {
                return Err(config_error(key, "a task name is lower-case letters, digits and `-`"));
            }
            let command: Command =
                serde_json::from_value(command.clone()).map_err(|_| config_error(&key, "a command is a string or a list of arguments"))?;
            let mut task = base.clone();
            task.name = name.clone();
            task.command = Some(words(&command).map_err(|m| config_error(&key, m))?);
            plan.tasks.push(task);
        }

        let mut server = base;
        if let Some(command) = &config.command {
            server.command = Some(words(command).map_err(|m| config_error("command", m))?);
        }
        if config.once {
            if config.health.is_some() || !config.ports.is_empty() {
                return Err(config_error("once", "a service run once has no `ports` or `health`: it exits"));
            }
            server.name = "run".into();
            plan.tasks.push(server);
            plan.output("host", &request.service);
            return Ok(plan);
        }

        let mut first_port = None;
        for (i, spec) in config.ports.iter().enumerate() {
            let port = port(spec).map_err(|m| config_error(format!("ports.{i}"), m))?;
            first_port.get_or_insert(port.container);
            server.ports.push(port);
        }
        if let Some(health) = &config.health {
            server.health = Some(health_check(health, first_port)?);
        }
        plan.containers.push(server);

        let service = &request.service;
        plan.output("host", service);
        if let Some(port) = first_port {
            if !config.scheme.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '+') || config.scheme.is_empty() {
                return Err(config_error("scheme", "a URL scheme such as http or grpc"));
            }
            plan.output("port", port.to_string());
            plan.output("url", format!("{}://{service}:{port}", config.scheme));
        }
        Ok(plan)
    }
}

fn build(context: String, dockerfile: Option<String>, target: Option<String>, args: BTreeMap<String, String>) -> BuildSpec {
    BuildSpec { context, dockerfile, target, args: args.into_iter().collect() }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 40 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A command as arguments: a list as it is, a string split into words as a
/// shell would split it (single and double quotes group, `\` escapes).
fn words(command: &Command) -> Result<Vec<String>, String> {
    let text = match command {
        Command::Argv(argv) if argv.is_empty() => return Err("an empty command".into()),
        Command::Argv(argv) => return Ok(argv.clone()),
        Command::Words(text) => text,
    };
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in {text:?}"));
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() { Err("an empty command".into()) } else { Ok(words) }
}

/// 8000 | "8080:8000" | "0:8000" | "5353/udp".
fn port(spec: &PortSpec) -> Result<Port, String> {
    let text = match spec {
        PortSpec::Number(0) => return Err("port 0 is not a port".into()),
        PortSpec::Number(n) => return Ok(Port { container: *n, host: None, protocol: Protocol::Tcp }),
        PortSpec::Text(text) => text,
    };
    let (ports, protocol) = match text.split_once('/') {
        None | Some((_, "tcp")) => (text.split('/').next().unwrap_or_default(), Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some((_, other)) => return Err(format!("protocol {other:?} is neither tcp nor udp")),
    };
    let number = |s: &str| s.parse::<u16>().map_err(|_| format!("{text:?}: expected PORT, HOST_PORT:PORT or PORT/udp"));
    let (host, container) = match ports.split_once(':') {
        Some((host, container)) => (Some(number(host)?), number(container)?),
        None => (None, number(ports)?),
    };
    if container == 0 {
        return Err(format!("{text:?}: the container port is 0"));
    }
    Ok(Port { container, host, protocol })
}

fn health_check(health: &Health, first_port: Option<u16>) -> Result<provision_sdk::types::HealthCheck, PlanError> {
    let one_probe =
        || config_error("health", "give exactly one probe: http = \"/path\", tcp = PORT, postgres = PORT, redis = PORT or exec = \"command\"");
    let given = [health.http.is_some(), health.tcp.is_some(), health.postgres.is_some(), health.redis.is_some(), health.exec.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(one_probe());
    }
    let probe = if let Some(path) = &health.http {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(config_error("health.http", "a URL path such as \"/health\""));
        }
        let port = health.port.or(first_port).ok_or_else(|| config_error("health.port", "an http probe needs a `port` (or `ports`)"))?;
        HealthCheck::http(port, path)
    } else if let Some(port) = health.tcp {
        HealthCheck::tcp(port)
    } else if let Some(port) = health.postgres {
        HealthCheck::postgres(port)
    } else if let Some(port) = health.redis {
        HealthCheck::redis(port)
    } else {
        let argv = match health.exec.as_ref().ok_or_else(one_probe)? {
            // As Docker's CMD-SHELL: the string runs in a shell.
            Command::Words(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
            argv => words(argv).map_err(|m| config_error("health.exec", m))?,
        };
        HealthCheck::exec(argv)
    };
    let mut check = probe.0;
    for (key, value, field) in [
        ("interval", &health.interval, &mut check.interval_ms),
        ("timeout", &health.timeout, &mut check.timeout_ms),
        ("start_period", &health.start_period, &mut check.start_period_ms),
    ] {
        if let Some(text) = value {
            *field = millis(text).map_err(|m| config_error(format!("health.{key}"), m))?;
        }
    }
    if let Some(retries) = health.retries {
        check.retries = retries;
    }
    Ok(check)
}

/// "500ms", "2s", "1m", "1m30s" → milliseconds.
fn millis(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?}: expected a duration such as \"500ms\", \"2s\" or \"1m\"");
    let (mut total, mut rest) = (0u64, text.trim());
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    u32::try_from(total).map_err(|_| bad())
}

export!(Generic);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell() {
        let w = |s: &str| words(&Command::Words(s.into()));
        assert_eq!(w("gunicorn -b '0.0.0.0:8000' app:app").unwrap(), ["gunicorn", "-b", "0.0.0.0:8000", "app:app"]);
        assert_eq!(w(r#"echo "a b" c\ d ''"#).unwrap(), ["echo", "a b", "c d", ""]);
        assert!(w("echo 'open").is_err());
    }

    #[test]
    fn ports_and_durations() {
        let p = port(&PortSpec::Text("8080:80".into())).unwrap();
        assert_eq!((p.container, p.host), (80, Some(8080)));
        assert!(port(&PortSpec::Text("http".into())).is_err());
        assert_eq!(millis("1m30s").unwrap(), 90_000);
        assert_eq!(millis("500ms").unwrap(), 500);
        assert!(millis("soon").is_err());
    }

    #[test]
    fn a_health_check_is_exactly_one_probe() {
        use provision_sdk::types::Probe;
        let health = |json: &str| health_check(&serde_json::from_str::<Health>(json).unwrap(), Some(8000)).map(|h| h.probe);
        assert!(matches!(health(r#"{"postgres": 5432}"#), Ok(Probe::Postgres(5432))));
        assert!(matches!(health(r#"{"redis": 6379}"#), Ok(Probe::Redis(6379))));
        assert!(matches!(health(r#"{"http": "/up"}"#), Ok(Probe::Http(_))));
        assert!(health(r#"{"postgres": 5432, "tcp": 5432}"#).is_err());
        assert!(health(r#"{"interval": "1s"}"#).is_err());
    }
}
