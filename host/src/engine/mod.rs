//! The engine boundary. Owns: the `Engine` trait, the only way any command
//! or `apply` reaches a container engine, and the engine-side types
//! (`ContainerSpec`, `Actual`, `Status`). Must not know about plugins or
//! stacks, nor decide anything about a plan: it gets the planned container
//! with what apply resolved (names, absolute paths), and speaks the
//! engine's API.
//!
//! A backend is one module here (`docker`, `swarm`) plus a variant of
//! [`EngineKind`]; `connect` is the one place that chooses.

mod actual;
mod docker;
mod error;
mod spec;
mod swarm;

use std::collections::HashMap;

use futures_util::stream::BoxStream;

use crate::desired::{BuildSpec, File};

pub use actual::*;
pub use docker::Docker;
pub use error::*;
pub use spec::*;
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
    /// What a plan asks of this engine that it cannot do: (service, key,
    /// why), checked before anything is applied. Swarm runs a service's
    /// copies itself, and a host port of a node is one copy's.
    pub fn refuses(self, state: &crate::desired::DesiredState) -> Option<(String, String, String)> {
        match self {
            EngineKind::Docker => None,
            EngineKind::Swarm => swarm::refuses(state),
        }
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

/// Which part of a container's log to read, as `docker logs` takes it.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep printing new lines.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines from (and until) these Unix times, in seconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Each line starts with the engine's RFC 3339 time stamp.
    pub timestamps: bool,
}

impl LogOptions {
    pub(crate) fn query(&self) -> bollard::query_parameters::LogsOptions {
        let mut options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(self.follow)
            .timestamps(self.timestamps)
            .tail(&self.tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()));
        // The API takes 32-bit seconds: past 2038 is "no limit" for until,
        // and for since the latest time it can say.
        let secs = |t: i64| t.clamp(0, i64::from(i32::MAX)) as i32;
        if let Some(since) = self.since {
            options = options.since(secs(since));
        }
        if let Some(until) = self.until {
            options = options.until(secs(until));
        }
        options.build()
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
    /// The network of this name, if there is one (an external network).
    async fn network(&self, name: &str) -> Result<Option<Existing>>;
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
    /// can be large), labelled, reporting each output line; `no_cache`:
    /// reuse no layer of an earlier build.
    async fn build_image(
        &self,
        tag: &str,
        spec: &BuildSpec,
        context: &std::path::Path,
        labels: &Labels,
        no_cache: bool,
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
    async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String>;
    /// Replace container `old` by one made from `spec` (not started):
    /// removed, then created, unless the engine can change it in place.
    async fn replace(&self, old: &str, spec: &ContainerSpec<'_>) -> Result<String> {
        self.remove(old).await?;
        self.create(spec).await
    }
    /// Whether it runs a container's copies itself, given the count (Swarm's
    /// replicas), rather than each copy as a container of its own.
    fn runs_copies(&self) -> bool {
        false
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
    /// Write a tar of `path` in the container (a file, or a folder with
    /// all it holds) to `out`, `max_bytes` at most (`provision cp`).
    async fn get_archive(&self, _id: &str, _path: &str, _out: &mut (dyn std::io::Write + Send), _max_bytes: u64) -> Result<()> {
        Err(EngineError::Unsupported { what: "copying out of a container".into(), engine: "this engine" })
    }
    async fn start(&self, id: &str) -> Result<()>;
    /// Wait until the container is not running; returns its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64>;
    /// Remove at once (killing it if it runs), with its anonymous volumes.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Stop (SIGTERM, then SIGKILL after `grace_secs`), then remove.
    async fn stop_and_remove(&self, id: &str, grace_secs: u32) -> Result<()>;
    /// Stop (SIGTERM, then SIGKILL after `grace_secs`) and keep the
    /// container for a later `start`. Stopped already is not an error.
    async fn stop(&self, _id: &str, _grace_secs: u32) -> Result<()> {
        Err(EngineError::Unsupported { what: "stopping a service and keeping it (scale it to 0 with `replicas`)".into(), engine: "this engine" })
    }

    // Inside a container.
    /// Run a command, handing each chunk of its output to `on_output`;
    /// returns its exit code.
    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut OnOutput<'_>) -> Result<i64>;
    /// Run a command attached to `stdin` (closed when it ends) and, with
    /// `tty` (columns, rows), on a terminal of that size, whose output then
    /// comes as one stream. Returns its exit code. For `provision exec`.
    async fn exec_attached(
        &self,
        _id: &str,
        _command: ExecCommand<'_>,
        _stdin: Input,
        _tty: Option<(u16, u16)>,
        _on_output: &mut OnOutput<'_>,
    ) -> Result<i64> {
        Err(EngineError::Api("this engine cannot attach a command's input".into()))
    }
    /// Start a created container attached to `stdin` (when it was created
    /// with stdin open) and, with `tty`, resized to it; returns its exit code
    /// when it ends. For one-offs (`provision run SERVICE`).
    async fn start_attached(&self, _id: &str, _stdin: Option<Input>, _tty: Option<(u16, u16)>, _on_output: &mut OnOutput<'_>) -> Result<i64> {
        Err(EngineError::Api("this engine cannot attach to a container".into()))
    }
    /// Attach to a running container's main process (`provision attach`):
    /// `stdin` goes to it (it was created with stdin open), its output to
    /// `on_output`, until the engine reads `detach_keys` (on a TTY) or the
    /// process ends. The container is left as it is.
    async fn attach(
        &self,
        _id: &str,
        _stdin: Option<Input>,
        _tty: Option<(u16, u16)>,
        _detach_keys: &str,
        _on_output: &mut OnOutput<'_>,
    ) -> Result<()> {
        Err(EngineError::Api("this engine cannot attach to a container".into()))
    }
    /// Give a container's TTY a new size (columns, rows): ours changed.
    async fn resize_tty(&self, _id: &str, _size: (u16, u16)) -> Result<()> {
        Ok(())
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
    fn logs(&self, id: &str, options: &LogOptions) -> BoxStream<'static, Result<String>>;

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
        let mut chunks = self.logs(id, &LogOptions { tail: Some(lines), ..LogOptions::default() });
        while let Some(chunk) = chunks.next().await {
            output.push(chunk?.as_bytes());
        }
        Ok(output.text())
    }
}
