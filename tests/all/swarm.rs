//! The Swarm backend on a real three-node swarm: `scripts/swarm up` (which
//! scripts/test runs) makes this engine the manager, starts two worker
//! nodes as containers with their own dockerd, and a registry every node
//! pulls from as 127.0.0.1:5000.

use std::collections::BTreeSet;

use crate::support::{Stack, docker, eventually, needs_engine};

const WORKERS: [&str; 2] = ["provision-swarm-worker-1", "provision-swarm-worker-2"];

/// Held by each test here: one of them stops a worker node, which would
/// fail another's tasks there, and the scheduler places tasks by how many
/// already run on each node.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stateless service in three replicas (redis servers of their own).
const THREE_REPLICAS: &str = r#"
[services.web]
plugin = "container"
image = "redis:7-alpine"
command = ["redis-server", "--save", ""]
health = { redis = 6379 }
replicas = 3
"#;

/// `[stack]` and `[engine.swarm]` for project `name` on the local swarm.
fn on_swarm(name: &str) -> String {
    assert_eq!(
        docker(&["info", "--format", "{{.Swarm.ControlAvailable}}"]).trim(),
        "true",
        "this engine is not a swarm manager: run `scripts/swarm up` (scripts/test does)"
    );
    let ready = docker(&["node", "ls", "--format", "{{.Status}}"]).lines().filter(|s| *s == "Ready").count();
    assert!(ready >= 3, "the swarm has {ready} ready nodes, not 3: run `scripts/swarm up`");
    format!("[stack]\nname = \"{name}\"\nengine = \"swarm\"\n\n[engine.swarm]\nregistry = \"127.0.0.1:5000\"\n")
}

fn swarm_stack(name: &str, services: &str) -> Stack {
    let stack = Stack::new(name, "");
    stack.project.write("stack.toml", &format!("{}\n{services}", on_swarm(name)));
    stack
}

/// The project's objects of a kind (`service`, `network`, …) on this node,
/// of one service when given.
fn labeled(what: &str, project: &str, service: Option<&str>) -> Vec<String> {
    let mut args = vec![what.to_string(), "ls".into(), "-q".into(), "--filter".into(), format!("label=dev.provision.project={project}")];
    if let Some(service) = service {
        args.extend(["--filter".into(), format!("label=dev.provision.service={service}")]);
    }
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>()).lines().map(str::to_string).collect()
}

/// A line per task of a Swarm service that the engine wants running, in
/// `docker service ps` format `format`.
fn running_tasks(service: &str, format: &str) -> Vec<String> {
    docker(&["service", "ps", service, "--filter", "desired-state=running", "--format", format]).lines().map(str::to_string).collect()
}

/// The nodes running the tasks of a service of the project.
fn nodes_of(project: &str, service: &str) -> BTreeSet<String> {
    labeled("service", project, Some(service)).iter().flat_map(|id| running_tasks(id, "{{.Node}}")).collect()
}

#[test]
fn the_quickstart_runs_on_the_swarm_unchanged_stack_changes_nothing_and_down_leaves_nothing() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-quick";
    let stack = Stack::from_example("quickstart", name, |text| {
        // Free ports: the same example runs on the single engine meanwhile.
        let text = text.replacen(&format!("[stack]\nname = \"{name}\"\n"), &on_swarm(name), 1);
        text.replace("plugin = \"postgres\"\n", "plugin = \"postgres\"\nport = 0\n").replace("plugin = \"redis\"\n", "plugin = \"redis\"\nport = 0\n")
    });
    let up = stack.provision(&["up"]).ok();
    assert!(up.stderr.contains("2 created"), "{}", up.stderr);

    // Each planned container is a service whose image (a stand-in, or the
    // snapshot of postgres's data) every node pulls from the registry by digest.
    let services = labeled("service", name, None);
    assert_eq!(services.len(), 2, "{services:?}");
    for id in &services {
        let image = docker(&["service", "inspect", id, "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"]);
        assert!(image.starts_with("127.0.0.1:5000/provision-") && image.contains("@sha256:"), "{image}");
    }
    // Ready means ready: the hook ran (it needs postgres up) and both answer.
    let extensions = stack
        .provision(&[
            "exec",
            "db",
            "--",
            "psql",
            "-U",
            "app",
            "-d",
            "app_development",
            "-tAc",
            "select count(*) from pg_extension where extname in ('pgcrypto', 'pg_trgm')",
        ])
        .ok();
    assert_eq!(extensions.stdout.trim(), "2", "{}", extensions.stderr);
    assert_eq!(stack.provision(&["exec", "cache", "--", "redis-cli", "ping"]).ok().stdout.trim(), "PONG");
    let ps = stack.ps();
    assert!(ps.iter().all(|row| row["state"] == "running" && row["health"] == "healthy"), "{ps:?}");

    let again = stack.provision(&["up"]).ok();
    assert!(again.stderr.contains("0 created, 0 recreated, 2 kept, 0 removed"), "{}", again.stderr);
    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("db/server (container): keep") && plan.stdout.contains("cache/server (container): keep"), "{}", plan.stdout);

    stack.provision(&["down", "-v"]).ok();
    for what in ["service", "network", "config", "volume", "secret"] {
        assert_eq!(labeled(what, name, None), Vec::<String>::new(), "a {what} of the project is left");
    }
    for worker in WORKERS {
        let left = docker(&["exec", worker, "docker", "ps", "-a", "--format", "{{.Names}}"]);
        assert!(!left.contains(name), "{worker} still has {left}");
        let volumes = docker(&["exec", worker, "docker", "volume", "ls", "-q"]);
        assert!(!volumes.contains(name), "{worker} still has {volumes}");
    }
}

#[test]
fn replicas_spread_over_the_nodes_and_every_one_answers_to_the_service_name() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-spread";
    let stack = swarm_stack(name, THREE_REPLICAS);
    stack.provision(&["up"]).ok();
    // One Swarm service runs the three.
    let services = labeled("service", name, Some("web"));
    assert_eq!(services.len(), 1, "{services:?}");
    let replicas = docker(&["service", "inspect", &services[0], "--format", "{{.Spec.Mode.Replicated.Replicas}}"]);
    assert_eq!(replicas.trim(), "3");
    let nodes = nodes_of(name, "web");
    assert!(nodes.len() >= 2, "three replicas on one node: {nodes:?}");

    // From a container on the project's (attachable, overlay) network: the
    // service's name resolves to every replica, and each is a server of its own.
    let network = format!("{name}_default");
    let script = "for ip in $(getent ahostsv4 web | cut -d' ' -f1 | sort -u); do redis-cli -h $ip info server | grep run_id; done";
    let ids = eventually(std::time::Duration::from_secs(30), "every replica answers", || {
        let out = docker(&["run", "--rm", "--network", &network, "--entrypoint", "sh", "provision-standin/redis:7", "-c", script]);
        let ids: BTreeSet<String> = out.lines().map(str::to_string).collect();
        (ids.len() == 3).then_some(ids)
    });
    assert_eq!(ids.len(), 3, "{ids:?}");

    // Scaled down in place: `plan` names the field, and the tasks that stay
    // are the ones that ran (no rolling restart).
    let tasks = || -> BTreeSet<String> { running_tasks(&services[0], "{{.ID}}").into_iter().collect() };
    let before = tasks();
    let text = std::fs::read_to_string(stack.project.path().join("stack.toml")).unwrap();
    stack.project.write("stack.toml", &text.replace("replicas = 3", "replicas = 2"));
    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("web/server (container): recreate (changed: replicas)"), "{}", plan.stdout);
    let up = stack.provision(&["up"]).ok();
    assert!(up.stderr.contains("1 recreated"), "{}", up.stderr);
    let after = eventually(std::time::Duration::from_secs(30), "two replicas left", || Some(tasks()).filter(|t| t.len() == 2));
    assert!(after.is_subset(&before), "replicas were restarted: {before:?} → {after:?}");
}

#[test]
fn a_job_blocks_its_dependents_and_a_failing_one_fails_up_naming_it() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-job";
    let services = |code: u8| {
        format!(
            r#"
[services.migrate]
plugin = "container"
image = "redis:7-alpine"
entrypoint = ["sh", "-c"]
command = ["sleep 2; echo migrated; exit {code}"]
once = true

[services.app]
plugin = "container"
image = "redis:7-alpine"
command = ["redis-server", "--save", ""]
health = {{ redis = 6379 }}
after = {{ migrate = "completed" }}
"#
        )
    };
    let stack = swarm_stack(name, &services(3));
    let failed = stack.provision(&["up"]).failed();
    let message = failed.message();
    assert!(message.contains("service `migrate` failed") && message.contains("code 3"), "{message}");
    assert!(message.contains("migrated"), "the job's log is shown: {message}");
    let app = labeled("service", name, Some("app"));
    assert!(app.is_empty(), "the dependent was left behind: {app:?}");

    stack.project.write("stack.toml", &format!("{}\n{}", on_swarm(name), services(0)));
    let up = stack.provision(&["up", "--json"]).ok();
    let events: Vec<serde_json::Value> = up.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let at = |service: &str, phase: &str| {
        events
            .iter()
            .position(|e| e["service"] == service && e["phase"].as_str().is_some_and(|p| p.starts_with(phase)))
            .unwrap_or_else(|| panic!("no {phase} of {service}: {events:?}"))
    };
    assert!(at("migrate", "ready") < at("app", "starting"), "app started before the job completed: {events:?}");
}

#[test]
fn a_service_on_an_internal_network_cannot_reach_outside_it() {
    needs_engine!();
    let _swarm = one_at_a_time();
    // Both checks run as jobs, on whichever node the scheduler picks: `up`
    // succeeds only if each exits 0. The registry on the host's docker0
    // address stands for "outside": every node reaches it.
    let stack = swarm_stack(
        "e2e-swarm-internal",
        r#"
[networks.back]
internal = true

[services.db]
plugin = "container"
image = "redis:7-alpine"
command = ["redis-server", "--save", ""]
health = { redis = 6379 }
networks = ["back"]

[services.inside]
plugin = "container"
image = "redis:7-alpine"
once = true
entrypoint = ["bash", "-c"]
command = ["redis-cli -h db ping | grep -q PONG && ! timeout 3 bash -c 'exec 3<>/dev/tcp/172.17.0.1/5000'"]
networks = ["back"]
after = { db = "ready" }

[services.outside]
plugin = "container"
image = "redis:7-alpine"
once = true
entrypoint = ["bash", "-c"]
command = ["timeout 3 bash -c 'exec 3<>/dev/tcp/172.17.0.1/5000'"]
"#,
    );
    stack.provision(&["up"]).ok();
    let internal = docker(&["network", "inspect", "e2e-swarm-internal_back", "--format", "{{.Driver}} {{.Internal}}"]);
    assert_eq!(internal.trim(), "overlay true");
}

#[test]
fn a_file_that_holds_a_secret_is_a_swarm_secret_and_other_files_are_configs() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-secret";
    let stack = swarm_stack(
        name,
        r#"
[services.db]
plugin = "postgres"
port = 0

[services.app]
plugin = "container"
image = "redis:7-alpine"
entrypoint = ["sh", "-c"]
command = ["cat /etc/app/db.url; echo; cat /etc/app/greeting; echo; exec redis-server --save ''"]
files = { "/etc/app/db.url" = "${db.url}", "/etc/app/greeting" = "hello" }
health = { redis = 6379 }
"#,
    );
    stack.provision(&["up"]).ok();
    let secrets = labeled("secret", name, Some("app"));
    let configs = labeled("config", name, Some("app"));
    assert_eq!((secrets.len(), configs.len()), (1, 1), "secrets {secrets:?}, configs {configs:?}");
    // A config's data can be read back through the API; a secret's cannot.
    assert_eq!(docker(&["config", "inspect", &configs[0], "--format", "{{printf \"%s\" .Spec.Data}}"]).trim(), "hello");
    assert!(!docker(&["secret", "inspect", &secrets[0]]).contains("postgres://"));
    // The task, wherever it runs, read both.
    let logs = eventually(std::time::Duration::from_secs(20), "the app's log", || {
        let logs = stack.provision(&["logs", "app"]).ok().stdout;
        logs.contains("hello").then_some(logs)
    });
    assert!(logs.contains("postgres://app:") && logs.contains("@db:5432/"), "{logs}");

    stack.provision(&["down", "-v"]).ok();
    assert_eq!((labeled("secret", name, None), labeled("config", name, None)), (vec![], vec![]));
}

#[test]
fn a_changed_env_rolls_the_service_in_place_and_plan_says_why() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-roll";
    let services = |greeting: &str| {
        format!(
            r#"
[services.web]
plugin = "container"
image = "redis:7-alpine"
command = ["redis-server", "--save", ""]
health = {{ redis = 6379 }}
env = {{ GREETING = "{greeting}" }}
"#
        )
    };
    let stack = swarm_stack(name, &services("hello"));
    stack.provision(&["up"]).ok();
    let before = labeled("service", name, Some("web"));
    assert_eq!(before.len(), 1);
    let env = |id: &str| docker(&["service", "inspect", id, "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}"]);
    assert!(env(&before[0]).contains("GREETING=hello"));

    stack.project.write("stack.toml", &format!("{}\n{}", on_swarm(name), services("bonjour")));
    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("web/server (container): recreate (changed: env)"), "{}", plan.stdout);
    let up = stack.provision(&["up"]).ok();
    assert!(up.stderr.contains("1 recreated"), "{}", up.stderr);

    // The same service, updated by the engine (a rolling update), now
    // running the new env and ready; its earlier task was shut down.
    assert_eq!(labeled("service", name, Some("web")), before, "the service was replaced, not updated");
    assert!(env(&before[0]).contains("GREETING=bonjour"), "{}", env(&before[0]));
    assert_eq!(docker(&["service", "inspect", &before[0], "--format", "{{.UpdateStatus.State}}"]).trim(), "completed");
    let tasks = docker(&["service", "ps", &before[0], "--format", "{{.DesiredState}}"]);
    assert_eq!(tasks.lines().filter(|s| *s == "Running").count(), 1, "{tasks}");
    assert!(tasks.lines().any(|s| s == "Shutdown"), "{tasks}");
    assert!(stack.provision(&["up"]).ok().stderr.contains("0 created, 0 recreated, 1 kept"));
}

#[test]
fn the_rails_example_processes_a_job_posted_through_nginx_on_the_swarm() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-rails";
    let stack = crate::rails::rails_stack(name);
    let path = stack.project.path().join("stack.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(&format!("[stack]\nname = \"{name}\"\n"), &on_swarm(name), 1)).unwrap();
    stack.provision(&["up"]).ok();

    let token = crate::rails::enqueue(stack.host_port("proxy"));
    eventually(std::time::Duration::from_secs(20), "the job's row in postgres", || {
        let sql = format!("select count(*) from job_runs where token = '{token}'");
        let run = stack.provision(&["exec", "db", "--", "psql", "-U", "app", "-d", "app_development", "-tAc", &sql]).ok();
        (run.stdout.trim() == "1").then_some(())
    });
    // The exporters keep no data, publish nothing and run no hooks: the
    // scheduler is free to put them on the workers.
    let nodes: BTreeSet<String> = ["db", "cache", "proxy", "web", "worker", "metrics"].iter().flat_map(|s| nodes_of(name, s)).collect();
    assert!(nodes.len() >= 2, "everything on one node: {nodes:?}");

    // Its jobs' exited containers go too, so their volumes can.
    stack.provision(&["down", "-v"]).ok();
    assert_eq!(labeled("volume", name, None), Vec::<String>::new());
}

/// Starts a stopped worker node again when dropped, and waits until the
/// swarm has it back, pass or fail.
struct Restart(&'static str);

impl Drop for Restart {
    fn drop(&mut self) {
        docker(&["start", self.0]);
        let _ = std::panic::catch_unwind(|| {
            eventually(std::time::Duration::from_secs(60), "the worker back in the swarm", || {
                let status = docker(&["node", "inspect", self.0, "--format", "{{.Status.State}}"]);
                (status.trim() == "ready").then_some(())
            })
        });
    }
}

#[test]
fn replicas_of_a_lost_worker_run_again_on_the_other_nodes_without_another_up() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let name = "e2e-swarm-lost";
    let stack = swarm_stack(name, THREE_REPLICAS);
    stack.provision(&["up"]).ok();
    let services = labeled("service", name, Some("web"));
    assert_eq!(services.len(), 1, "{services:?}");
    // Node and state of each running task.
    let tasks = || running_tasks(&services[0], "{{.Node}} {{.CurrentState}}");
    let on = |node: &str, tasks: &[String]| tasks.iter().filter(|t| t.starts_with(&format!("{node} "))).count();
    let placed = tasks();
    let lost = WORKERS.into_iter().max_by_key(|w| on(w, &placed)).unwrap();
    assert!(on(lost, &placed) > 0, "no replica on a worker: {placed:?}");

    let _restart = Restart(lost);
    docker(&["stop", "-t", "0", lost]);
    let started = std::time::Instant::now();
    eventually(std::time::Duration::from_secs(90), "the lost worker's replicas running elsewhere", || {
        let now = tasks();
        (now.len() == 3 && on(lost, &now) == 0 && now.iter().all(|t| t.contains(" Running "))).then_some(())
    });
    eprintln!("replicas of {lost} running and healthy elsewhere after {:?}", started.elapsed());
    // The stack is ready as it is: `up` finds nothing to do.
    let up = stack.provision(&["up"]).ok();
    assert!(up.stderr.contains("0 created, 0 recreated, 1 kept"), "{}", up.stderr);
}

#[test]
fn a_service_whose_tasks_keep_failing_fails_up_with_the_engines_word_on_them() {
    needs_engine!();
    let _swarm = one_at_a_time();
    let stack = swarm_stack(
        "e2e-swarm-failing",
        r#"
[services.web]
plugin = "container"
image = "redis:7-alpine"
entrypoint = ["sh", "-c"]
command = ["echo cannot start; exit 4"]
health = { redis = 6379 }
"#,
    );
    let message = stack.provision(&["up", "--timeout", "15"]).failed().message();
    assert!(message.contains("service `web` failed") && message.contains("not ready after"), "{message}");
    assert!(message.contains("non-zero exit (4)"), "the task's error is shown: {message}");
    assert!(message.contains("cannot start"), "its log is shown: {message}");
}
