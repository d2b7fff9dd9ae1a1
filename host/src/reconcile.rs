//! Reconcile: what the engine has against what the plan wants. Owns the
//! engine names of a project's resources, the labels that mark them, and
//! the diff (create / recreate, naming the changed fields / keep / orphan).
//! Must not touch the engine: it reads what `apply` listed.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::{
    desired::{Container, DesiredState},
    engine::{Actual, LABEL_PREFIX},
    journal::Journal,
};

/// Engine names of the project's resources: parts joined with `_`, which
/// no project, service or container name may contain (a volume or network
/// name, always last, may), so no name of one project can ever equal a name
/// of another.
pub struct Names<'a> {
    pub project: &'a str,
}

impl Names<'_> {
    pub fn container(&self, service: &str, container: &str) -> String {
        format!("{}_{service}_{container}", self.project)
    }
    pub fn network(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }
    /// The network a container is alone on until its data's snapshot is
    /// taken: `.` is in no network name a plan may declare.
    pub fn sealed_network(&self, service: &str, container: &str) -> String {
        format!("{}_{service}_{container}.sealed", self.project)
    }
    /// `NAME` is the service's own volume; `SERVICE/NAME` another's.
    pub fn volume(&self, service: &str, name: &str) -> String {
        match name.split_once('/') {
            Some((owner, name)) => format!("{}_{owner}_{name}", self.project),
            None => format!("{}_{service}_{name}", self.project),
        }
    }
}

pub fn label(key: &str) -> String {
    format!("{LABEL_PREFIX}{key}")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    Create,
    /// With the top-level spec fields that differ.
    Recreate {
        fields: Vec<String>,
    },
    Keep,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub service: String,
    pub container: String,
    pub task: bool,
    #[serde(flatten)]
    pub change: Change,
    #[serde(skip)]
    pub actual: Option<Actual>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub steps: Vec<Step>,
    /// Containers of the project no longer in the stack: removed by `up`.
    pub orphans: Vec<String>,
    #[serde(skip)]
    pub orphan_ids: Vec<String>,
}

impl Diff {
    pub fn step(&self, service: &str, container: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.service == service && s.container == container)
    }
}

/// Why a container whose spec is unchanged is recreated anyway.
pub const INTERRUPTED: &str = "(its last lifecycle did not finish)";

/// Compare the plan with what the engine runs for the project. A container
/// is kept only when its spec is unchanged and the journal says its
/// lifecycle finished (files placed, started, ready, hooks run; a task
/// exited 0 after being started).
pub fn diff(state: &DesiredState, actual: &[Actual], journal: &Journal) -> Diff {
    // A one-off (`provision run SERVICE`) is no part of the plan: never an orphan.
    let actual: Vec<&Actual> = actual.iter().filter(|a| a.label("role") != Some("run")).collect();
    let by_name: HashMap<(&str, &str), &Actual> = actual.iter().filter_map(|&a| Some(((a.label("service")?, a.label("container")?), a))).collect();
    let mut steps = Vec::new();
    let mut matched = HashSet::new();
    for service in &state.services {
        let all = service.plan.tasks.iter().map(|c| (c, true)).chain(service.plan.containers.iter().map(|c| (c, false)));
        for (container, task) in all {
            let found = by_name.get(&(service.name.as_str(), container.name.as_str())).copied();
            let change = match found {
                None => Change::Create,
                Some(a) if a.label("spec-hash") != Some(&container.spec_hash()) => {
                    Change::Recreate { fields: changed_fields(container, journal.entry(&a.id).map(|e| e.spec)) }
                }
                Some(a) if !journal.completed(&a.id) => Change::Recreate { fields: vec![INTERRUPTED.into()] },
                Some(_) => Change::Keep,
            };
            if let Some(a) = found {
                matched.insert(a.id.as_str());
            }
            steps.push(Step { service: service.name.clone(), container: container.name.clone(), task, change, actual: found.cloned() });
        }
    }
    let orphans: Vec<&Actual> = actual.into_iter().filter(|a| !matched.contains(a.id.as_str())).collect();
    Diff { steps, orphans: orphans.iter().map(|a| a.name.clone()).collect(), orphan_ids: orphans.iter().map(|a| a.id.clone()).collect() }
}

/// Which spec fields differ from the spec recorded on the running container.
fn changed_fields(desired: &Container, recorded: Option<serde_json::Value>) -> Vec<String> {
    let desired = serde_json::to_value(desired).expect("a container serializes");
    let Some(recorded) = recorded else {
        return vec!["(spec not recorded)".into()];
    };
    let (Some(new), Some(old)) = (desired.as_object(), recorded.as_object()) else { return vec![] };
    new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
}

/// The project's containers by service, for `ps`, `logs` and `exec`.
pub fn by_service(actual: Vec<Actual>) -> BTreeMap<String, Vec<Actual>> {
    let mut map: BTreeMap<String, Vec<Actual>> = BTreeMap::new();
    for a in actual {
        map.entry(a.label("service").unwrap_or("?").to_string()).or_default().push(a);
    }
    map
}

/// The folder of another checkout of the stack that brought this project
/// up, if any: two checkouts must not share (and `down` remove) each
/// other's containers.
pub fn other_owner<'a>(project_dir: &std::path::Path, actual: &'a [Actual]) -> Option<&'a str> {
    let ours = project_dir.display().to_string();
    actual.iter().filter_map(|a| a.label("project-dir")).find(|d| *d != ours)
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn engine_names_of_two_projects_never_meet() {
        // Projects `p` and `p-q`, services `q-r` and `r`: joined with `-` both were `p-q-r-server`.
        let (p, pq) = (Names { project: "p" }, Names { project: "p-q" });
        assert_ne!(p.container("q-r", "server"), pq.container("r", "server"));
        assert_ne!(p.volume("q-r", "data"), pq.volume("r", "data"));
        assert_ne!(Names { project: "a" }.network("b-c"), Names { project: "a-b" }.network("c"));
        assert_eq!(p.volume("db", "pg_data"), "p_db_pg_data");
    }
}
