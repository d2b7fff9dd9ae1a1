//! End to end on a real Docker engine, with the stand-in images from
//! tests/images (scripts/test builds them). Without an engine these fail with
//! provision's one-line message; they are never skipped.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::support::{Stack, docker, needs_engine};

pub(crate) const DB: &str = r#"
[services.db]
plugin = "postgres"
database = "shop"
user = "shopper"
port = 0
extensions = ["uuid-ossp", "pgcrypto", "pg_stat_statements", "unaccent", "pg_trgm"]
tuning = { shared_buffers = "256MB", effective_cache_size = "1GB", max_connections = 150 }
"#;

pub(crate) const CACHE: &str = r#"
[services.cache]
plugin = "redis"
port = 0
maxmemory = "64mb"
maxmemory_policy = "allkeys-lru"
save = ["900 1", "300 10"]
"#;

fn psql(stack: &Stack, sql: &str) -> String {
    let run = stack.provision(&["exec", "db", "--", "psql", "-U", "shopper", "-d", "shop", "-tAc", sql]).ok();
    run.stdout.trim().to_string()
}

fn redis(port: u16, command: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(format!("{command}\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn up_gives_the_configured_database_and_cache() {
    needs_engine!();
    let stack = Stack::new("e2e-config", &format!("{DB}{CACHE}"));
    stack.provision(&["up"]).ok();

    // Through `exec`: database, user, extensions, tuning.
    assert_eq!(psql(&stack, "select current_database() || ',' || current_user"), "shop,shopper");
    let extensions = psql(&stack, "select string_agg(extname, ',' order by extname) from pg_extension");
    assert_eq!(extensions, "pg_stat_statements,pg_trgm,pgcrypto,plpgsql,unaccent,uuid-ossp");
    assert_eq!(psql(&stack, "show shared_buffers"), "256MB");
    assert_eq!(psql(&stack, "show effective_cache_size"), "1GB");
    assert_eq!(psql(&stack, "show max_connections"), "150");
    assert_eq!(psql(&stack, "select count(*) >= 0 from pg_stat_statements"), "t", "pg_stat_statements is preloaded");

    // From the host, on the published port, with the generated password.
    let state = stack.provision(&["plan", "--json", "--show-secrets"]).ok().json();
    let password = state["services"][0]["plan"]["containers"][0]["env"]["POSTGRES_PASSWORD"].as_str().unwrap().to_string();
    let port = stack.host_port("db").to_string();
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "shopper", "-d", "shop", "-tAc", "select current_user || '@' || current_database()"])
        .env("PGPASSWORD", &password)
        .output()
        .expect("psql on the host (scripts/test installs postgresql-client)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "shopper@shop", "{}", String::from_utf8_lossy(&out.stderr));

    let cache = stack.host_port("cache");
    assert_eq!(redis(cache, "PING"), "+PONG\r\n");
    assert!(redis(cache, "CONFIG GET maxmemory").contains("67108864"));
    assert!(redis(cache, "CONFIG GET maxmemory-policy").contains("allkeys-lru"));
    assert!(redis(cache, "CONFIG GET save").contains("900 1 300 10"));

    // The engine's healthcheck is set too, so `docker ps` shows health.
    let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", "e2e-config_db_server"]);
    assert!(["healthy", "starting"].contains(&health.trim()), "{health}");
}

#[test]
fn re_up_keeps_everything_and_a_change_recreates_only_its_service() {
    needs_engine!();
    let stack = Stack::new("e2e-idem", &format!("{DB}{CACHE}"));
    stack.provision(&["up"]).ok();
    let (db, cache) = (stack.container_id("db"), stack.container_id("cache"));

    let run = stack.provision(&["up"]).ok();
    assert!(run.stderr.contains("0 created, 0 recreated, 2 kept"), "{}", run.stderr);
    assert_eq!((stack.container_id("db"), stack.container_id("cache")), (db.clone(), cache.clone()));

    stack.rewrite(&format!("{DB}{}", CACHE.replace("64mb", "128mb")));
    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("cache/server (container): recreate (changed: command)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("db/server (container): keep"), "{}", plan.stdout);

    let run = stack.provision(&["up"]).ok();
    assert!(run.stderr.contains("0 created, 1 recreated, 1 kept"), "{}", run.stderr);
    assert_eq!(stack.container_id("db"), db);
    assert_ne!(stack.container_id("cache"), cache);
    assert!(redis(stack.host_port("cache"), "CONFIG GET maxmemory").contains("134217728"));
}

#[test]
fn data_survives_down_and_up_and_down_v_removes_it() {
    needs_engine!();
    let stack = Stack::new("e2e-data", DB);
    stack.provision(&["up"]).ok();
    psql(&stack, "create table kept (v text); insert into kept values ('still here')");
    stack.provision(&["down"]).ok();
    assert!(stack.ps().is_empty());
    assert!(docker(&["volume", "ls", "-q"]).contains("e2e-data_db_data"));

    stack.provision(&["up"]).ok();
    assert_eq!(psql(&stack, "select v from kept"), "still here");

    stack.provision(&["down", "-v"]).ok();
    assert!(!docker(&["volume", "ls", "-q"]).contains("e2e-data_db_data"));
    assert!(!docker(&["network", "ls"]).contains("e2e-data_default"));
}

/// Every container is created while what it waits for comes up, and
/// started only once that is ready.
#[test]
fn a_dependent_is_created_ahead_but_started_only_once_its_dependency_is_ready() {
    needs_engine!();
    let slow = "[services.slow]\nplugin = \"container\"\nimage = \"provision-standin/redis:7\"\nvolumes = [\"./out:/out\"]\n\
        command = [\"sh\", \"-c\", \"sleep 2; touch /out/ready; sleep infinity\"]\nhealth = { exec = \"test -f /out/ready\", interval = \"200ms\" }\n";
    let dependent = "[services.dependent]\nplugin = \"container\"\nimage = \"provision-standin/redis:7\"\nvolumes = [\"./out:/out\"]\n\
        command = [\"sh\", \"-c\", \"if [ -f /out/ready ]; then echo after; else echo early; fi > /out/dependent; sleep infinity\"]\n\
        after = { slow = \"ready\" }\n";
    let stack = Stack::new("e2e-gate", &format!("{slow}{dependent}"));
    std::fs::create_dir(stack.project.path().join("out")).unwrap();
    let mut up = crate::support::provision_cmd(&stack.project.cache)
        .current_dir(stack.project.path())
        .env("PROVISION_IMAGES", crate::support::repo_root().join("tests/images/standins.toml"))
        .arg("up")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    while up.try_wait().unwrap().is_none() {
        let state = docker(&["ps", "-a", "--filter", "name=e2e-gate_dependent_server", "--format", "{{.State}}"]);
        seen.push(state.trim().to_string());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(up.wait().unwrap().success());
    assert!(seen.iter().any(|s| s == "created"), "created ahead, while `slow` came up: {seen:?}");
    let started = std::fs::read_to_string(stack.project.path().join("out/dependent")).unwrap();
    assert_eq!(started.trim(), "after", "started only once `slow` was ready");
}

/// `down -v` kills at once what leaves nothing behind, but a container that
/// writes to the host (a writable bind) still gets its SIGTERM and time to
/// finish.
#[test]
fn down_v_still_stops_gracefully_what_writes_to_the_host() {
    needs_engine!();
    let writer = "[services.writer]\nplugin = \"container\"\nimage = \"provision-standin/redis:7\"\nvolumes = [\"./out:/out\"]\n\
        command = [\"sh\", \"-c\", \"trap 'echo finished > /out/bye; exit 0' TERM; while true; do sleep 0.1; done\"]\n";
    let stack = Stack::new("e2e-graceful", &format!("{writer}{CACHE}"));
    std::fs::create_dir(stack.project.path().join("out")).unwrap();
    stack.provision(&["up"]).ok();
    stack.provision(&["down", "-v"]).ok();
    let bye = std::fs::read_to_string(stack.project.path().join("out/bye")).unwrap_or_default();
    assert_eq!(bye.trim(), "finished", "the writer was stopped, not killed");
    assert!(stack.ps().is_empty());
}

#[test]
fn a_container_that_exits_during_start_fails_up_with_its_log_and_is_kept() {
    needs_engine!();
    // The redis image cannot run `postgres`: the container exits at once.
    let stack = Stack::new("e2e-crash", "[services.db]\nplugin = \"postgres\"\nport = 0\nimage = \"provision-standin/redis:7\"\n");
    let run = stack.provision(&["up", "--timeout", "60"]).failed();
    let message = run.message();
    assert!(message.contains("service `db` failed while waiting for `server` to be ready: its container exited"), "{message}");
    assert!(message.contains("last lines of its log"), "{message}");
    assert!(message.contains("postgres"), "the log tail shows why: {message}");
    let state = docker(&["inspect", "-f", "{{.State.Status}}", "e2e-crash_db_server"]);
    assert_eq!(state.trim(), "exited", "the failed container is kept for inspection");
}

#[test]
fn a_taken_host_port_is_reported_before_anything_is_created() {
    needs_engine!();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stack = Stack::new("e2e-port", &format!("{CACHE}\n[services.db]\nplugin = \"postgres\"\nport = {port}\n"));
    let run = stack.provision(&["up"]).failed();
    assert!(
        run.message().contains(&format!("service `db` wants host port {port}, which is already in use on 127.0.0.1; nothing was created")),
        "{}",
        run.stderr
    );
    assert!(stack.ps().is_empty(), "nothing was created");
    drop(listener);
}

#[test]
fn interrupting_up_leaves_nothing_that_down_does_not_remove() {
    needs_engine!();
    let stack = Stack::new("e2e-sigint", &format!("{DB}{CACHE}"));
    let images = crate::support::repo_root().join("tests/images/standins.toml");
    let mut child = crate::support::provision_cmd(&std::env::temp_dir())
        .current_dir(stack.project.path())
        .args(["up", "--images", images.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt as soon as the first container exists.
    let started = Instant::now();
    while docker(&["ps", "-aq", "--filter", "label=dev.provision.project=e2e-sigint"]).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "up never created a container");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());

    stack.provision(&["down", "-v"]).ok();
    let label = "label=dev.provision.project=e2e-sigint";
    assert_eq!(docker(&["ps", "-aq", "--filter", label]).trim(), "", "containers left");
    assert_eq!(docker(&["network", "ls", "-q", "--filter", label]).trim(), "", "networks left");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", label]).trim(), "", "volumes left");
}

/// A stack with the `app` test plugin (tests/plugins/app), which needs a
/// database, next to a cache.
fn app_stack(name: &str, app: &str) -> Stack {
    let stack = Stack::new(name, &format!("[plugins]\napp = {{ path = \"app.wasm\" }}\n{DB}{CACHE}\n[services.web]\nplugin = \"app\"\n{app}"));
    stack.project.add_plugin("app", provision_test_artifacts::APP);
    stack
}

/// Keeps a container of the redis stand-in running without redis.
const IDLE: &str = "image = \"provision-standin/redis:7\"\ncommand = [\"sleep\", \"infinity\"]\n";

#[test]
fn tasks_run_to_completion_first_and_files_are_placed_before_start() {
    needs_engine!();
    let marker = "task = [\"sh\", \"-c\", \"echo migrated\"]\ngreeting = \"hello from the plan\"\n";
    let stack = app_stack("e2e-task", &format!("{IDLE}{marker}"));
    let run = stack.provision(&["up", "--json"]).ok();
    let events: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let at = |phase: &str| {
        events.iter().position(|e| e["service"] == "web" && e["phase"] == phase).unwrap_or_else(|| panic!("no {phase} event: {}", run.stdout))
    };
    assert!(at("task") < at("starting"), "the task ran before the server started");
    let logs = stack.provision(&["logs", "web"]).ok();
    assert!(logs.stdout.contains("web/migrate | migrated"), "{}", logs.stdout);
    let file = stack.provision(&["exec", "web", "--", "cat", "/etc/app/greeting"]).ok();
    assert_eq!(file.stdout, "hello from the plan");

    // A task that fails stops its service: the server (created ahead) never starts, and is removed.
    stack.rewrite(&format!("[plugins]\napp = {{ path = \"app.wasm\" }}\n{DB}{CACHE}\n[services.web]\nplugin = \"app\"\n{IDLE}task = [\"sh\", \"-c\", \"echo no database; exit 3\"]\n"));
    let run = stack.provision(&["up"]).failed();
    let message = run.message();
    assert!(message.contains("service `web` failed while running task `migrate`: it exited with code 3"), "{message}");
    assert!(message.contains("| no database"), "{message}");
    let web: Vec<_> = stack.ps().into_iter().filter(|r| r["service"] == "web").map(|r| r["container"].clone()).collect();
    assert_eq!(web, ["migrate"], "only the failed task is kept, for inspection");
}

#[test]
fn services_removed_from_the_stack_are_removed_from_the_engine() {
    needs_engine!();
    let stack = app_stack("e2e-orphan", IDLE);
    stack.provision(&["up"]).ok();
    assert_eq!(stack.ps().len(), 3);
    stack.rewrite(&format!("{DB}{CACHE}"));
    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("e2e-orphan_web_server: remove (no longer in the stack)"), "{}", plan.stdout);
    let run = stack.provision(&["up"]).ok();
    assert!(run.stderr.contains("2 kept, 1 removed"), "{}", run.stderr);
    let services: Vec<String> = stack.ps().iter().map(|r| r["service"].as_str().unwrap().to_string()).collect();
    assert_eq!(services, ["cache", "db"]);
}

#[test]
fn up_writes_the_lock_and_up_locked_refuses_a_changed_image_before_creating_anything() {
    needs_engine!();
    let stack = Stack::new("e2e-lock", CACHE);
    let run = stack.provision(&["up"]).ok();
    assert!(run.stderr.contains("wrote") && run.stderr.contains("stack.lock"), "{}", run.stderr);
    let path = stack.project.path().join("stack.lock");
    let lock = std::fs::read_to_string(&path).unwrap();
    assert!(lock.contains("reference = \"redis:7-alpine\"") && lock.contains("substitute = \"provision-standin/redis:7\""), "{lock}");
    stack.provision(&["down"]).ok();

    stack.provision(&["up", "--locked"]).ok();
    stack.provision(&["down"]).ok();

    let digest = lock.lines().find_map(|l| l.strip_prefix("digest = \"")).unwrap().trim_end_matches('"').to_string();
    std::fs::write(&path, lock.replace(&digest, "sha256:0000")).unwrap();
    let run = stack.provision(&["up", "--locked"]).failed();
    assert!(run.message().contains("image redis:7-alpine is locked at sha256:0000, but the engine has"), "{}", run.stderr);
    assert!(stack.ps().is_empty(), "nothing was created");
}

#[test]
fn images_are_built_from_the_context_rebuilt_only_when_their_inputs_change() {
    needs_engine!();
    // Built images outlive the project (they are keyed by their inputs):
    // start from none, so this run really builds.
    for image in docker(&["images", "-q", "provision-build/e2e-build"]).lines() {
        docker(&["rmi", "-f", image]);
    }
    let stack = app_stack("e2e-build", "build = \"web\"\ncommand = [\"sleep\", \"infinity\"]\n");
    let ctx = stack.project.path().join("web");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM provision-standin/redis:7\nARG GREETING\nCOPY . /app/\nRUN echo \"$GREETING\" > /app/arg.txt\n")
        .unwrap();
    std::fs::write(ctx.join("greeting.txt"), "one").unwrap();
    std::fs::write(ctx.join("secret.env"), "TOKEN=do-not-ship").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.env\n").unwrap();

    let run = stack.provision(&["up", "--json"]).ok();
    assert!(run.stdout.contains("\"phase\":\"building\""), "build output streams as events: {}", run.stdout);
    let cat = |file: &str| stack.provision(&["exec", "web", "--", "cat", file]).stdout;
    assert_eq!(cat("/app/greeting.txt"), "one");
    assert_eq!(cat("/app/arg.txt").trim(), "built", "build args reach the build");
    assert!(stack.provision(&["exec", "web", "--", "ls", "/app"]).ok().stdout.lines().all(|f| f != "secret.env"), ".dockerignore is honoured");
    let lock = std::fs::read_to_string(stack.project.path().join("stack.lock")).unwrap();
    assert!(lock.contains("reference = \"build:web/server\"") && lock.contains("digest = \"inputs:sha256:"), "{lock}");

    // Unchanged inputs (an ignored file changing does not count): no build, nothing recreated.
    std::fs::write(ctx.join("secret.env"), "TOKEN=changed").unwrap();
    let id = stack.container_id("web");
    let run = stack.provision(&["up", "--json"]).ok();
    assert!(!run.stdout.contains("\"phase\":\"building\""), "{}", run.stdout);
    assert_eq!(stack.container_id("web"), id);

    // A changed input: rebuilt and recreated, and `plan` said why first.
    std::fs::write(ctx.join("greeting.txt"), "two").unwrap();
    let plan = stack.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("web/server (container): recreate (changed: image)"), "{}", plan.stdout);
    stack.provision(&["up"]).ok();
    assert_ne!(stack.container_id("web"), id);
    assert_eq!(cat("/app/greeting.txt"), "two");
}

#[test]
fn a_dump_piped_through_exec_restores_and_exit_codes_pass_through() {
    needs_engine!();
    let stack = Stack::new("e2e-exec", DB);
    stack.provision(&["up"]).ok();
    let dump = b"CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (2), (3);\n";
    let run = stack.provision_input(&["exec", "db", "--", "psql", "-U", "shopper", "-d", "shop", "-v", "ON_ERROR_STOP=1"], dump).ok();
    assert!(run.stdout.contains("INSERT 0 3"), "{}", run.stdout);
    assert_eq!(psql(&stack, "SELECT sum(x) FROM t"), "6", "the piped dump was restored");

    let run = stack.provision(&["exec", "db", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(run.code, Some(7), "the command's exit code is provision's");
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("out\n", "err\n"), "without a TTY the streams stay apart");

    let run = stack.provision(&["exec", "-t", "db", "--", "tty"]).ok();
    assert!(run.stdout.starts_with("/dev/pts/"), "-t allocates a terminal: {:?}", run.stdout);
}

#[test]
fn env_hands_a_shell_the_addresses_of_the_running_services() {
    needs_engine!();
    let stack = Stack::new("e2e-env", &format!("{DB}{CACHE}"));
    stack.provision(&["up"]).ok();
    let env = stack.provision(&["env"]).ok().stdout;
    let psql = std::process::Command::new("sh").arg("-c").arg(format!("{env}\npsql \"$DB_URL\" -tAc 'SELECT 40 + 2'")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "42", "{env}\n{}", String::from_utf8_lossy(&psql.stderr));

    let vars = stack.provision(&["env", "--format", "json", "--env-prefix", "T_"]).ok().json();
    let port: u16 = vars["T_CACHE_PORT"].as_str().unwrap().parse().unwrap();
    assert_eq!(vars["T_CACHE_HOST"], "127.0.0.1");
    assert_eq!(vars["T_CACHE_URL"], format!("redis://127.0.0.1:{port}/0"));
    assert!(redis(port, "PING").contains("PONG"));
    assert_eq!(stack.provision(&["port", "cache"]).ok().stdout.trim(), format!("127.0.0.1:{port}"));
    let db_port = vars["T_DB_PORT"].as_str().unwrap();
    assert_eq!(stack.provision(&["port", "db", "5432"]).ok().stdout.trim(), format!("127.0.0.1:{db_port}"));
    let only_db = stack.provision(&["env", "--format", "dotenv", "db"]).ok().stdout;
    assert!(only_db.lines().all(|l| l.starts_with("DB_")) && only_db.contains("DB_PASSWORD='"), "{only_db}");
}

/// Where the host cannot reach the engine's bridge (Docker Desktop, rootless
/// Docker, an engine on another machine), readiness is asked through the
/// published ports, or from inside the container by exec; forced here with
/// PROVISION_PROBE_VIA. Every kind of probe comes ready either way, and a
/// probe that never passes says which way it went.
#[test]
fn readiness_is_seen_without_the_bridge_through_published_ports_or_exec() {
    needs_engine!();
    let web = "[services.web]\nplugin = \"container\"\nimage = \"nginx:1.25-alpine\"\nports = [\"0:80\"]\nhealth = { http = \"/\" }\n";
    let hidden = "[services.hidden]\nplugin = \"container\"\nimage = \"nginx:1.25-alpine\"\nports = [80]\nhealth = { tcp = 80 }\n";
    let never = "[services.never]\nplugin = \"container\"\nimage = \"redis:7-alpine\"\ncommand = [\"sleep\", \"infinity\"]\nports = [\"0:7000\"]\nhealth = { tcp = 7000, retries = 1 }\n";
    for via in ["published", "exec"] {
        let stack = Stack::new(&format!("reach-{via}"), &format!("{DB}{CACHE}{web}{hidden}"));
        let up = stack.provision_env(&["up", "--json"], &[("PROVISION_PROBE_VIA", via)]).ok();
        let events: Vec<serde_json::Value> = up.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        for service in ["db", "cache", "web", "hidden"] {
            assert!(events.iter().any(|e| e["service"] == service && e["phase"] == "ready"), "{via}: {service} not ready:\n{}", up.stdout);
        }
        stack.rewrite(never);
        let failed = stack.provision_env(&["up", "--timeout", "4"], &[("PROVISION_PROBE_VIA", via)]).failed();
        let expected = if via == "published" { "connect 127.0.0.1:" } else { "exit " };
        assert!(failed.message().contains(&format!("last probe output: {expected}")), "{via}:\n{}", failed.message());
    }
}

/// A build goes on beside the services that do not need it: they are ready
/// before it ends. A failed build fails only the services built from it,
/// naming them and the build's error.
#[test]
fn builds_overlap_the_start_of_services_that_do_not_need_them() {
    needs_engine!();
    let nonce = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let services = format!("{CACHE}\n[services.slow]\nplugin = \"container\"\nbuild = \"slow\"\ncommand = [\"sleep\", \"infinity\"]\n");
    let stack = Stack::new("e2e-overlap", &services);
    let ctx = stack.project.path().join("slow");
    std::fs::create_dir_all(&ctx).unwrap();
    // The nonce defeats the engine's layer cache: this run really sleeps.
    std::fs::write(ctx.join("Dockerfile"), format!("FROM provision-standin/redis:7\nRUN echo {nonce} && sleep 3\n")).unwrap();
    let up = stack.provision(&["up", "--json"]).ok();
    let events: Vec<serde_json::Value> = up.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let at = |service: &str, phase: &str| -> Vec<u64> {
        events.iter().filter(|e| e["service"] == service && e["phase"] == phase).map(|e| e["elapsed_ms"].as_u64().unwrap()).collect()
    };
    let cache_ready = *at("cache", "ready").first().unwrap_or_else(|| panic!("{}", up.stdout));
    let build_ended = *at("slow", "building").iter().max().unwrap_or_else(|| panic!("{}", up.stdout));
    assert!(cache_ready + 1000 < build_ended, "cache ready at {cache_ready} ms, the build ended at {build_ended} ms");
    assert!(!at("slow", "ready").is_empty(), "{}", up.stdout);

    std::fs::write(ctx.join("Dockerfile"), format!("FROM provision-standin/redis:7\nRUN echo {nonce} && exit 3\n")).unwrap();
    let failed = stack.provision(&["up"]).failed();
    let message = failed.message();
    assert!(message.contains("service `slow` failed while building its image"), "{message}");
    assert!(message.contains("returned a non-zero code: 3"), "{message}");
    assert!(!message.contains("service `cache` failed"), "{message}");
}
