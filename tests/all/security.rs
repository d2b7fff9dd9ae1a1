//! The sandbox promise on a real engine: what a plan without `allow` can
//! make the host do, and what an `up` cut short leaves behind. The plugin is
//! tests/plugins/mischief, built with the author kit; plan-level refusals are
//! in sandbox.rs.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    docker::CACHE,
    support::{SecondEngine, Stack, docker, needs_engine, provision_cmd, repo_root, shared_cache},
};

/// A stack of one mischief service `x` with `config`, as project `name`.
fn mischief(name: &str, config: &str) -> Stack {
    let stack = Stack::new(name, &format!("[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{config}\n"));
    stack.project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    stack
}

/// Runs the redis stand-in's image without redis.
const IDLE: &str = "command = [\"sleep\", \"infinity\"]\n";

/// `provision up` started in the background.
fn spawn_up(stack: &Stack) -> std::process::Child {
    provision_cmd(&shared_cache())
        .current_dir(stack.project.path())
        .env("PROVISION_IMAGES", repo_root().join("tests/images/standins.toml"))
        .args(["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What the engine has labeled with the project: containers, networks, volumes.
fn leftovers(project: &str) -> String {
    let filter = format!("label=dev.provision.project={project}");
    ["ps -aq", "network ls -q", "volume ls -q"]
        .iter()
        .map(|list| {
            let mut args: Vec<&str> = list.split(' ').collect();
            args.extend(["--filter", &filter]);
            docker(&args)
        })
        .collect::<String>()
        .trim()
        .to_string()
}

#[test]
fn a_bind_of_the_project_shows_neither_its_keys_nor_git_and_labels_hold_no_secrets() {
    needs_engine!();
    let stack = mischief("e2e-sec-bind", &format!("{IDLE}bind = \".\"\nenv_value = \"s3cr3t-value\""));
    std::fs::create_dir_all(stack.project.path().join(".git/hooks")).unwrap();
    stack.provision(&["up"]).ok();

    let ls = stack.provision(&["exec", "x", "--", "ls", "-A", "/mnt"]).ok();
    assert!(ls.stdout.contains("stack.toml"), "the project is there: {}", ls.stdout);
    for hidden in [".provision", ".git"] {
        let inside = stack.provision(&["exec", "x", "--", "ls", "-A", &format!("/mnt/{hidden}")]).ok();
        assert_eq!(inside.stdout.trim(), "", "{hidden} is covered");
    }
    let key = stack.provision(&["exec", "x", "--", "cat", "/mnt/.provision/secret-key"]);
    assert_ne!(key.code, Some(0), "the secret key was readable: {}", key.stdout);
    let write = stack.provision(&["exec", "x", "--", "touch", "/mnt/owned"]);
    assert_ne!(write.code, Some(0), "a read-only bind was writable");
    assert!(!stack.project.path().join("owned").exists());

    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", "e2e-sec-bind_x_server"]);
    assert!(labels.contains("dev.provision.spec-hash"), "{labels}");
    assert!(!labels.contains("s3cr3t-value") && !labels.contains("dev.provision.spec\""), "labels copy the spec: {labels}");
}

#[test]
fn probe_output_is_kept_to_a_tail_and_every_wait_ends_at_the_timeout() {
    needs_engine!();
    // 2 MB of probe output: the error keeps its end.
    let stack = mischief("e2e-sec-flood", &format!("{IDLE}health = [\"sh\", \"-c\", \"yes provision | head -c 2000000; exit 1\"]"));
    let run = stack.provision(&["up", "--timeout", "6"]).failed();
    assert!(run.stderr.len() < 40_000, "the error is {} bytes", run.stderr.len());
    assert!(run.stderr.contains("earlier bytes cut"), "{}", &run.stderr[..run.stderr.len().min(3000)]);

    // A probe that never exits is cut at its own timeout; `up` at --timeout.
    stack.rewrite(&format!(
        "[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{IDLE}health = [\"sleep\", \"3600\"]\n"
    ));
    let started = Instant::now();
    let run = stack.provision(&["up", "--timeout", "5"]).failed();
    assert!(run.message().contains("not ready after 5s"), "{}", run.stderr);
    assert!(run.message().contains("did not answer within 3000 ms"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(60), "up outlived its timeout: {:?}", started.elapsed());

    // A hook that never exits.
    stack.rewrite(&format!(
        "[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{IDLE}hook = [\"sleep\", \"3600\"]\n"
    ));
    let run = stack.provision(&["up", "--timeout", "5"]).failed();
    assert!(run.message().contains("running hook `mischief`: it did not finish within the 5s of --timeout"), "{}", run.stderr);
}

/// Another service's volume holds its data (postgres's cluster): a plugin
/// mounts it only through a `uses` the user wrote; the user may share one.
#[test]
fn a_plugin_cannot_mount_another_services_volume_it_does_not_use() {
    let stack = Stack::new(
        "e2e-sec-borrow",
        &format!(
            "[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.db]\nplugin = \"postgres\"\n[services.x]\nplugin = \"mischief\"\n{IDLE}borrow_volume = \"db/data\"\n"
        ),
    );
    stack.project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    let refused = stack.provision(&["plan"]).failed();
    assert!(refused.message().contains("of service `db`, which it does not use"), "{}", refused.stderr);

    // Written by the user as a host-level option, the same mount is theirs to make.
    let shared = Stack::new(
        "e2e-sec-share",
        "[services.db]\nplugin = \"postgres\"\n[services.x]\nplugin = \"container\"\nimage = \"redis:7-alpine\"\nvolumes = [\"db/data:/pgdata:ro\"]\n",
    );
    shared.provision(&["plan"]).ok();
    let missing = Stack::new("e2e-sec-share2", "[services.x]\nplugin = \"container\"\nimage = \"redis:7-alpine\"\nvolumes = [\"db/data:/pgdata\"]\n");
    assert!(missing.provision(&["plan"]).failed().message().contains("service `db` declares no volume `data`"));
}

#[test]
fn a_volume_of_another_checkout_is_never_used_or_removed() {
    needs_engine!();
    let first = mischief("e2e-sec-twin", &format!("{IDLE}volume = \"data\""));
    first.provision(&["up"]).ok();
    first.provision(&["down"]).ok();
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", "name=e2e-sec-twin_x_data"]).trim(), "e2e-sec-twin_x_data");

    let second = mischief("e2e-sec-twin", &format!("{IDLE}volume = \"data\""));
    let run = second.provision(&["up"]).failed();
    let message = run.message();
    assert!(message.contains("volume `e2e-sec-twin_x_data` on the engine belongs to project"), "{message}");
    assert!(message.contains("nothing of it was used"), "{message}");
    second.provision(&["down", "-v"]).ok();
    assert_eq!(
        docker(&["volume", "ls", "-q", "--filter", "name=e2e-sec-twin_x_data"]).trim(),
        "e2e-sec-twin_x_data",
        "the first one's data survives"
    );
    drop(second);
    drop(first);
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", "name=e2e-sec-twin_x_data"]).trim(), "");
}

#[test]
fn a_network_setting_that_changed_is_refused_not_ignored() {
    needs_engine!();
    let stack = mischief("e2e-sec-net", &format!("{IDLE}network = \"back\""));
    stack.provision(&["up"]).ok();
    stack.rewrite(&format!(
        "[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{IDLE}network = \"back\"\ninternal = true\n"
    ));
    let run = stack.provision(&["up"]).failed();
    assert!(run.message().contains("network `e2e-sec-net_back` exists with internal = false, but the plan wants internal = true"), "{}", run.stderr);
}

/// A network made outside the stack, and a container on it, as another
/// project (or a developer by hand) would have them; removed when dropped.
struct Outside(&'static str);

impl Drop for Outside {
    fn drop(&mut self) {
        docker(&["rm", "-f", &format!("{}-peer", self.0)]);
        docker(&["network", "rm", self.0]);
    }
}

/// An external network may be another project's: it is joined only by a
/// service whose `networks` the user wrote names it, never made or removed
/// by the stack, and a plugin naming it (or its engine name) gets no way in.
#[test]
fn an_external_network_is_joined_only_where_the_user_names_it_and_never_made_or_removed() {
    needs_engine!();
    let _isolation = crate::support::NETWORK_ISOLATION.lock().unwrap_or_else(|p| p.into_inner());
    let outside = Outside("e2e-sec-outside");
    drop(Outside(outside.0));
    let declared = format!("[networks.shared]\nexternal = true\nname = \"{}\"\n", outside.0);
    let stack = mischief("e2e-sec-ext", &format!("{IDLE}networks = [\"shared\"]\n{declared}"));

    let missing = stack.provision(&["up"]).failed();
    assert!(missing.message().contains("and the engine has no network `e2e-sec-outside`; nothing was created"), "{}", missing.stderr);
    assert!(missing.message().contains("docker network create e2e-sec-outside"), "it says what to do: {}", missing.stderr);
    assert_eq!(leftovers("e2e-sec-ext"), "", "a failed up made nothing");

    docker(&["network", "create", outside.0]);
    let peer = format!("{}-peer", outside.0);
    docker(&["run", "-d", "--name", &peer, "--network", outside.0, "provision-standin/redis:7"]);
    stack.provision(&["up"]).ok();
    let ping = stack.provision(&["exec", "x", "--", "redis-cli", "-h", &peer, "ping"]).ok();
    assert_eq!(ping.stdout.trim(), "PONG", "the user's service reaches the outside container by name");

    // The plugin names the network itself, by the stack's name or by the
    // engine's: refused, and a network of the project's own, respectively.
    let header = "[plugins]\nmischief = { path = \"mischief.wasm\" }\n[services.x]\nplugin = \"mischief\"\n";
    stack.rewrite(&format!("{header}{IDLE}network = \"shared\"\n{declared}"));
    let refused = stack.provision(&["plan"]).failed();
    assert!(refused.message().contains("the plugin joins network `shared`, which the stack declares external"), "{}", refused.stderr);
    stack.rewrite(&format!("{header}{IDLE}network = \"{}\"\n{declared}", outside.0));
    stack.provision(&["up"]).ok();
    let joined = docker(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "e2e-sec-ext_x_server"]);
    assert_eq!(joined.split_whitespace().collect::<Vec<_>>(), ["e2e-sec-ext_e2e-sec-outside"], "{joined}");
    let ping = stack.provision(&["exec", "x", "--", "redis-cli", "-h", &peer, "ping"]);
    assert_ne!(ping.stdout.trim(), "PONG", "the plugin reached the outside network");

    stack.provision(&["down"]).ok();
    let kept = docker(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", outside.0]);
    assert_eq!(kept.trim(), peer, "down left the outside network and its container as they were");
}

#[test]
fn an_up_killed_before_ready_is_finished_by_the_next_not_kept() {
    needs_engine!();
    // Ready once /data/go exists: the first `up` waits there and is killed.
    let stack = mischief("e2e-sec-kill", &format!("{IDLE}volume = \"data\"\nhealth = [\"test\", \"-f\", \"/data/go\"]"));
    let mut up = spawn_up(&stack);
    let started = Instant::now();
    while docker(&["ps", "-q", "--filter", "name=e2e-sec-kill_x_server"]).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the container never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    up.kill().unwrap();
    up.wait().unwrap();

    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("x/server (container): recreate (its last lifecycle did not finish)"), "{}", plan.stdout);
    docker(&["exec", "e2e-sec-kill_x_server", "touch", "/data/go"]);
    let run = stack.provision(&["up"]).ok();
    assert!(run.stderr.contains("0 created, 1 recreated, 0 kept"), "{}", run.stderr);
    let run = stack.provision(&["up"]).ok();
    assert!(run.stderr.contains("0 created, 0 recreated, 1 kept"), "{}", run.stderr);
}

#[test]
fn ctrl_c_at_any_moment_then_down_leaves_nothing() {
    needs_engine!();
    for delay_ms in [50, 150, 400, 1000] {
        let stack = mischief("e2e-sec-intr", &format!("{IDLE}volume = \"data\"\nnetwork = \"back\""));
        let up = spawn_up(&stack);
        std::thread::sleep(Duration::from_millis(delay_ms));
        std::process::Command::new("kill").args(["-INT", &up.id().to_string()]).status().unwrap();
        let status = up.wait_with_output().unwrap().status;
        assert!(matches!(status.code(), Some(0 | 130)), "after {delay_ms} ms: {status:?}");
        stack.provision(&["down", "-v"]).ok();
        assert_eq!(leftovers("e2e-sec-intr"), "", "after Ctrl-C at {delay_ms} ms, down -v left these");
    }
}

#[test]
fn an_engine_killed_mid_up_converges_on_the_next_up_without_duplicates_or_lost_data() {
    needs_engine!();
    let mut engine = SecondEngine::start();
    engine.load("provision-standin/redis:7");
    let project = crate::support::Project::new(&format!(
        "[stack]\nname = \"e2e-engine-crash\"\n[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{IDLE}volume = \"data\"\nhealth = [\"test\", \"-f\", \"/data/go\"]\n"
    ));
    project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    let host = engine.host.clone();
    let on_engine = [("DOCKER_HOST", host.as_str())];

    // `up` waits for x to be ready; the engine dies under it.
    let up = provision_cmd(&shared_cache())
        .current_dir(project.path())
        .env("DOCKER_HOST", &engine.host)
        .args(["up", "--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while String::from_utf8_lossy(&engine.docker(&["ps", "-q", "--filter", "name=e2e-engine-crash_x_server"]).stdout).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "x never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(engine.docker(&["exec", "e2e-engine-crash_x_server", "touch", "/data/keep-me"]).status.success());
    engine.kill();
    let failed = up.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost the connection to the container engine"), "{stderr}");

    engine.restart();
    let volume = "e2e-engine-crash_x_data:/data";
    assert!(engine.docker(&["run", "--rm", "-v", volume, "provision-standin/redis:7", "touch", "/data/go"]).status.success());
    let run = project.provision_with_env(&["up", "--timeout", "60"], &on_engine).ok();
    assert!(run.stderr.contains("0 created, 1 recreated, 0 kept"), "the half-done container is redone: {}", run.stderr);

    let all = engine.docker(&["ps", "-aq", "--filter", "label=dev.provision.project=e2e-engine-crash"]);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 1, "no duplicate container");
    project.provision_with_env(&["exec", "x", "--", "test", "-f", "/data/keep-me"], &on_engine).ok();
    project.provision_with_env(&["down", "-v"], &on_engine).ok();
}

#[test]
fn one_change_of_a_project_at_a_time_and_the_second_is_told_why() {
    needs_engine!();
    // The first `up` waits for /data/go; a second one meanwhile, and a
    // `down`, are refused naming the first, and leave nothing doubled.
    let stack = mischief("e2e-sec-lock", &format!("{IDLE}volume = \"data\"\nhealth = [\"test\", \"-f\", \"/data/go\"]"));
    let mut first = spawn_up(&stack);
    let started = Instant::now();
    while docker(&["ps", "-q", "--filter", "name=e2e-sec-lock_x_server"]).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the first up never started its container");
        std::thread::sleep(Duration::from_millis(100));
    }
    for command in [&["up"][..], &["down"]] {
        let second = stack.provision(command).failed();
        assert!(
            second.message().contains("project `e2e-sec-lock` is being changed by another provision (`provision up`, process"),
            "{}",
            second.stderr
        );
    }
    docker(&["exec", "e2e-sec-lock_x_server", "touch", "/data/go"]);
    assert!(first.wait().unwrap().success());
    let networks = docker(&["network", "ls", "-q", "--filter", "name=e2e-sec-lock_default"]);
    assert_eq!(networks.lines().count(), 1, "one network of the name: {networks}");
    stack.provision(&["up"]).ok();
}

#[test]
fn a_label_read_from_the_engine_is_never_used_as_a_path() {
    needs_engine!();
    // A container anyone could have made, claiming to be a dead run's
    // project `../../../x` in folder OUTSIDE/inner: gc used to remove
    // OUTSIDE/x.json.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("x.json");
    std::fs::write(&victim, "not provision's").unwrap();
    let inner = outside.path().join("inner");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let labels = [
        "dev.provision.project=../../../x".to_string(),
        format!("dev.provision.project-dir={}", inner.display()),
        "dev.provision.ephemeral=project".into(),
        format!("dev.provision.owner-host={host}"),
        "dev.provision.owner-pid=4194300".into(),
        "dev.provision.owner-started=1".into(),
    ];
    let mut args = vec!["create", "--name", "e2e-sec-forged"];
    for label in &labels {
        args.extend(["--label", label]);
    }
    args.extend(["provision-standin/redis:7", "true"]);
    docker(&args);
    let gc = crate::support::Project::new("").provision(&["gc"]).ok();
    assert!(docker(&["ps", "-aq", "--filter", "name=e2e-sec-forged"]).trim().is_empty(), "the dead run's container goes: {}", gc.stderr);
    assert!(victim.exists(), "gc removed a file outside any state folder");
}

#[test]
fn a_container_a_killed_up_created_late_is_replaced_not_a_conflict() {
    needs_engine!();
    // While `up` builds the image (a few seconds), a container of the name
    // it is about to create appears, labelled as this project's: what the
    // engine does when the create of a killed `up` lands after it is gone.
    let stack = mischief("e2e-sec-late", "build = \"ctx\"\ncommand = [\"sleep\", \"infinity\"]");
    std::fs::create_dir_all(stack.project.path().join("ctx")).unwrap();
    let nonce = format!("{:?}", Instant::now());
    stack.project.write("ctx/Dockerfile", &format!("FROM provision-standin/redis:7\nRUN sleep 4 # {nonce}\n"));
    let up = provision_cmd(&shared_cache())
        .current_dir(stack.project.path())
        .env("PROVISION_IMAGES", repo_root().join("tests/images/standins.toml"))
        .args(["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while docker(&["network", "ls", "-q", "--filter", "name=e2e-sec-late_default"]).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "up never made its network");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = stack.project.path().canonicalize().unwrap();
    let (project, folder) = ("dev.provision.project=e2e-sec-late".to_string(), format!("dev.provision.project-dir={}", dir.display()));
    docker(&["create", "--name", "e2e-sec-late_x_server", "--label", &project, "--label", &folder, "provision-standin/redis:7", "true"]);
    let out = up.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = docker(&["inspect", "-f", "{{index .Config.Labels \"dev.provision.spec-hash\"}}", "e2e-sec-late_x_server"]);
    assert!(!hash.trim().is_empty(), "the container is the planned one, not the leftover");
}

#[test]
fn two_checkouts_of_one_stack_do_not_touch_each_other() {
    needs_engine!();
    let first = Stack::new("e2e-twin", CACHE);
    let second = Stack::new("e2e-twin", CACHE);
    first.provision(&["up"]).ok();
    let id = first.container_id("cache");

    let run = second.provision(&["up"]).failed();
    assert!(run.message().contains("project `e2e-twin` is already running from"), "{}", run.stderr);
    assert!(run.message().contains("-p NAME"), "{}", run.stderr);

    second.provision(&["up", "-p", "e2e-twin-2"]).ok();
    assert_eq!(first.container_id("cache"), id, "the first checkout's container is untouched");
    second.provision(&["down", "-v", "-p", "e2e-twin-2"]).ok();
    assert_eq!(first.container_id("cache"), id);
}

#[test]
fn down_in_one_checkout_does_not_remove_the_other() {
    needs_engine!();
    let first = Stack::new("e2e-twin-down", CACHE);
    let second = Stack::new("e2e-twin-down", CACHE);
    first.provision(&["up"]).ok();
    let run = second.provision(&["down"]).failed();
    assert!(run.message().contains("project `e2e-twin-down` was brought up from"), "{}", run.stderr);
    assert!(!first.ps().is_empty(), "the other checkout's containers are still there");
}
