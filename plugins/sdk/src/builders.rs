//! Constructors with the defaults a plan usually wants, so a plugin states
//! only what is particular to its service.

use crate::types::*;

/// A server setting as stack.toml writes it (`tuning`, `settings`): text,
/// a number or a flag; `render` spells it as the server reads it.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Setting {
    Text(String),
    Number(i64),
    Decimal(f64),
    Flag(bool),
}

impl Setting {
    /// The value as text, a flag as `on` / `off` (PostgreSQL) or `yes` /
    /// `no` (Redis).
    pub fn render(&self, (on, off): (&str, &str)) -> String {
        match self {
            Setting::Text(text) => text.clone(),
            Setting::Number(n) => n.to_string(),
            Setting::Decimal(n) => n.to_string(),
            Setting::Flag(flag) => if *flag { on } else { off }.to_string(),
        }
    }
}

/// Whether a service may leave a role unfilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The stack does not plan until a service fills it.
    Required,
    /// The plugin plans without it (no binding).
    Optional,
}

/// Plugin description; the config schema is added by the SDK.
pub struct Info {
    info: PluginInfo,
}

impl Info {
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        Info {
            info: PluginInfo {
                name: name.into(),
                version: version.into(),
                summary: summary.into(),
                config_schema: String::new(),
                outputs: Vec::new(),
                uses: Vec::new(),
            },
        }
    }

    /// An output the plugin exports to its users.
    pub fn output(mut self, name: &str, description: &str) -> Self {
        self.info.outputs.push(OutputInfo { name: name.into(), description: description.into(), secret: false });
        self
    }

    /// An output whose value is a credential (masked when printed).
    pub fn secret_output(mut self, name: &str, description: &str) -> Self {
        self.info.outputs.push(OutputInfo { name: name.into(), description: description.into(), secret: true });
        self
    }

    /// A role filled by another service (of one of `plugins`, or any when
    /// empty), waited for as `wait` says.
    pub fn uses(mut self, role: &str, description: &str, plugins: &[&str], wait: WaitFor, need: Need) -> Self {
        self.info.uses.push(RoleInfo {
            name: role.into(),
            description: description.into(),
            plugins: plugins.iter().map(|p| p.to_string()).collect(),
            optional: need == Need::Optional,
            wait,
            collect: false,
            many: false,
            from_config: None,
        });
        self
    }

    /// A role filled by every service named in the config key `key` (a
    /// string, a list, or a table's values), each one binding: a proxy's
    /// routes. Optional: naming none is allowed.
    pub fn uses_named_in(mut self, role: &str, description: &str, key: &str, wait: WaitFor) -> Self {
        self.info.uses.push(RoleInfo {
            name: role.into(),
            description: description.into(),
            plugins: Vec::new(),
            optional: true,
            wait,
            collect: false,
            many: true,
            from_config: Some(key.into()),
        });
        self
    }

    /// A role the host fills with every other service of the stack (those
    /// that do not use this one), each binding carrying its metrics
    /// endpoints; planned after them, started without waiting for them.
    pub fn collects(mut self, role: &str, description: &str) -> Self {
        self.info.uses.push(RoleInfo {
            name: role.into(),
            description: description.into(),
            plugins: Vec::new(),
            optional: true,
            wait: WaitFor::Planned,
            collect: true,
            many: true,
            from_config: None,
        });
        self
    }

    pub(crate) fn into_plugin_info(mut self, config_schema: String) -> PluginInfo {
        self.info.config_schema = config_schema;
        self.info
    }
}

impl Container {
    /// A container running `image` with an init, no restarts and no extras.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Container {
            name: name.into(),
            image: ImageSource::Pull(image.into()),
            command: None,
            entrypoint: None,
            env: Vec::new(),
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
            resources: Resources { milli_cpus: None, memory_bytes: None, pids: None },
            restart: RestartPolicy::No,
            networks: Vec::new(),
            labels: Vec::new(),
            privileges: Privileges { privileged: false, cap_add: Vec::new(), host_network: false, host_pid: false, devices: Vec::new() },
            snapshot: None,
        }
    }

    pub fn command<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.command = Some(args.into_iter().map(Into::into).collect());
        self
    }

    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Expose `container` port, published on the host at `host` when given
    /// (0: any free port).
    pub fn port(mut self, container: u16, host: Option<u16>) -> Self {
        self.ports.push(Port { container, host, protocol: Protocol::Tcp });
        self
    }

    pub fn mount(mut self, source: MountSource, target: impl Into<String>, read_only: bool) -> Self {
        self.mounts.push(Mount { source, target: target.into(), read_only });
        self
    }

    pub fn file(mut self, path: impl Into<String>, contents: impl Into<String>, mode: u32) -> Self {
        self.files.push(File { path: path.into(), contents: contents.into(), mode });
        self
    }

    pub fn health(mut self, check: HealthCheck) -> Self {
        self.health = Some(check.0);
        self
    }

    /// A command run in the container once it is ready.
    pub fn hook<S: Into<String>>(mut self, name: impl Into<String>, command: impl IntoIterator<Item = S>) -> Self {
        self.hooks.push(Hook { name: name.into(), command: command.into_iter().map(Into::into).collect(), user: None, env: Vec::new() });
        self
    }

    /// The data at `path` (a volume or tmpfs mount's target) may be kept as
    /// a snapshot once the container is ready and its hooks ran; `command`
    /// writes a consistent tar of it to stdout. `key` is what, beyond the
    /// container itself, decides the data (see the contract's
    /// `data-snapshot`).
    pub fn snapshot<S: Into<String>>(mut self, path: impl Into<String>, key: impl Into<String>, command: impl IntoIterator<Item = S>) -> Self {
        self.snapshot = Some(DataSnapshot { path: path.into(), key: key.into(), command: command.into_iter().map(Into::into).collect() });
        self
    }
}

/// A health check with timings suited to local development: probed often,
/// generous start period.
pub struct HealthCheck(pub crate::types::HealthCheck);

impl HealthCheck {
    pub fn exec<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        Self::with(Probe::Exec(command.into_iter().map(Into::into).collect()))
    }

    pub fn http(port: u16, path: impl Into<String>) -> Self {
        Self::with(Probe::Http(HttpGet { port, path: path.into() }))
    }

    pub fn tcp(port: u16) -> Self {
        Self::with(Probe::Tcp(port))
    }

    /// Ready when the PostgreSQL server on `port` accepts connections (the
    /// host speaks the protocol, as `pg_isready` does; no credentials).
    pub fn postgres(port: u16) -> Self {
        Self::with(Probe::Postgres(port))
    }

    /// Ready when the Redis server on `port` answers `PING`.
    pub fn redis(port: u16) -> Self {
        Self::with(Probe::Redis(port))
    }

    fn with(probe: Probe) -> Self {
        HealthCheck(crate::types::HealthCheck { probe, interval_ms: 1_000, timeout_ms: 3_000, retries: 30, start_period_ms: 30_000 })
    }
}

// The record is generated by wit-bindgen, which cannot derive Default for
// every type of the contract (variants have no default).
#[allow(clippy::derivable_impls)]
impl Default for ServicePlan {
    fn default() -> Self {
        ServicePlan {
            containers: Vec::new(),
            tasks: Vec::new(),
            volumes: Vec::new(),
            networks: Vec::new(),
            outputs: Vec::new(),
            metrics: Vec::new(),
            watch: Vec::new(),
        }
    }
}

impl ServicePlan {
    pub fn output(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.outputs.push((key.into(), value.into()));
    }

    pub fn volume(&mut self, name: impl Into<String>) {
        self.volumes.push(Volume { name: name.into() });
    }

    /// Declare that `container` serves Prometheus metrics at `port` `path`.
    pub fn metrics(&mut self, container: impl Into<String>, port: u16, path: impl Into<String>) {
        self.metrics.push(MetricsEndpoint { container: container.into(), port, path: path.into() });
    }

    /// Declare what a change under `path` (relative to the folder of
    /// stack.toml; a folder ends in `/`) means for this service, for
    /// `provision watch`; no actions: nothing to do.
    pub fn watch(&mut self, path: impl Into<String>, actions: impl IntoIterator<Item = WatchAction>) {
        self.watch.push(WatchRule { path: path.into(), ignore: Vec::new(), actions: actions.into_iter().collect() });
    }
}

/// `path` inside the project folder `dir` (both relative to stack.toml's
/// folder), as a watch rule names it: `project_path("app", "config/")` is
/// `app/config/`, `project_path(".", "Gemfile")` is `Gemfile`, and
/// `project_path("app", "")` is `app/`.
pub fn project_path(dir: &str, path: &str) -> String {
    let dir = dir.trim_start_matches("./").trim_end_matches('/');
    match (dir, path) {
        ("" | ".", "") => "./".into(),
        ("" | ".", path) => path.into(),
        (dir, "") => format!("{dir}/"),
        (dir, path) => format!("{dir}/{path}"),
    }
}
