//! Host-level service options: keys every service has, whatever its
//! plugin, applied by the host to the plugin's plan (`plan::options`). A
//! plugin never sees them, unless its own config declares a key of the same
//! name (postgres's `user` is the database role): then that key is the
//! plugin's. The README has them as one table.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::desired::{Hook, Mount, MountSource, RestartPolicy, WaitFor};

/// The keys, in the README's order.
pub const KEYS: &[&str] = &[
    "networks",
    "aliases",
    "replicas",
    "restart",
    "publish",
    "after",
    "env",
    "volumes",
    "tmpfs",
    "user",
    "resources",
    "read_only",
    "no_new_privileges",
    "hooks",
    "snapshot",
    "watch",
    "stdin_open",
    "tty",
];

/// The most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 64;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceOptions {
    /// Networks the service's containers join instead of the project's
    /// default one (each declared in `[networks]`, or `default`).
    pub networks: Vec<String>,
    /// More host names the main container (and its copies) answers to on
    /// its networks, beside the service's (compose's `container_name`).
    pub aliases: Vec<String>,
    /// Copies of the main container, all answering to the service's name.
    pub replicas: u32,
    pub restart: Option<RestartPolicy>,
    pub publish: Option<Publish>,
    /// Services to wait for beyond the plugin's roles.
    pub after: Vec<(String, WaitFor)>,
    pub env: BTreeMap<String, String>,
    /// Extra mounts of the main container (binds named here may be written).
    pub mounts: Vec<Mount>,
    pub user: Option<String>,
    pub memory_bytes: Option<u64>,
    pub milli_cpus: Option<u32>,
    pub pids: Option<u32>,
    pub read_only: Option<bool>,
    pub no_new_privileges: Option<bool>,
    /// Commands run in the main container once it is ready.
    pub hooks: Vec<Hook>,
    /// `false`: never keep or use a snapshot of the service's data.
    pub snapshot: Option<bool>,
    /// The user's watch rules (stack/watch.rs).
    pub watch: Vec<crate::desired::WatchRule>,
    /// The main process keeps its stdin open, on a TTY with `tty`, for
    /// `provision attach` (byebug, pry, pdb). Compose's spelling.
    pub stdin_open: bool,
    pub tty: bool,
}

/// `publish`: what becomes of the host ports the plugin asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Publish {
    /// `false`: none; `true`: as the plugin asked.
    All(bool),
    /// Container port → host port (0: any free one), or None: not published.
    Ports(BTreeMap<u16, Option<u16>>),
}

/// An error at `key` (a dotted path inside the service's table).
#[derive(Debug)]
pub struct OptionError {
    pub key: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    aliases: Vec<String>,
    /// A number, or a string holding one (`"${REPLICAS:-3}"`).
    replicas: Option<Scalar>,
    restart: Option<RestartPolicy>,
    publish: Option<RawPublish>,
    after: Option<RawAfter>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    tmpfs: Vec<String>,
    user: Option<Scalar>,
    resources: Option<RawResources>,
    read_only: Option<bool>,
    no_new_privileges: Option<bool>,
    #[serde(default)]
    hooks: BTreeMap<String, Command>,
    snapshot: Option<bool>,
    #[serde(default)]
    watch: Vec<super::watch::RawRule>,
    #[serde(default)]
    stdin_open: bool,
    #[serde(default)]
    tty: bool,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "`publish` is true, false, or a table of container port = host port (0: any free port) or false")]
enum RawPublish {
    All(bool),
    Ports(BTreeMap<String, PortChoice>),
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a host port number (0: any free port), or false for not published")]
enum PortChoice {
    Host(u16),
    Off(bool),
    /// A number in a string (`"${DB_PORT:-5432}"`).
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "`after` is a list of services, or a table of service = \"started\" | \"ready\" | \"completed\"")]
enum RawAfter {
    List(Vec<String>),
    Table(BTreeMap<String, Condition>),
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Condition {
    Started,
    Ready,
    Completed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    /// "512m", "1g", or bytes.
    memory: Option<Scalar>,
    cpus: Option<f64>,
    pids: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a command: a string (run by /bin/sh -c) or a list of arguments")]
enum Command {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
enum Scalar {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::String(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl Command {
    fn argv(self) -> Vec<String> {
        match self {
            Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line],
            Command::Argv(argv) => argv,
        }
    }
}

impl ServiceOptions {
    /// Take the host-level keys out of a service's config, except those the
    /// plugin declares (`declared`), and check them.
    pub fn take(config: &mut serde_json::Value, declared: &dyn Fn(&str) -> bool) -> Result<ServiceOptions, OptionError> {
        let mut taken = serde_json::Map::new();
        if let Some(map) = config.as_object_mut() {
            for key in KEYS.iter().filter(|k| !declared(k)) {
                if let Some(value) = map.remove(*key) {
                    taken.insert(key.to_string(), value);
                }
            }
        }
        let raw: Raw = serde_path_to_error::deserialize(serde_json::Value::Object(taken)).map_err(|e| {
            let key = e.path().to_string();
            OptionError { key, message: e.into_inner().to_string() }
        })?;
        raw.check()
    }
}

impl Raw {
    fn check(self) -> Result<ServiceOptions, OptionError> {
        let error = |key: String, message: String| OptionError { key, message };
        for (i, network) in self.networks.iter().enumerate() {
            if self.networks[..i].contains(network) {
                return Err(error(format!("networks.{i}"), format!("network `{network}` is listed twice")));
            }
        }
        for (i, alias) in self.aliases.iter().enumerate() {
            if !crate::stack::valid_service_name(alias) {
                return Err(error(format!("aliases.{i}"), format!("{alias:?} cannot be a host name: use lower-case letters, digits and `-`")));
            }
        }
        let replicas = match self.replicas.map(Scalar::text) {
            None => 1,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_REPLICAS).contains(n))
                .ok_or_else(|| error("replicas".into(), format!("{text} replicas; a service runs 1 to {MAX_REPLICAS}")))?,
        };
        let publish = match self.publish {
            None => None,
            Some(RawPublish::All(all)) => Some(Publish::All(all)),
            Some(RawPublish::Ports(ports)) => {
                let mut map = BTreeMap::new();
                for (port, choice) in ports {
                    let container = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        error(format!("publish.{port}"), format!("{port:?} is not a container port; write e.g. publish = {{ 5432 = 5433 }}"))
                    })?;
                    let host = match choice {
                        PortChoice::Host(host) => Some(host),
                        PortChoice::Text(text) => Some(
                            text.parse::<u16>()
                                .map_err(|_| error(format!("publish.{port}"), format!("{text:?} is not a port number (0: any free port)")))?,
                        ),
                        PortChoice::Off(false) => None,
                        PortChoice::Off(true) => {
                            return Err(error(format!("publish.{port}"), "a port is published at a number (0: any free port), or false".into()));
                        }
                    };
                    map.insert(container, host);
                }
                Some(Publish::Ports(map))
            }
        };
        let after = match self.after {
            None => Vec::new(),
            Some(RawAfter::List(services)) => services.into_iter().map(|s| (s, WaitFor::Ready)).collect(),
            Some(RawAfter::Table(table)) => table
                .into_iter()
                .map(|(s, c)| {
                    let wait = match c {
                        Condition::Started => WaitFor::Started,
                        Condition::Ready => WaitFor::Ready,
                        Condition::Completed => WaitFor::Completed,
                    };
                    (s, wait)
                })
                .collect(),
        };
        let mut env = BTreeMap::new();
        for (key, value) in self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(error(format!("env.{key}"), format!("{key:?} is not a variable name")));
            }
            env.insert(key, value.text());
        }
        let mut mounts = Vec::new();
        for (i, volume) in self.volumes.iter().enumerate() {
            mounts.push(volume_mount(volume).map_err(|m| error(format!("volumes.{i}"), m))?);
        }
        for (i, target) in self.tmpfs.iter().enumerate() {
            if !target.starts_with('/') {
                return Err(error(format!("tmpfs.{i}"), format!("{target:?} is not an absolute path in the container")));
            }
            mounts.push(Mount { source: MountSource::Tmpfs { size_bytes: None, mode: None }, target: target.clone(), read_only: false });
        }
        let (mut memory_bytes, mut milli_cpus, mut pids) = (None, None, None);
        if let Some(r) = self.resources {
            memory_bytes = r.memory.map(|m| memory(&m.text())).transpose().map_err(|m| error("resources.memory".into(), m))?;
            milli_cpus = r
                .cpus
                .map(|c| if c > 0.0 && c <= 1024.0 { Ok((c * 1000.0).round() as u32) } else { Err(format!("{c} cpus; expected e.g. 0.5 or 2")) })
                .transpose()
                .map_err(|m| error("resources.cpus".into(), m))?;
            pids = r.pids;
        }
        let mut hooks = Vec::new();
        for (name, command) in self.hooks {
            let command = command.argv();
            if command.is_empty() || command[0].is_empty() {
                return Err(error(format!("hooks.{name}"), "an empty command".into()));
            }
            hooks.push(Hook { name, command, user: None, env: BTreeMap::new() });
        }
        Ok(ServiceOptions {
            networks: self.networks,
            aliases: self.aliases,
            replicas,
            restart: self.restart,
            publish,
            after,
            env,
            mounts,
            user: self.user.map(Scalar::text),
            memory_bytes,
            milli_cpus,
            pids,
            read_only: self.read_only,
            no_new_privileges: self.no_new_privileges,
            hooks,
            snapshot: self.snapshot,
            watch: super::watch::rules(self.watch)?,
            stdin_open: self.stdin_open,
            tty: self.tty,
        })
    }
}

/// `SOURCE:TARGET[:ro|:rw]` as Compose writes it: a source starting with
/// `.`, `/` or `~` is a host folder, anything else a named volume of the
/// service; a lone `/TARGET` is an anonymous volume.
fn volume_mount(text: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts[..] {
        [target] => ("", target, None),
        [source, target] => (source, target, None),
        [source, target, mode] => (source, target, Some(mode)),
        _ => return Err(format!("{text:?}: expected SOURCE:TARGET or SOURCE:TARGET:ro")),
    };
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => return Err(format!("{text:?}: mode {other:?} is neither ro nor rw")),
    };
    if !target.starts_with('/') {
        return Err(format!("{text:?}: the target {target:?} is not an absolute path in the container"));
    }
    let source = if source.is_empty() {
        MountSource::Anonymous
    } else if source.starts_with(['.', '/', '~']) {
        MountSource::Bind(source.to_string())
    } else if source.split('/').count() <= 2 && source.split('/').all(volume_name) {
        // `web/uploads`: service web's volume `uploads`, shared.
        MountSource::Volume(source.to_string())
    } else {
        return Err(format!(
            "{text:?}: {source:?} is neither a volume name ([a-z0-9_-]), another service's volume (SERVICE/VOLUME) nor a path (./dir, /dir, ~/dir)"
        ));
    };
    Ok(Mount { source, target: target.to_string(), read_only })
}

/// "512m", "1g", "64k", "1048576" → bytes.
fn volume_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn memory(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len()));
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("{text:?}: expected a size such as \"512m\" or \"1g\"")),
    };
    let bytes = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(scale)).filter(|b| *b >= 6 << 20);
    bytes.ok_or_else(|| format!("{text:?}: expected a size of at least 6m, such as \"512m\" or \"1g\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn take(config: serde_json::Value) -> Result<(ServiceOptions, serde_json::Value), OptionError> {
        let mut config = config;
        let options = ServiceOptions::take(&mut config, &|key| key == "user")?;
        Ok((options, config))
    }

    #[test]
    fn host_keys_are_taken_and_plugin_keys_stay() {
        let (options, rest) = take(json!({
            "version": 16, "user": "app", "replicas": 3, "restart": "always",
            "publish": { "5432": false, "80": 8080 }, "after": { "migrate": "completed" },
            "env": { "PORT": 8000, "DEBUG": true }, "volumes": ["data:/var/lib/x", "./backups:/backups:ro", "/scratch"],
            "tmpfs": ["/tmp"], "resources": { "memory": "256m", "cpus": 0.5, "pids": 100 },
            "hooks": { "backup": "pg_dump > /backups/db.sql" }, "stdin_open": true, "tty": true
        }))
        .unwrap();
        assert_eq!(rest, json!({"version": 16, "user": "app"}), "`user` is the plugin's here");
        assert_eq!(options.replicas, 3);
        assert!(options.stdin_open && options.tty);
        assert_eq!(options.restart, Some(RestartPolicy::Always));
        assert_eq!(options.publish, Some(Publish::Ports(BTreeMap::from([(80, Some(8080)), (5432, None)]))));
        assert_eq!(options.after, [("migrate".to_string(), WaitFor::Completed)]);
        assert_eq!(options.env["PORT"], "8000");
        assert_eq!(options.mounts[0].source, MountSource::Volume("data".into()));
        assert_eq!(options.mounts[1], Mount { source: MountSource::Bind("./backups".into()), target: "/backups".into(), read_only: true });
        assert_eq!(options.mounts[2].source, MountSource::Anonymous);
        assert_eq!((options.memory_bytes, options.milli_cpus, options.pids), (Some(256 << 20), Some(500), Some(100)));
        assert_eq!(options.hooks[0].command, ["/bin/sh", "-c", "pg_dump > /backups/db.sql"]);
    }

    #[test]
    fn errors_name_the_key() {
        let key = |config| take(config).unwrap_err().key;
        assert_eq!(key(json!({"restart": "sometimes"})), "restart");
        assert_eq!(key(json!({"replicas": 0})), "replicas");
        assert_eq!(key(json!({"volumes": ["ok:/x", "no target"]})), "volumes.1");
        assert_eq!(key(json!({"resources": {"memory": "lots"}})), "resources.memory");
        assert_eq!(key(json!({"publish": {"http": 80}})), "publish.http");
        assert_eq!(key(json!({"after": {"db": "healthy"}})), "after");
    }
}
