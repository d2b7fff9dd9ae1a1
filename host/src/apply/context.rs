//! What one `up` shares between its services (`Up`), what it was asked to
//! do (`UpOptions`), and why a service did not come up (`Failure`). Every
//! step of `up` — `schedule`, `lifecycle`, `readiness`, `snapshots` — takes
//! an `&Up`; this module imports none of them.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures_util::future::{BoxFuture, Shared};
use provision_registry::LockedImage;

use super::events::{Event, Events, Phase};
use crate::{
    desired::DesiredState,
    engine::{Engine, Labels, plain},
    journal::Journal,
    reconcile::{Diff, Names, label},
};

/// One `up` of a project, as its services run: the engine, the plan and
/// its diff, what was asked, where events go, and what the services share
/// (new volumes, builds).
pub(super) struct Up<'a, 'b> {
    pub engine: &'a dyn Engine,
    pub state: &'a DesiredState,
    pub diff: &'a Diff,
    pub options: &'a UpOptions,
    pub events: &'a dyn Events,
    pub started: Instant,
    pub names: &'a Names<'a>,
    /// Volumes this `up` created (their data is new).
    pub new_volumes: &'a HashSet<String>,
    pub builds: &'a Builds<'b>,
}

impl Up<'_, '_> {
    pub(super) fn emit(&self, service: &str, phase: Phase) {
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        self.events.emit(Event { service: service.to_string(), phase, elapsed_ms });
    }

    /// When every wait of this `up` ends (`--timeout`).
    pub(super) fn deadline(&self) -> Instant {
        self.started + self.options.timeout
    }

    /// After Ctrl-C no new step starts (see `UpOptions::interrupted`).
    pub(super) fn stop_if_interrupted(&self, service: &str) -> Result<(), Failure> {
        if !self.options.is_interrupted() {
            return Ok(());
        }
        Err(self.failed(service, Failure::new(service, "starting", "interrupted")))
    }

    /// Report `failure` as an event, and hand it on.
    pub(super) fn failed(&self, service: &str, failure: Failure) -> Failure {
        self.emit(service, Phase::Failed(failure.reason.clone()));
        failure
    }
}

/// The builds of one `up`, by input hash: each runs once, however many
/// services wait for it.
pub(super) type Builds<'a> = HashMap<String, Shared<BoxFuture<'a, Result<(), String>>>>;

/// Why one service did not come up, with what is needed to see why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub service: String,
    pub waiting_for: String,
    pub reason: String,
    pub last_probe: Option<String>,
    pub container: Option<String>,
    pub log_tail: Option<String>,
}

impl Failure {
    /// `service` failed while `waiting_for` (e.g. "starting"), because of `reason`.
    pub fn new(service: &str, waiting_for: &str, reason: impl Into<String>) -> Failure {
        Failure { service: service.into(), waiting_for: waiting_for.into(), reason: reason.into(), last_probe: None, container: None, log_tail: None }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Probe output and log lines come from the container: escaped here;
        // secrets in them are masked where the error is printed.
        write!(f, "service `{}` failed while {}: {}", self.service, self.waiting_for, plain(&self.reason))?;
        if let Some(probe) = self.last_probe.as_deref().filter(|p| !p.trim().is_empty()) {
            write!(f, "\n  last probe output: {}", plain(probe.trim()))?;
        }
        if let Some(tail) = self.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
            write!(f, "\n  last lines of its log:")?;
            for line in tail.trim_end().lines() {
                write!(f, "\n    | {}", plain(line))?;
            }
        }
        if let Some(container) = &self.container {
            write!(f, "\n  the container `{container}` is kept for inspection (`provision logs {}`, `docker inspect {container}`)", self.service)?;
        }
        Ok(())
    }
}

pub struct UpOptions {
    pub project_dir: PathBuf,
    pub timeout: Duration,
    /// `up --locked`: images must resolve to these digests.
    pub locked_images: Option<Vec<LockedImage>>,
    /// How far each container's lifecycle got, written as it goes.
    pub journal: Journal,
    /// Set on Ctrl-C: no new step starts; the one in progress finishes, so
    /// nothing is left half-made on the engine that the journal does not know.
    pub interrupted: AtomicBool,
    /// Put on every container, network and volume made (`run` marks its
    /// project as ephemeral, with its owner).
    pub labels: Labels,
    /// Seed new data from snapshots and keep them (`--no-snapshots`: off).
    pub snapshots: bool,
    /// `up SERVICE…`: only these services are brought up; the project's
    /// other containers are neither changed nor removed.
    pub only: Option<BTreeSet<String>>,
    /// `start`, `restart`: start what exists; anything to create or
    /// recreate is refused before anything is done.
    pub existing_only: bool,
    /// `build --no-cache`: build images again, reusing no layer.
    pub no_cache: bool,
}

impl UpOptions {
    pub fn new(project_dir: PathBuf, timeout: Duration, locked_images: Option<Vec<LockedImage>>, journal: Journal) -> Self {
        UpOptions {
            project_dir,
            timeout,
            locked_images,
            journal,
            interrupted: AtomicBool::new(false),
            labels: Labels::new(),
            snapshots: true,
            only: None,
            existing_only: false,
            no_cache: false,
        }
    }

    pub(super) fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Labels every network and volume of the project carries: its name
    /// and folder (and `run`'s owner), so `down` finds it and no other
    /// checkout uses it.
    pub(super) fn project_labels(&self, project: &str) -> Labels {
        let mut labels = self.labels.clone();
        labels.extend([(label("project"), project.to_string()), (label("project-dir"), self.project_dir.display().to_string())]);
        labels
    }
}
