//! `apply` on an engine that lives in memory: the scheduler's ordering, the
//! diff and orphan removal, without Docker. The `Engine` trait is the only
//! way apply reaches an engine, so this drives the same code as `up` does;
//! the real-engine tests (docker.rs) check that Docker does what it is told.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use futures_util::stream::{self, BoxStream, StreamExt};
use provision::{
    apply::{self, Event, Events, UpOptions},
    desired::{BuildSpec, Container, Dependency, DesiredState, File, HealthCheck, Image, Probe, ServicePlan, ServiceState, WaitFor},
    engine::{Actual, ContainerSpec, Engine, ExecCommand, Existing, Labels, OnOutput, OutputStream, Result, Status},
    journal::{Journal, Stage},
    reconcile::{self, Change},
};

/// How many exec probes a container fails before it passes.
const PROBES_TO_READY: usize = 3;

#[derive(Default)]
struct MemoryEngine {
    state: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    containers: Vec<Stored>,
    /// What happened, in order: "create NAME", "start NAME", "ready NAME", "remove NAME".
    journal: Vec<String>,
    probes: HashMap<String, usize>,
    networks: Vec<String>,
    next_id: usize,
}

struct Stored {
    id: String,
    name: String,
    labels: Labels,
    running: bool,
    exit_code: Option<i64>,
    starts: usize,
}

impl MemoryEngine {
    fn journal(&self) -> Vec<String> {
        self.state.lock().unwrap().journal.clone()
    }

    fn clear_journal(&self) {
        self.state.lock().unwrap().journal.clear();
    }

    /// Where `entry` is in the journal (it must be there).
    fn at(&self, entry: &str) -> usize {
        let journal = self.journal();
        journal.iter().position(|e| e == entry).unwrap_or_else(|| panic!("`{entry}` not in {journal:#?}"))
    }

    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Stored, &mut Vec<String>) -> R) -> R {
        let mut memory = self.state.lock().unwrap();
        let Memory { containers, journal, .. } = &mut *memory;
        let stored = containers.iter_mut().find(|c| c.id == id).expect("a container the engine has");
        f(stored, journal)
    }
}

#[async_trait::async_trait]
impl Engine for MemoryEngine {
    async fn containers(&self, project: &str) -> Result<Vec<Actual>> {
        let memory = self.state.lock().unwrap();
        let ours = memory.containers.iter().filter(|c| c.labels.get("dev.provision.project").map(String::as_str) == Some(project));
        Ok(ours
            .map(|c| Actual {
                id: c.id.clone(),
                name: c.name.clone(),
                labels: c.labels.clone(),
                running: c.running,
                published: Vec::new(),
                writes_host: false,
                image_id: None,
            })
            .collect())
    }

    async fn status(&self, id: &str) -> Result<Status> {
        Ok(self.with(id, |c, _| Status { running: c.running, exit_code: c.exit_code, started_at: Some(c.starts.to_string()), ..Status::default() }))
    }

    async fn network(&self, name: &str) -> Result<Option<Existing>> {
        let known = self.state.lock().unwrap().networks.iter().any(|n| n == name);
        Ok(known.then(|| Existing { labels: Labels::new(), internal: false }))
    }

    async fn ensure_network(&self, name: &str, _internal: bool, _labels: Labels) -> Result<Option<Existing>> {
        self.state.lock().unwrap().networks.push(name.to_string());
        Ok(None)
    }

    async fn ensure_volume(&self, _name: &str, _labels: Labels) -> Result<Option<Existing>> {
        Ok(None)
    }

    async fn remove_networks(&self, _project: &str, _owner: Option<&str>) -> Result<Vec<String>> {
        Ok(std::mem::take(&mut self.state.lock().unwrap().networks))
    }

    async fn remove_volumes(&self, _project: &str, _owner: Option<&str>) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn ensure_image(&self, _image: &str) -> Result<()> {
        Ok(())
    }

    async fn image_digest(&self, _image: &str) -> Result<Option<String>> {
        Ok(Some("sha256:in-memory".into()))
    }

    async fn build_image(
        &self,
        _tag: &str,
        _spec: &BuildSpec,
        _context: &std::path::Path,
        _labels: &Labels,
        _no_cache: bool,
        _progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()> {
        Ok(())
    }

    async fn image_id(&self, _image: &str) -> Result<Option<String>> {
        Ok(Some("sha256:in-memory".into()))
    }

    async fn create(&self, spec: &ContainerSpec<'_>) -> Result<String> {
        let mut memory = self.state.lock().unwrap();
        memory.next_id += 1;
        let id = format!("id{}", memory.next_id);
        memory.journal.push(format!("create {}", spec.name));
        let stored = Stored { id: id.clone(), name: spec.name.clone(), labels: spec.labels.clone(), running: false, exit_code: None, starts: 0 };
        memory.containers.push(stored);
        Ok(id)
    }

    async fn put_files(&self, _id: &str, _files: &[File]) -> Result<()> {
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.with(id, |c, journal| {
            journal.push(format!("start {}", c.name));
            c.starts += 1;
            // A task runs to completion at once; anything else keeps running.
            if c.labels.get("dev.provision.role").map(String::as_str) == Some("task") {
                c.exit_code = Some(0);
            } else {
                c.running = true;
            }
        });
        Ok(())
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        Ok(self.with(id, |c, _| c.exit_code.unwrap_or(-1)))
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let mut memory = self.state.lock().unwrap();
        if let Some(at) = memory.containers.iter().position(|c| c.id == id) {
            let removed = memory.containers.remove(at);
            memory.journal.push(format!("remove {}", removed.name));
        }
        Ok(())
    }

    async fn stop_and_remove(&self, id: &str, _grace_secs: u32) -> Result<()> {
        self.remove(id).await
    }

    /// Exec is only used for probes here: each container passes its
    /// `PROBES_TO_READY`th, or the Nth for a probe `["ready-after", N]`.
    async fn exec_with(&self, id: &str, command: ExecCommand<'_>, on_output: &mut OnOutput<'_>) -> Result<i64> {
        let needed = match command.command {
            [word, n] if word == "ready-after" => n.parse().expect("a number of probes"),
            _ => PROBES_TO_READY,
        };
        let mut memory = self.state.lock().unwrap();
        let name = memory.containers.iter().find(|c| c.id == id).expect("a container the engine has").name.clone();
        let count = memory.probes.entry(id.to_string()).or_default();
        *count += 1;
        if *count < needed {
            on_output(OutputStream::Stdout, b"not yet");
            return Ok(1);
        }
        if *count == needed {
            memory.journal.push(format!("ready {name}"));
        }
        Ok(0)
    }

    fn logs(&self, _id: &str, _options: &provision::engine::LogOptions) -> BoxStream<'static, Result<String>> {
        stream::empty().boxed()
    }
}

struct Quiet;

impl Events for Quiet {
    fn emit(&self, _event: Event) {}
}

fn server(probed: bool) -> Container {
    let mut c = Container::new("server", Image::Pull("stand-in:1".into()));
    if probed {
        let probe = Probe::Exec(vec!["true".into()]);
        c.health = Some(HealthCheck { probe, interval_ms: 1000, timeout_ms: 1000, retries: 3, start_period_ms: 0 });
    }
    c
}

fn service(name: &str, plan: ServicePlan, depends_on: &[(&str, WaitFor)]) -> ServiceState {
    let depends_on = depends_on
        .iter()
        .map(|(service, wait)| Dependency { role: service.to_string(), service: service.to_string(), wait: *wait, secrets: false })
        .collect();
    ServiceState { name: name.into(), plugin: "test".into(), depends_on, plan }
}

/// db (probed) and cache (not probed) are independent; app waits for db
/// ready and cache started, and runs a migration task first.
fn stack() -> DesiredState {
    let db = ServicePlan { containers: vec![server(true)], ..ServicePlan::default() };
    let cache = ServicePlan { containers: vec![server(false)], ..ServicePlan::default() };
    let migrate = Container::new("migrate", Image::Pull("stand-in:1".into()));
    let app = ServicePlan { containers: vec![server(true)], tasks: vec![migrate], ..ServicePlan::default() };
    DesiredState {
        project: "mem".into(),
        profile: "dev".into(),
        plugins: Vec::new(),
        services: vec![
            service("db", db, &[]),
            service("cache", cache, &[]),
            service("app", app, &[("db", WaitFor::Ready), ("cache", WaitFor::Started)]),
        ],
        substitutes: Default::default(),
        build_scope: "mem".into(),
        host_paths: Default::default(),
        external_networks: Default::default(),
    }
}

fn options() -> UpOptions {
    UpOptions::new("/projects/mem".into(), Duration::from_secs(20), None, Journal::in_memory())
}

/// Run a future of the test to its end (apply sleeps between probes).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn up(engine: &MemoryEngine, state: &DesiredState, options: &UpOptions) -> apply::Summary {
    block_on(apply::up(engine, state, options, &Quiet)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn services_start_in_dependency_order_and_independent_ones_in_parallel() {
    let engine = MemoryEngine::default();
    let summary = up(&engine, &stack(), &options());
    assert_eq!((summary.created, summary.kept, summary.removed), (4, 0, 0));

    // db and cache start at once; cache does not wait for db to be ready.
    assert!(engine.at("start mem_cache_server") < engine.at("ready mem_db_server"), "{:#?}", engine.journal());
    // app's task waits for both of its dependencies, and app for its task.
    assert!(engine.at("ready mem_db_server") < engine.at("start mem_app_migrate"));
    assert!(engine.at("start mem_cache_server") < engine.at("start mem_app_migrate"));
    assert!(engine.at("start mem_app_migrate") < engine.at("start mem_app_server"));
    assert!(engine.at("start mem_app_server") < engine.at("ready mem_app_server"));
}

/// A dependent waits for what answers to the service's name (its main
/// container), not for a sidecar such as an exporter; the service itself is
/// ready only once the sidecar is.
#[test]
fn a_dependent_waits_for_the_main_container_not_for_its_sidecars() {
    let engine = MemoryEngine::default();
    let mut state = stack();
    let mut exporter = server(true);
    exporter.name = "exporter".into();
    exporter.health.as_mut().unwrap().probe = Probe::Exec(vec!["ready-after".into(), "8".into()]);
    state.services[0].plan.containers.push(exporter);
    up(&engine, &state, &options());

    assert!(engine.at("ready mem_db_server") < engine.at("start mem_app_migrate"), "{:#?}", engine.journal());
    assert!(engine.at("start mem_app_server") < engine.at("ready mem_db_exporter"), "{:#?}", engine.journal());
}

#[test]
fn an_unchanged_stack_is_kept_a_changed_container_recreated_and_orphans_removed() {
    let engine = MemoryEngine::default();
    let options = options();
    let first = stack();
    up(&engine, &first, &options);
    let before = engine.journal();

    // The diff, read from the labels apply wrote and the lifecycle journal.
    let actual = block_on(engine.containers("mem")).unwrap();
    let diff = reconcile::diff(&first, &actual, &options.journal, false);
    assert!(diff.steps.iter().all(|s| s.change == Change::Keep), "{:?}", diff.steps);
    assert!(diff.orphans.is_empty());

    // Nothing changed: nothing is created, started or removed again.
    engine.clear_journal();
    let summary = up(&engine, &first, &options);
    assert_eq!((summary.created, summary.recreated, summary.kept, summary.removed), (0, 0, 4, 0));
    assert!(engine.journal().iter().all(|e| !e.starts_with("create") && !e.starts_with("remove")), "{:#?}", engine.journal());

    // app's server changes and cache leaves the stack.
    let mut second = first.clone();
    second.services[2].plan.containers[0].env.insert("FEATURE".into(), "on".into());
    second.services.remove(1);
    second.services[1].depends_on.retain(|d| d.service != "cache");
    let diff = reconcile::diff(&second, &block_on(engine.containers("mem")).unwrap(), &options.journal, false);
    let app = diff.step("app", "server").unwrap();
    assert_eq!(app.change, Change::Recreate { fields: vec!["env".into()] }, "the diff names the changed field");
    assert_eq!(diff.orphans, ["mem_cache_server"]);

    engine.clear_journal();
    let summary = up(&engine, &second, &options);
    assert_eq!((summary.created, summary.recreated, summary.kept, summary.removed), (0, 1, 2, 1));
    let journal = engine.journal();
    assert!(journal.contains(&"remove mem_cache_server".to_string()), "{journal:#?}");
    assert!(engine.at("remove mem_app_server") < engine.at("create mem_app_server"), "{journal:#?}");
    assert!(!journal.iter().any(|e| e.contains("mem_db_server") && !e.starts_with("ready")), "db is kept untouched: {journal:#?}");
    assert_eq!(before.iter().filter(|e| e.starts_with("create")).count(), 4);
}

#[test]
fn down_removes_every_container_and_network_of_the_project() {
    let engine = MemoryEngine::default();
    up(&engine, &stack(), &options());
    let containers = block_on(engine.containers("mem")).unwrap();
    let removed = block_on(apply::down(&engine, "mem", Some("/projects/mem"), &containers, false)).unwrap();
    assert_eq!(removed.containers, 4);
    assert_eq!(removed.networks, ["mem_default"]);
    assert!(block_on(engine.containers("mem")).unwrap().is_empty());
}

#[test]
fn a_lifecycle_cut_short_is_finished_not_kept() {
    let engine = MemoryEngine::default();
    let options = options();
    let state = stack();
    up(&engine, &state, &options);
    let id = |name: &str| block_on(engine.containers("mem")).unwrap().into_iter().find(|a| a.name == name).unwrap().id;

    // As if `up` had been killed: db started but never seen ready (its hooks
    // never ran), app's task created and filled but never started.
    options.journal.reached(&id("mem_db_server"), Stage::Started);
    options.journal.reached(&id("mem_app_migrate"), Stage::FilesPlaced);
    let diff = reconcile::diff(&state, &block_on(engine.containers("mem")).unwrap(), &options.journal, false);
    for (service, container) in [("db", "server"), ("app", "migrate")] {
        let step = diff.step(service, container).unwrap();
        assert_eq!(step.change, Change::Recreate { fields: vec![reconcile::INTERRUPTED.into()] }, "{service}/{container}");
    }
    assert_eq!(diff.step("cache", "server").unwrap().change, Change::Keep);

    engine.clear_journal();
    let summary = up(&engine, &state, &options);
    assert_eq!((summary.created, summary.recreated, summary.kept), (0, 2, 2));
    let journal = engine.journal();
    assert!(engine.at("remove mem_db_server") < engine.at("create mem_db_server"), "{journal:#?}");
    assert!(engine.at("ready mem_db_server") < engine.at("start mem_app_migrate"), "the task runs again, after db: {journal:#?}");
    assert!(block_on(engine.containers("mem")).unwrap().iter().all(|a| options.journal.completed(&a.id)), "all finished now");
}
