//! What goes into the engine: a planned container with what apply resolved
//! for it (engine names, labels, networks with aliases, absolute mounts,
//! role). The one translation apply makes (`apply/hop.rs`) ends here.

use super::Labels;
use crate::desired::Container;

/// A container as the engine gets it: the one hop from the plan to the
/// engine. The planned container itself (one instance of it: a numbered
/// copy where the engine does not run copies itself), and only what apply
/// resolved for it — its engine name, the image to run (pulled, built, or
/// the snapshot its data starts from), labels, networks with their DNS
/// aliases, mounts with absolute host paths, what is copied in, its role.
#[derive(Debug, Clone)]
pub struct ContainerSpec<'a> {
    /// Read for everything apply does not resolve: command, entrypoint,
    /// env, working dir, user, ports, health, read-only root, init,
    /// no-new-privileges, resources, restart, privileges, hooks, replicas
    /// (how many the engine runs: more than 1 only where it runs copies).
    pub container: &'a Container,
    pub name: String,
    pub image: String,
    pub labels: Labels,
    /// Networks to join, each with the DNS aliases the container has there.
    pub networks: Vec<(String, Vec<String>)>,
    pub mounts: Vec<MountSpec>,
    /// Host files and folders copied in when it is created, not mounted.
    pub copies: Vec<CopySpec>,
    pub role: Role,
    /// Its stdin open, on a TTY with `tty`: a one-off attached to this
    /// terminal (`provision run SERVICE`; closed when ours ends), or a
    /// service's main process for `provision attach` (`stdin_open`).
    pub stdin: bool,
    pub tty: bool,
}

impl ContainerSpec<'_> {
    /// The env as the engine takes it: `NAME=value`.
    pub fn env(&self) -> Vec<String> {
        self.container.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The host runs commands in it once it is ready (hooks): an engine
    /// that spreads containers over machines keeps it where it can reach it.
    pub fn has_hooks(&self) -> bool {
        !self.container.hooks.is_empty()
    }
}

/// Seconds a container gets to stop before it is killed: with an init as
/// PID 1, services shut down promptly, so `down` takes about a second.
pub const STOP_TIMEOUT_SECS: u32 = 3;

/// What a container is to its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs as long as the project does; answers to the service's name.
    Container,
    /// Runs once, to exit 0, before the service's containers start.
    Task,
    /// A one-off command in the service's image (`provision run SERVICE`):
    /// answers to no name, and `up` leaves it alone.
    Run,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Container => "container",
            Role::Task => "task",
            Role::Run => "run",
        }
    }
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
