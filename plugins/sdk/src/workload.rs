//! How to run more containers of another service's app: its image, env,
//! mounts and working dir, handed over as one JSON output. A web plugin
//! (rails) exports it; a worker plugin (sidekiq) runs the same app with
//! another command, so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::types::{BuildSpec, Container, ImageSource, Mount, MountSource, Tmpfs};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Workload {
    /// Image to pull, or …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// … a Dockerfile build (same settings: the host builds it once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<WorkloadMount>,
    pub working_dir: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Build {
    pub context: String,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub args: Vec<(String, String)>,
}

/// A mount; named volumes are qualified (`web/bundle`), so the worker
/// shares the app's volume rather than declaring its own.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum WorkloadMount {
    Volume { source: String, target: String, read_only: bool },
    Bind { source: String, target: String, read_only: bool },
    Tmpfs { target: String },
    Anonymous { target: String },
}

impl Workload {
    /// The project folder bind-mounted over the working dir (the app's
    /// code in a dev profile), if any.
    pub fn code(&self) -> Option<&str> {
        self.mounts.iter().find_map(|m| match m {
            WorkloadMount::Bind { source, target, .. } if Some(target) == self.working_dir.as_ref() => Some(source.as_str()),
            _ => None,
        })
    }

    /// What `container` of `service` runs, for another container to run too.
    pub fn of(service: &str, container: &Container) -> Workload {
        let (image, build) = match &container.image {
            ImageSource::Pull(reference) => (Some(reference.clone()), None),
            ImageSource::Build(b) => {
                (None, Some(Build { context: b.context.clone(), dockerfile: b.dockerfile.clone(), target: b.target.clone(), args: b.args.clone() }))
            }
        };
        let mounts = container
            .mounts
            .iter()
            .map(|m| {
                let (target, read_only) = (m.target.clone(), m.read_only);
                match &m.source {
                    MountSource::Volume(name) if name.contains('/') => WorkloadMount::Volume { source: name.clone(), target, read_only },
                    MountSource::Volume(name) => WorkloadMount::Volume { source: format!("{service}/{name}"), target, read_only },
                    MountSource::Bind(path) => WorkloadMount::Bind { source: path.clone(), target, read_only },
                    MountSource::Tmpfs(_) => WorkloadMount::Tmpfs { target },
                    MountSource::Anonymous => WorkloadMount::Anonymous { target },
                }
            })
            .collect();
        Workload { image, build, env: container.env.clone(), mounts, working_dir: container.working_dir.clone() }
    }

    /// A container `name` running this workload (command left to the caller).
    pub fn container(&self, name: &str) -> Result<Container, String> {
        let image = match (&self.image, &self.build) {
            (Some(reference), _) => ImageSource::Pull(reference.clone()),
            (None, Some(b)) => ImageSource::Build(BuildSpec {
                context: b.context.clone(),
                dockerfile: b.dockerfile.clone(),
                target: b.target.clone(),
                args: b.args.clone(),
            }),
            (None, None) => return Err("the workload names neither an image nor a build".into()),
        };
        let mut container = Container::new(name, "");
        container.image = image;
        container.env = self.env.clone();
        container.working_dir = self.working_dir.clone();
        container.mounts = self
            .mounts
            .iter()
            .map(|m| match m {
                WorkloadMount::Volume { source, target, read_only } => {
                    Mount { source: MountSource::Volume(source.clone()), target: target.clone(), read_only: *read_only }
                }
                // Read-only: only the service whose config names a folder
                // may write to it (the host refuses a writable bind otherwise).
                WorkloadMount::Bind { source, target, .. } => {
                    Mount { source: MountSource::Bind(source.clone()), target: target.clone(), read_only: true }
                }
                WorkloadMount::Tmpfs { target } => {
                    Mount { source: MountSource::Tmpfs(Tmpfs { size_bytes: None, mode: None }), target: target.clone(), read_only: false }
                }
                WorkloadMount::Anonymous { target } => Mount { source: MountSource::Anonymous, target: target.clone(), read_only: false },
            })
            .collect();
        Ok(container)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a workload serializes")
    }

    pub fn from_json(json: &str) -> Result<Workload, String> {
        serde_json::from_str(json).map_err(|e| format!("not a workload: {e}"))
    }
}
