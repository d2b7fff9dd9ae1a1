//! The desired state: what the plugins asked for, in the host's own types.
//! Everything after planning (diff, apply, `plan --json`) reads these, never
//! the per-contract-version bindings. Must not do I/O: these are plain data
//! (and the spec hash that says when a container must be recreated).

mod instances;
mod plugin;
mod select;
mod watch;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use instances::Instance;
pub use plugin::*;
pub use watch::{WatchAction, WatchRule};

/// A whole stack, planned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesiredState {
    pub project: String,
    pub profile: String,
    pub plugins: Vec<PluginRef>,
    /// In start order: every service comes after the services it uses.
    pub services: Vec<ServiceState>,
    /// Image references the plugins asked for → what runs instead ([images]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub substitutes: BTreeMap<String, String>,
    /// What built images are tagged under (`provision-build/SCOPE:HASH`):
    /// the project, or for `run` the stack, so that each fresh project of
    /// a stack reuses the build before it (the tag's hash is of its inputs).
    #[serde(skip)]
    pub build_scope: String,
    /// Every host path the plan names (binds, build contexts), as written →
    /// as `plan` resolved and checked it. What is handed to the engine or
    /// read later must still resolve there (`host_path::pinned`).
    #[serde(skip)]
    pub host_paths: HostPaths,
    /// `[networks.NAME] external = true`: NAME → the network's engine name.
    /// Joined, never created or removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_networks: BTreeMap<String, String>,
}

impl DesiredState {
    /// The engine's name of the stack's network `name`: the project's own
    /// (PROJECT_NAME), or the name of one made outside the stack.
    pub fn network_name(&self, name: &str) -> String {
        match self.external_networks.get(name) {
            Some(external) => external.clone(),
            None => crate::reconcile::Names { project: &self.project }.network(name),
        }
    }
}

/// Host paths as written (relative to the project folder) → resolved.
pub type HostPaths = BTreeMap<String, std::path::PathBuf>;

/// Which plugin, exactly, planned something.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub contract: String,
    /// `builtin` or the path of the component.
    pub source: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    /// Plugin name; details in `DesiredState::plugins`.
    pub plugin: String,
    pub depends_on: Vec<Dependency>,
    pub plan: ServicePlan,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dependency {
    pub role: String,
    pub service: String,
    pub wait: WaitFor,
    /// Whether the used service's secret outputs travel on this binding:
    /// only when the user named it in `uses`, or a built-in plugin inferred
    /// it; never for `collect` roles (see SECURITY.md).
    #[serde(default)]
    pub secrets: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WaitFor {
    Started,
    Ready,
    /// Its one-shot tasks have exited 0 (a migration); the service is up.
    Completed,
    /// Planned after it, started independently (monitoring its targets).
    Planned,
}

/// What one plugin call returned. Field meanings are documented in the
/// contract (the current one: wit/contracts.toml).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServicePlan {
    pub containers: Vec<Container>,
    pub tasks: Vec<Container>,
    pub volumes: Vec<String>,
    pub networks: Vec<Network>,
    pub outputs: Vec<Output>,
    pub metrics: Vec<MetricsEndpoint>,
    /// What `provision watch` does on a change (the plugin's rules, then
    /// the user's `watch` in stack.toml).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// An output as an environment variable (`provision env`, `run`,
/// `export`): `DB_URL` from service `db`, output `url`, after `prefix`;
/// upper case, anything but letters and digits as `_`.
pub fn output_variable(prefix: &str, service: &str, output: &str) -> String {
    let name = format!("{service}_{output}").to_ascii_uppercase();
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{prefix}{name}")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Container {
    pub name: String,
    pub image: Image,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<Mount>,
    pub files: Vec<File>,
    pub health: Option<HealthCheck>,
    pub hooks: Vec<Hook>,
    pub user: Option<String>,
    pub read_only: bool,
    pub init: bool,
    pub no_new_privileges: bool,
    pub resources: Resources,
    pub restart: RestartPolicy,
    pub networks: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub privileges: Privileges,
    /// How many of it run (the service's `replicas`, main container only):
    /// a count, made into containers at the hop to the engine
    /// (`ServicePlan::instances`). Absent from the hash's JSON when 1, so
    /// plans made before replicas existed hash the same.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub replicas: u32,
    /// Its data may be kept as a snapshot (contract 0.4.0); absent from the
    /// hash's JSON when None, as `replicas` when 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DataSnapshot>,
    /// More host names it answers to on its networks, beside the
    /// service's (the service's `aliases`, main container only; compose's
    /// `container_name`). Absent from the hash's JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its main process keeps stdin open, on a TTY with `tty`, for
    /// `provision attach` (the service's `stdin_open` and `tty`). Absent
    /// from the hash's JSON when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a container's initialised data lives and how to copy it (see the
/// contract's `data-snapshot`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataSnapshot {
    pub path: String,
    pub key: String,
    pub command: Vec<String>,
}

impl Container {
    /// A container running `image` with an init and nothing else, for
    /// building plans by hand (the SDK's `Container::new` for the host).
    pub fn new(name: impl Into<String>, image: Image) -> Self {
        Container {
            name: name.into(),
            image,
            command: None,
            entrypoint: None,
            env: BTreeMap::new(),
            working_dir: None,
            ports: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            health: None,
            hooks: Vec::new(),
            user: None,
            read_only: false,
            init: true,
            no_new_privileges: false,
            resources: Resources::default(),
            restart: RestartPolicy::No,
            networks: Vec::new(),
            labels: BTreeMap::new(),
            privileges: Privileges::default(),
            replicas: 1,
            snapshot: None,
            aliases: Vec::new(),
            stdin_open: false,
            tty: false,
        }
    }

    /// Hash of everything that defines the container: when it changes, the
    /// container must be recreated. Canonical JSON (fields in declaration
    /// order, maps sorted) makes it stable across runs and hosts.
    pub fn spec_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a container serializes");
        let digest = Sha256::digest(json);
        hex::encode(&digest[..8])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Image {
    Pull(String),
    Build(BuildSpec),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildSpec {
    pub context: String,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    /// sha256 of the build's settings and the context's files (after
    /// .dockerignore), filled in by the host: part of the spec hash, so a
    /// changed input rebuilds the image and recreates its containers.
    #[serde(default)]
    pub input_hash: String,
    /// Base images of `FROM` lines → what the build uses instead ([images]),
    /// applied to the Dockerfile as it is sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub from_substitutes: BTreeMap<String, String>,
}

impl BuildSpec {
    /// The tag a built image gets: the project's, versioned by its inputs, so
    /// services built from the same context (an app and its worker) share
    /// one build.
    pub fn tag(&self, project: &str) -> String {
        format!("provision-build/{project}:{}", &self.input_hash[..16.min(self.input_hash.len())])
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Port {
    pub container: u16,
    /// Published on 127.0.0.1 at this port (0: any free one); None: not published.
    pub host: Option<u16>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum MountSource {
    /// `NAME` (this service's) or `SERVICE/NAME`.
    Volume(String),
    /// As written by the plugin, relative to the stack's folder.
    Bind(String),
    /// A read-only bind whose host path lies inside a folder a container
    /// of the project can write: its contents are copied into the
    /// container when it is created instead (a container could otherwise
    /// swap a folder on the way for a link before the engine mounts it).
    Copy(String),
    Tmpfs {
        size_bytes: Option<u64>,
        mode: Option<u32>,
    },
    Anonymous,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct File {
    pub path: String,
    pub contents: String,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub retries: u32,
    pub start_period_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    Exec(Vec<String>),
    Http {
        port: u16,
        path: String,
    },
    Tcp(u16),
    /// A PostgreSQL startup exchange (contract 0.3.0).
    Postgres(u16),
    /// Redis `PING` (contract 0.3.0).
    Redis(u16),
}

impl Probe {
    /// The same question asked from inside the container, by the tools its
    /// image most likely has, where the host cannot reach its port.
    pub fn in_container(&self) -> Vec<String> {
        let shell = |script: String| vec!["sh".to_string(), "-c".to_string(), script];
        match self {
            Probe::Postgres(port) => vec!["pg_isready".into(), "-q".into(), "-h".into(), "127.0.0.1".into(), "-p".into(), port.to_string()],
            Probe::Redis(port) => shell(format!("test \"$(redis-cli -p {port} ping)\" = PONG")),
            Probe::Tcp(port) => shell(format!("nc -z 127.0.0.1 {port} 2>/dev/null || bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'")),
            Probe::Http { port, path } => {
                // The path (a plugin's) is an argument, never part of the script.
                let get = format!(
                    "wget -q -O /dev/null \"http://127.0.0.1:{port}$1\" 2>/dev/null || curl -fs -o /dev/null \"http://127.0.0.1:{port}$1\" 2>/dev/null || \
                     bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && printf \"GET %s HTTP/1.0\\r\\n\\r\\n\" \"$1\" >&3 && head -1 <&3 | grep -q \" [23][0-9][0-9] \"' bash \"$1\""
                );
                let mut command = shell(get);
                command.extend(["sh".to_string(), path.clone()]);
                command
            }
            Probe::Exec(command) => command.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hook {
    pub name: String,
    pub command: Vec<String>,
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
    UnlessStopped,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    pub milli_cpus: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Privileges {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub host_network: bool,
    pub host_pid: bool,
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub name: String,
    pub internal: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsEndpoint {
    pub container: String,
    pub port: u16,
    pub path: String,
}
