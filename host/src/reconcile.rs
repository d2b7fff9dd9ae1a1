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

/// Compare the plan with what the engine runs for the project, container
/// by container as the engine runs them (`ServicePlan::instances`: an
/// engine that runs copies itself gets a count, others numbered copies). A
/// container is kept only when its spec is unchanged and the journal says
/// its lifecycle finished (files placed, started, ready, hooks run; a task
/// exited 0 after being started).
pub fn diff(state: &DesiredState, actual: &[Actual], journal: &Journal, engine_runs_copies: bool) -> Diff {
    // A one-off (`provision run SERVICE`) is no part of the plan: never an orphan.
    let actual: Vec<&Actual> = actual.iter().filter(|a| a.label("role") != Some("run")).collect();
    let by_name: HashMap<(&str, &str), &Actual> = actual.iter().filter_map(|&a| Some(((a.label("service")?, a.label("container")?), a))).collect();
    let mut steps = Vec::new();
    let mut matched = HashSet::new();
    for service in &state.services {
        for instance in service.plan.instances(engine_runs_copies) {
            let (container, task) = (instance.container.as_ref(), instance.task);
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
    // A key left out when at its default (`tty = false`) is a change too.
    let gone = old.keys().filter(|k| !new.contains_key(*k));
    new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k).chain(gone).cloned().collect()
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
    use super::*;
    use crate::desired::{Image, ServicePlan, ServiceState};

    fn server() -> Container {
        Container::new("server", Image::Pull("app:1".into()))
    }

    fn state(plan: ServicePlan) -> DesiredState {
        let web = ServiceState { name: "web".into(), plugin: "test".into(), depends_on: Vec::new(), plan };
        DesiredState {
            project: "p".into(),
            profile: "dev".into(),
            plugins: Vec::new(),
            services: vec![web],
            substitutes: Default::default(),
            build_scope: "p".into(),
            host_paths: Default::default(),
            external_networks: Default::default(),
        }
    }

    /// A container of the project as the engine lists it, made from `spec`.
    fn actual(id: &str, service: &str, spec: &Container, role: &str) -> Actual {
        let labels = [("service", service), ("container", spec.name.as_str()), ("role", role)]
            .into_iter()
            .map(|(k, v)| (label(k), v.to_string()))
            .chain([(label("spec-hash"), spec.spec_hash())])
            .collect();
        Actual {
            id: id.into(),
            name: format!("p_{service}_{}", spec.name),
            labels,
            running: true,
            published: Vec::new(),
            writes_host: false,
            image_id: None,
        }
    }

    fn changes(diff: &Diff) -> Vec<(&str, &Change)> {
        diff.steps.iter().map(|s| (s.container.as_str(), &s.change)).collect()
    }

    #[test]
    fn on_an_empty_engine_every_task_and_container_is_created_tasks_first() {
        let plan =
            ServicePlan { containers: vec![server()], tasks: vec![Container::new("migrate", Image::Pull("app:1".into()))], ..ServicePlan::default() };
        let diff = diff(&state(plan), &[], &Journal::in_memory(), false);
        assert!(matches!(changes(&diff)[..], [("migrate", Change::Create), ("server", Change::Create)]));
        assert!(diff.steps[0].task && !diff.steps[1].task);
        assert!(diff.orphans.is_empty());
    }

    #[test]
    fn a_finished_container_with_the_same_spec_is_kept_and_one_cut_short_is_recreated() {
        let plan = ServicePlan { containers: vec![server()], ..ServicePlan::default() };
        let journal = Journal::in_memory();
        let running = actual("c1", "web", &server(), "container");
        assert!(
            matches!(&changes(&diff(&state(plan.clone()), std::slice::from_ref(&running), &journal, false))[..], [("server", Change::Recreate { fields })] if fields == &[INTERRUPTED]),
            "a lifecycle the journal did not see finish is not trusted"
        );
        journal.created("c1", &server());
        journal.done("c1", None);
        let diff = diff(&state(plan), &[running], &journal, false);
        assert!(matches!(changes(&diff)[..], [("server", Change::Keep)]));
        assert_eq!(diff.steps[0].actual.as_ref().map(|a| a.id.as_str()), Some("c1"));
    }

    #[test]
    fn a_changed_spec_is_recreated_naming_the_fields_that_differ() {
        let journal = Journal::in_memory();
        journal.created("c1", &server());
        journal.done("c1", None);
        let mut changed = server();
        changed.command = Some(vec!["serve".into(), "--fast".into()]);
        let plan = ServicePlan { containers: vec![changed], ..ServicePlan::default() };
        let diff = diff(&state(plan), &[actual("c1", "web", &server(), "container")], &journal, false);
        assert!(matches!(&changes(&diff)[..], [("server", Change::Recreate { fields })] if fields == &["command"]), "{:?}", diff.steps);
    }

    #[test]
    fn what_the_plan_no_longer_has_is_an_orphan_but_a_one_off_run_never_is() {
        let plan = ServicePlan { containers: vec![server()], ..ServicePlan::default() };
        let gone = actual("c2", "old", &server(), "container");
        let one_off = actual("c3", "web", &Container::new("run-1", Image::Pull("app:1".into())), "run");
        let diff = diff(&state(plan), &[gone, one_off], &Journal::in_memory(), false);
        assert_eq!(diff.orphans, ["p_old_server"]);
        assert_eq!(diff.orphan_ids, ["c2"]);
    }

    #[test]
    fn replicas_are_numbered_containers_on_docker_and_one_counted_service_on_swarm() {
        let mut counted = server();
        counted.replicas = 3;
        let plan = ServicePlan { containers: vec![counted], ..ServicePlan::default() };
        let on_docker = diff(&state(plan.clone()), &[], &Journal::in_memory(), false);
        assert_eq!(on_docker.steps.iter().map(|s| s.container.as_str()).collect::<Vec<_>>(), ["server", "server-2", "server-3"]);
        let on_swarm = diff(&state(plan), &[], &Journal::in_memory(), true);
        assert_eq!(on_swarm.steps.iter().map(|s| s.container.as_str()).collect::<Vec<_>>(), ["server"]);
    }

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
