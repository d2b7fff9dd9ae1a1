//! The engine boundary. Owns: the `Engine` trait, the only way any command
//! or `apply` reaches a container engine, and the engine-side types
//! (`ContainerSpec`, `Actual`, `Status`). Must not know about plugins,
//! stacks or plans: it speaks in resolved names and absolute paths.
//!
//! A backend is one module here (`docker`, `swarm`) plus a variant of
//! [`EngineKind`]; `connect` is the one place that chooses.

mod docker;
mod swarm;

use std::collections::HashMap;

use futures_util::stream::BoxStream;

use crate::desired::{BuildSpec, File, HealthCheck, Port, Privileges, Resources, RestartPolicy};

pub use docker::Docker;
pub use swarm::Swarm;

/// Every label the project sets starts with this.
pub const LABEL_PREFIX: &str = "dev.provision.";

pub type Labels = HashMap<String, String>;

/// Which backend runs the stack (`--engine`, `PROVISION_ENGINE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EngineKind {
    /// One Docker engine (or Podman's Docker-compatible socket), found
    /// through DOCKER_HOST or the default socket.
    #[default]
    Docker,
    /// A Docker Swarm cluster, through one of its managers (DOCKER_HOST or
    /// the default socket): every container a service, spread over the nodes.
    Swarm,
}

impl EngineKind {
    /// The engine runs a service's copies itself, as one object with a
    /// count (Swarm's replicas), rather than as containers of their own.
    pub fn runs_replicas(self) -> bool {
        self == EngineKind::Swarm
    }
}

/// How a backend is set up beyond its kind (`[engine.swarm]` in stack.toml).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSettings {
    /// The registry every Swarm node pulls the stack's images from
    /// (`host:port`, or `host:port/path`).
    pub swarm_registry: Option<String>,
}

/// Connect to the engine of that kind.
pub async fn connect(kind: EngineKind, settings: &EngineSettings) -> Result<Box<dyn Engine>> {
    match kind {
        EngineKind::Docker => Ok(Box::new(Docker::connect().await?)),
        EngineKind::Swarm => Ok(Box::new(Swarm::connect(settings.swarm_registry.clone()).await?)),
    }
}

/// A container in engine terms: names resolved, paths absolute.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<MountSpec>,
    /// Host files and folders copied in when it is created, not mounted.
    pub copies: Vec<CopySpec>,
    pub health: Option<HealthCheck>,
    pub read_only: bool,
    pub init: bool,
    pub no_new_privileges: bool,
    pub resources: Resources,
    pub restart: RestartPolicy,
    pub privileges: Privileges,
    pub labels: Labels,
    /// Networks to join, each with the DNS aliases the container has there.
    pub networks: Vec<(String, Vec<String>)>,
    /// Seconds the engine waits after SIGTERM before SIGKILL.
    pub stop_timeout: i64,
    /// A one-off attached to this terminal (`provision run SERVICE`): its
    /// stdin open (and closed when ours ends), on a TTY when asked.
    pub stdin: bool,
    pub tty: bool,
    /// Copies of it the engine runs (1 unless it runs replicas itself).
    pub replicas: u32,
    /// Runs once, to exit 0 (a task), rather than for as long as the project.
    pub task: bool,
    /// The host runs commands in it once it is ready (hooks): an engine that
    /// spreads containers over machines keeps it where it can reach it.
    pub hooks: bool,
}

#[derive(Debug, Clone)]
pub enum MountSpec {
    Volume { name: String, target: String, read_only: bool },
    Bind { source: String, target: String, read_only: bool },
    Tmpfs { target: String, size_bytes: Option<u64>, mode: Option<u32> },
    Anonymous { target: String },
}

/// A host file or folder copied into a container at `target` when it is
/// created (a bind inside a folder a container can write: `host_path`).
#[derive(Debug, Clone)]
pub struct CopySpec {
    /// Absolute, links resolved: read with no link followed.
    pub source: std::path::PathBuf,
    pub target: String,
}

impl CopySpec {
    /// The tar to unpack at `/` of the container: `target` and what is
    /// below it, the folders on the way made as they are in the image.
    pub fn archive(&self) -> std::result::Result<Vec<u8>, String> {
        use crate::plan::host_tree::{Filter, Limits, Tree};
        let tree = Tree::open(&self.source, &Filter::ALL, Limits::COPY)?;
        let mut archive = tar::Builder::new(Vec::new());
        tree.append_to(&mut archive, self.target.trim_start_matches('/'), true, None)?;
        archive.into_inner().map_err(|e| e.to_string())
    }
}

/// A network or volume found under the name asked for.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub labels: Labels,
    /// Networks only.
    pub internal: bool,
}

/// An image as listed by the engine.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub labels: Labels,
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
}

/// Something on the engine that carries a given label, of any kind.
#[derive(Debug, Clone)]
pub struct Labeled {
    pub kind: Kind,
    /// The id (containers, networks) or name (volumes) to remove it by.
    pub id: String,
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Container,
    Network,
    Volume,
}

#[derive(Debug, Clone)]
pub struct Actual {
    pub id: String,
    pub name: String,
    pub labels: Labels,
    pub running: bool,
    /// What it publishes: (container port, host port on 127.0.0.1).
    pub published: Vec<(u16, u16)>,
    /// It has a writable bind mount: what it writes there outlives it.
    pub writes_host: bool,
}

impl Actual {
    pub fn host_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.published.iter().map(|(_, host)| *host)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(&format!("{LABEL_PREFIX}{key}")).map(String::as_str)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub running: bool,
    pub exit_code: Option<i64>,
    /// Address on the project network, for probes from the host.
    pub ip: Option<String>,
    /// The engine's own healthcheck status (`starting`, `healthy`,
    /// `unhealthy`), when the container has a healthcheck.
    pub health: Option<String>,
    /// When the container last started (so a restart can be told apart).
    pub started_at: Option<String>,
    /// What it publishes: (container port, host port on 127.0.0.1).
    pub published: Vec<(u16, u16)>,
    /// Why the engine has not got it running, when it says (a Swarm task's
    /// error: "no suitable node", an image a node cannot pull).
    pub problem: Option<String>,
    /// Replicas running of those wanted, when the engine runs several.
    pub replicas: Option<(u32, u32)>,
}

/// How the host reaches a container's ports to probe its readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reach {
    /// Straight to its address on the engine's bridge (a local engine on
    /// Linux: no process started in the container).
    Bridge,
    /// Through the ports it publishes on 127.0.0.1 (Docker Desktop,
    /// rootless Docker: the bridge is in a VM or namespace, published
    /// ports are forwarded); a port it does not publish is probed by exec.
    Published,
    /// From inside it, by exec (`pg_isready`, `redis-cli`, `nc`, `wget`):
    /// an engine on another machine.
    Exec,
    /// Not at all: the engine runs the checks in every replica, wherever it
    /// is, and says when they pass (Swarm).
    Engine,
}

/// A command to run inside a container.
#[derive(Debug, Clone, Default)]
pub struct ExecCommand<'a> {
    pub command: &'a [String],
    pub user: Option<&'a str>,
    /// `KEY=value` entries.
    pub env: &'a [String],
}

/// One chunk of a command's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EngineError {
    #[error("no container engine answers at {endpoint}")]
    #[diagnostic(help("start Docker (e.g. `sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at a running engine"))]
    Unreachable {
        endpoint: String,
        #[source]
        source: BoxError,
    },
    #[error("image {image} is not on the engine and could not be pulled")]
    #[diagnostic(help("if no registry is reachable, map it to a local image in [images] or with --images"))]
    Image {
        image: String,
        #[source]
        source: BoxError,
    },
    #[error("building {tag} failed: {}", bounded(message))]
    Build { tag: String, message: String },
    #[error("this engine is not a Swarm manager (its swarm state: {state})")]
    #[diagnostic(help(
        "point DOCKER_HOST at a manager of the cluster, make this engine one with `docker swarm init` (or `scripts/swarm up` for a local three-node swarm), or leave out --engine swarm"
    ))]
    NotSwarmManager { state: String },
    #[error("pushing image {image} to {registry} failed: {}", bounded(message))]
    #[diagnostic(help(
        "the swarm's nodes pull the stack's images from `[engine.swarm] registry`; check that it runs and that this engine may push to it"
    ))]
    Push { image: String, registry: String, message: String },
    #[error("{what}, which {engine} cannot do")]
    #[diagnostic(help("run this stack on one Docker engine (leave out --engine), or drop that option"))]
    Unsupported { what: String, engine: &'static str },
    #[error(
        "network `{name}` was not removed: the engine still counts an endpoint on it, though no container is attached (a Docker bug, moby/moby#42119); everything else was removed"
    )]
    #[diagnostic(help(
        "restart the engine (e.g. `sudo systemctl restart docker`) and the network can be removed; until then `up` of this project uses it as it is"
    ))]
    StaleNetwork { name: String },
    #[error("copying into {target} failed: {message}")]
    #[diagnostic(help("the host copies a bind whose folder lies inside one a container can write; check that it is there and readable"))]
    Copy { target: String, message: String },
    #[error("lost the connection to the container engine ({0})")]
    #[diagnostic(help(
        "what was done so far is recorded; once the engine answers again, run `provision up` to finish (or `provision down` to remove it)"
    ))]
    Lost(BoxError),
    /// What the engine answered (its message says it all), cut to
    /// `TAIL_BYTES`: it can echo a command's whole output.
    #[error("{}", bounded(&.0.to_string()))]
    Api(BoxError),
}

/// Text from plugins or containers made safe for a terminal: control
/// characters (escape sequences that clear the screen or write the
/// clipboard) shown as `\u{1b}`, newlines and tabs kept.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `TAIL_BYTES` of `text`, on a character boundary.
pub fn bounded(text: &str) -> String {
    if text.len() <= TAIL_BYTES {
        return text.to_string();
    }
    let end = (0..=TAIL_BYTES).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… [{} more bytes cut]", &text[..end], text.len() - end)
}

impl EngineError {
    pub fn api(e: impl Into<BoxError>) -> Self {
        EngineError::Api(e.into())
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// How much of a command's output or a log the host keeps: the end of it.
pub const TAIL_BYTES: usize = 8 << 10;

/// The last `TAIL_BYTES` of a stream of bytes.
#[derive(Default)]
pub struct Tail {
    bytes: std::collections::VecDeque<u8>,
    total: usize,
}

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        let chunk = &chunk[chunk.len().saturating_sub(TAIL_BYTES)..];
        let over = (self.bytes.len() + chunk.len()).saturating_sub(TAIL_BYTES);
        self.bytes.drain(..over);
        self.bytes.extend(chunk);
    }

    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes.iter().copied().collect::<Vec<u8>>()).into_owned();
        if self.total > TAIL_BYTES { format!("[{} earlier bytes cut] {text}", self.total - self.bytes.len()) } else { text }
    }
}

/// What `apply` and the CLI need from an engine. Everything is keyed by the
/// engine's own ids, except project-wide listings, which go by the
/// `dev.provision.project` label.
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    // What the project has.
    async fn containers(&self, project: &str) -> Result<Vec<Actual>>;
    async fn status(&self, id: &str) -> Result<Status>;
    /// The address its published ports listen on.
    fn publishes_on(&self) -> &'static str {
        "127.0.0.1"
    }
    /// How readiness probes reach containers on this engine.
    async fn reach(&self) -> Reach {
        Reach::Bridge
    }

    // Networks and volumes: ensured by name (returning what was there
    // already, for the caller to check whose it is), removed by project and,
    // when `owner` is given, only those labeled with that project folder.
    async fn ensure_network(&self, name: &str, internal: bool, labels: Labels) -> Result<Option<Existing>>;
    async fn ensure_volume(&self, name: &str, labels: Labels) -> Result<Option<Existing>>;
    /// Returns the names removed.
    async fn remove_networks(&self, project: &str, owner: Option<&str>) -> Result<Vec<String>>;
    async fn remove_volumes(&self, project: &str, owner: Option<&str>) -> Result<Vec<String>>;

    // Images.
    async fn ensure_image(&self, image: &str) -> Result<()>;
    /// The digest an image reference resolves to on the engine (its
    /// registry digest when it was pulled, else its image id).
    async fn image_digest(&self, image: &str) -> Result<Option<String>>;
    /// Build `tag` from the context tar in the file `context` (streamed: it
    /// can be large), labelled, reporting each output line.
    async fn build_image(
        &self,
        tag: &str,
        spec: &BuildSpec,
        context: &std::path::Path,
        labels: &Labels,
        progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()>;
    /// The image id a reference resolves to on the engine, if it is there.
    async fn image_id(&self, image: &str) -> Result<Option<String>>;
    /// Images carrying `label` (`key` or `key=value`).
    async fn images(&self, _label: &str) -> Result<Vec<ImageInfo>> {
        Ok(Vec::new())
    }
    async fn remove_image(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    // A container's life.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;
    /// Replace container `old` by one made from `spec` (not started):
    /// removed, then created, unless the engine can change it in place.
    async fn replace(&self, old: &str, spec: &ContainerSpec) -> Result<String> {
        self.remove(old).await?;
        self.create(spec).await
    }
    /// Whether a container can join networks after it was created and
    /// leave them (`join_networks`, `leave_network`): snapshots need it.
    fn joins_networks_later(&self) -> bool {
        false
    }
    /// Join networks, each with the DNS aliases it has there.
    async fn join_networks(&self, _id: &str, _networks: &[(String, Vec<String>)]) -> Result<()> {
        Err(EngineError::Unsupported { what: "joining a network after creation".into(), engine: "this engine" })
    }
    /// Leave a network, and remove it if no other container is on it.
    async fn leave_network(&self, _id: &str, _network: &str) -> Result<()> {
        Err(EngineError::Unsupported { what: "leaving a network".into(), engine: "this engine" })
    }
    /// Place files in a created container (before it starts).
    async fn put_files(&self, id: &str, files: &[File]) -> Result<()>;
    /// Unpack a tar at `/` of a created container (before it starts).
    async fn put_archive(&self, _id: &str, _archive: Vec<u8>) -> Result<()> {
        Err(EngineError::Unsupported { what: "a bind handed over by copy (a folder inside one a container writes)".into(), engine: "this engine" })
    }
    async fn start(&self, id: &str) -> Result<()>;
    /// Wait until the container is not running; returns its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64>;
    /// Remove at once (killing it if it runs), with its anonymous volumes.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Stop (SIGTERM, then SIGKILL after `grace_secs`), then remove.
    async fn stop_and_remove(&self, id: &str, grace_secs: u32) -> Result<()>;

    // Inside a container.
    /// Run a command, handing each chunk of its output to `on_output`;
    /// returns its exit code.
    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send)) -> Result<i64>;
    /// Run a command attached to `stdin` (closed when it ends) and, with
    /// `tty` (columns, rows), on a terminal of that size, whose output then
    /// comes as one stream. Returns its exit code. For `provision exec`.
    async fn exec_attached(
        &self,
        _id: &str,
        _command: ExecCommand<'_>,
        _stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        _tty: Option<(u16, u16)>,
        _on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send),
    ) -> Result<i64> {
        Err(EngineError::Api("this engine cannot attach a command's input".into()))
    }
    /// Start a created container attached to `stdin` (when it was created
    /// with stdin open) and, with `tty`, resized to it; returns its exit code
    /// when it ends. For one-offs (`provision run SERVICE`).
    async fn start_attached(
        &self,
        _id: &str,
        _stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        _tty: Option<(u16, u16)>,
        _on_output: &mut (dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send),
    ) -> Result<i64> {
        Err(EngineError::Api("this engine cannot attach to a container".into()))
    }
    /// Every container, network and volume carrying `label` (any value).
    async fn labeled(&self, _label: &str) -> Result<Vec<Labeled>> {
        Err(EngineError::Api("this engine cannot list by label".into()))
    }
    /// Remove one thing `labeled` found (a container at once, with its
    /// anonymous volumes). Gone already is not an error.
    async fn remove_labeled(&self, _item: &Labeled) -> Result<()> {
        Err(EngineError::Api("this engine cannot remove by label".into()))
    }
    /// A container's log (stdout and stderr) as text chunks.
    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<String>>;

    /// Run a command; returns its exit code and the last `TAIL_BYTES` of its
    /// combined output (a probe printing without end must not fill memory).
    async fn exec(&self, id: &str, command: ExecCommand<'_>) -> Result<(i64, String)> {
        let mut output = Tail::default();
        let code = self.exec_with(id, command, &mut |_, chunk| output.push(chunk)).await?;
        Ok((code, output.text()))
    }

    /// The last `lines` lines of a container's log, at most `TAIL_BYTES`.
    async fn log_tail(&self, id: &str, lines: usize) -> Result<String> {
        use futures_util::StreamExt;
        let mut output = Tail::default();
        let mut chunks = self.logs(id, false, Some(lines));
        while let Some(chunk) = chunks.next().await {
            output.push(chunk?.as_bytes());
        }
        Ok(output.text())
    }
}
