//! Settings real teams' stacks use and how they run them (issue 28): crash
//! loops under a restart policy, any redis setting, nginx caching and the
//! HTTPS redirect, a project whose services are all in another profile, and
//! a compose project with several profiles, a container name and variables.

use crate::{
    examples::header,
    support::{Project, Stack, docker, http, needs_engine},
};

#[test]
fn a_container_that_keeps_exiting_under_its_restart_policy_fails_up_at_once_not_at_the_timeout() {
    needs_engine!();
    // As above, but restarted by the engine again and again: it stays
    // "running" between restarts, so only the restart count says it.
    let stack =
        Stack::new("e2e-crashloop", "[services.db]\nplugin = \"postgres\"\nport = 0\nimage = \"provision-standin/redis:7\"\nrestart = \"always\"\n");
    let run = stack.provision(&["up", "--timeout", "120"]).failed();
    let message = run.message();
    assert!(message.contains("its container keeps exiting (code 127): the engine restarted it 3 times under its restart policy"), "{message}");
    assert!(message.contains("postgres: not found"), "the log tail shows why: {message}");
    // The progress line of the failure: long before the 120 s it would wait.
    let failed_at: f64 = run
        .stderr
        .lines()
        .find(|l| l.contains("db  failed:"))
        .and_then(|l| l.split_whitespace().next()?.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no failure line: {}", run.stderr));
    assert!(failed_at < 60.0, "failed after {failed_at} s: {}", run.stderr);
}

#[test]
fn any_redis_setting_is_the_servers_and_holds_across_a_restart() {
    needs_engine!();
    let stack = Stack::new(
        "e2e-redis-settings",
        "[services.cache]\nplugin = \"redis\"\nport = 0\nsettings = { hz = 20, \"lazyfree-lazy-eviction\" = true, \"notify-keyspace-events\" = \"Ex\" }\n",
    );
    stack.provision(&["up"]).ok();
    let get = |name: &str| stack.provision(&["exec", "cache", "--", "redis-cli", "config", "get", name]).ok().stdout;
    let check = |when: &str| {
        assert_eq!(get("hz").split_whitespace().collect::<Vec<_>>(), ["hz", "20"], "{when}");
        assert!(get("lazyfree-lazy-eviction").contains("yes"), "{when}");
        assert!(get("notify-keyspace-events").contains('E'), "{when}");
    };
    check("after up");
    docker(&["restart", "e2e-redis-settings_cache_server"]);
    stack.provision(&["up"]).ok();
    check("after the container restarted");
    let refused = Stack::new("e2e-redis-own-key", "[services.cache]\nplugin = \"redis\"\nsettings = { maxmemory = \"1gb\" }\n");
    let message = refused.provision(&["plan"]).failed().message();
    assert!(message.contains("invalid `settings.maxmemory`: has a key of its own here: use `maxmemory`"), "{message}");
}

#[test]
fn nginx_caches_per_location_and_sends_plain_http_to_https() {
    needs_engine!();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (http_port, https_port) = (free(), free());
    let stack = Stack::new(
        "e2e-nginx-expires",
        &format!(
            r#"
[services.site]
plugin = "nginx"
port = 0
locations = {{ "/static/" = "public", "/docs/" = "public" }}
expires = {{ "/static/" = "30d" }}

[services.secure]
plugin = "nginx"
port = {http_port}
locations = {{ "/" = "public" }}
tls = {{ cert = "certs/localhost.crt", key = "certs/localhost.key", port = {https_port}, redirect = true }}
"#
        ),
    );
    let project = stack.project.path();
    std::fs::create_dir_all(project.join("public")).unwrap();
    std::fs::create_dir_all(project.join("certs")).unwrap();
    stack.project.write("public/app.css", "body {}\n");
    for file in ["localhost.crt", "localhost.key"] {
        std::fs::copy(crate::support::repo_root().join("tests/certs").join(file), project.join("certs").join(file)).unwrap();
    }
    stack.provision(&["up"]).ok();

    let site = stack.host_port("site");
    let (status, headers, _) = http(site, "GET", "/static/app.css");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some("max-age=2592000"), "30 days: {headers:?}");
    let (status, headers, _) = http(site, "GET", "/docs/app.css");
    assert_eq!((status, header(&headers, "cache-control")), (200, None), "only the location named: {headers:?}");

    // Plain HTTP is redirected, keeping the path; the host's probe is not.
    let raw = |path: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    };
    let reply = raw("/app.css?v=2");
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");
    assert!(reply.contains(&format!("Location: https://localhost:{https_port}/app.css?v=2")), "{reply}");
    assert!(raw("/health").starts_with("HTTP/1.1 200"), "the health check stays on HTTP");
}

#[test]
fn ps_exec_and_down_find_a_project_whose_services_are_all_in_another_profile() {
    needs_engine!();
    let stack = Stack::new("e2e-profile-only", "[services.cache]\nplugin = \"redis\"\nport = 0\nprofiles = [\"test\"]\n");
    stack.provision(&["up", "--profile", "test"]).ok();
    // No -p and no --profile: the stack's default profile has no service.
    assert!(stack.provision(&["ps"]).ok().stdout.contains("cache"));
    assert_eq!(stack.provision(&["exec", "cache", "--", "redis-cli", "ping"]).ok().stdout.trim(), "PONG");
    stack.provision(&["down", "-v"]).ok();
    assert!(stack.ps().is_empty(), "down found the project too");
}

/// The project of issue 28's first report: `app` (profile frontend) uses
/// `db` (profile backend), reached by its `container_name`, both active from
/// `.env`, as compose runs it; a variable of the command stays one.
#[test]
fn an_imported_project_runs_in_several_profiles_reaches_a_container_name_and_keeps_variables() {
    needs_engine!();
    let project = Project::new("");
    std::fs::remove_file(project.path().join("stack.toml")).unwrap();
    project.write(".env", "COMPOSE_PROJECT_NAME=e2e-import-profiles\nCOMPOSE_PROFILES=frontend,backend\n");
    project.write(
        "compose.yaml",
        r#"services:
  app:
    image: debian:bookworm-slim
    profiles: [frontend]
    command: ["sh", "-c", "echo hello ${GREETING_NAME}; exec sleep infinity"]
    depends_on: [db]
  db:
    image: debian:bookworm-slim
    container_name: store
    profiles: [backend]
    command: ["sleep", "infinity"]
  debugger:
    image: debian:bookworm-slim
    profiles: [debug]
    command: ["sleep", "infinity"]
"#,
    );
    project.provision(&["import"]).ok();
    let stack = Stack { project, name: "e2e-import-profiles".into() };
    let text = std::fs::read_to_string(stack.project.path().join("stack.toml")).unwrap();
    assert!(text.contains("${GREETING_NAME}"), "the variable stays one: {text}");

    let up = stack.provision(&["up"]).ok();
    assert!(up.stderr.contains("variable GREETING_NAME is not set, so it reads as \"\""), "{}", up.stderr);
    assert!(up.stderr.contains("warning: stack.toml:"), "the warning has its line: {}", up.stderr);
    let mut running: Vec<String> = stack.ps().iter().map(|r| r["service"].as_str().unwrap().to_string()).collect();
    running.sort();
    assert_eq!(running, ["app", "db"], "frontend and backend are active, debug is not");
    let store = stack.provision(&["exec", "app", "--", "getent", "hosts", "store"]).ok();
    assert!(!store.stdout.trim().is_empty(), "`store` answers: {}", store.stderr);

    // Set, the variable reaches the command: the container is made again.
    stack.provision_env(&["up"], &[("GREETING_NAME", "world")]).ok();
    let logs = docker(&["logs", "e2e-import-profiles_app_server"]);
    assert!(logs.contains("hello world"), "{logs}");
    // Profiles on the command line replace the stack's: all three.
    stack.provision_env(&["up", "--profile", "frontend", "--profile", "backend,debug"], &[("GREETING_NAME", "world")]).ok();
    assert_eq!(stack.ps().len(), 3);
}
