//! What comes back from the engine: containers, networks, volumes and
//! images as it lists them, a container's status, how the host reaches
//! published ports, and the pieces of a command run in a container.

use super::{LABEL_PREFIX, Labels};

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

/// What a `Labeled` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Container,
    Network,
    Volume,
}

/// A container of the project as the engine has it: what reconcile
/// compares with the desired state.
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
    /// The image it runs, by id, where the engine says (a rebuilt tag
    /// names another).
    pub image_id: Option<String>,
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
    /// How often the engine has restarted it under its restart policy, when
    /// the engine counts that (a container that keeps exiting stays
    /// "running" between restarts).
    pub restarts: Option<u32>,
    /// The image it runs (its ID), when the engine says: a one-off of it
    /// runs the same, whatever the stack's [images] now say.
    pub image: Option<String>,
    /// Its main process was started with stdin open, on a TTY with `tty`
    /// (what `provision attach` can pass it).
    pub stdin_open: bool,
    pub tty: bool,
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

/// What a command or a main process reads as its stdin (ours, a pipe).
pub type Input = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Where a command's output goes, chunk by chunk as it comes.
pub type OnOutput<'f> = dyn for<'a> FnMut(OutputStream, &'a [u8]) + Send + 'f;

/// One chunk of a command's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}
