//! `provision export`: the examples as Compose files, accepted by
//! `docker compose config` and brought up by Docker Compose v2 itself
//! (scripts/test installs it; $COMPOSE names it).

use std::process::{Command, Output};

use crate::support::{Stack, http, needs_engine, repo_root};

fn compose_bin() -> String {
    std::env::var("COMPOSE").unwrap_or_else(|_| repo_root().join("target/compose-venv/bin/docker-compose").display().to_string())
}

/// Runs compose on the exported file of `stack`, as project `project`.
fn compose(stack: &Stack, project: &str, args: &[&str]) -> Output {
    Command::new(compose_bin())
        .current_dir(stack.project.path())
        .args(["-f", "docker-compose.yml", "-p", project])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("Docker Compose v2 at {} (scripts/test installs it): {e}", compose_bin()))
}

fn ok(out: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Takes the compose project down, volumes too, pass or fail.
struct Down<'a>(&'a Stack, &'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = compose(self.0, self.1, &["down", "-v", "--remove-orphans"]);
    }
}

fn export(stack: &Stack) -> String {
    stack.provision(&["export", "--profile", "test", "-o", "docker-compose.yml", "--with-secrets"]).ok();
    std::fs::read_to_string(stack.project.path().join("docker-compose.yml")).unwrap()
}

#[test]
fn the_quickstart_exported_runs_on_compose_with_its_hooks_and_secrets() {
    needs_engine!();
    let _isolation = crate::support::NETWORK_ISOLATION.lock().unwrap_or_else(|p| p.into_inner());
    let stack = Stack::from_example("quickstart", "export-qs", |text| text);
    let file = export(&stack);
    assert!(!file.contains("\nversion:"), "the obsolete version key: {file}");
    assert!(file.contains("post_start:"), "the extensions hook: {file}");
    assert!(file.contains("${DB_PASSWORD}"), "secrets are variables: {file}");
    let env = std::fs::read_to_string(stack.project.path().join(".env")).unwrap();
    let password = stack.provision(&["plan", "--json", "--profile", "test", "--show-secrets"]).ok().json()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "db")
        .unwrap()["plan"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "password")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!file.contains(&password), "the password is not in the compose file");
    assert!(env.contains(&format!("DB_PASSWORD='{password}'")), "{env}");

    let project = "export-qs-compose";
    let _down = Down(&stack, project);
    ok(compose(&stack, project, &["config", "-q"]), "compose config -q");
    ok(compose(&stack, project, &["up", "-d", "--wait"]), "compose up --wait");
    let extensions = ok(
        compose(&stack, project, &["exec", "-T", "db", "psql", "-U", "app", "-d", "app_development", "-tAc", "select count(*) from pg_extension"]),
        "psql",
    );
    assert_eq!(extensions.trim(), "6", "plpgsql and the five the hook creates");
    let ping = ok(compose(&stack, project, &["exec", "-T", "cache", "redis-cli", "ping"]), "redis-cli");
    assert_eq!(ping.trim(), "PONG");
}

#[test]
fn the_flask_example_exported_serves_through_its_proxy_on_compose() {
    needs_engine!();
    let _isolation = crate::support::NETWORK_ISOLATION.lock().unwrap_or_else(|p| p.into_inner());
    let stack = Stack::from_example("flask", "export-flask", |text| text);
    // The image is built by provision (its Dockerfile's base is a stand-in
    // only through [images]); compose uses the tag the file names.
    stack.provision(&["up", "--profile", "test"]).ok();
    stack.provision(&["down", "-v"]).ok();
    let file = export(&stack);
    assert!(file.contains("internal: true"), "the backend network: {file}");
    assert!(file.contains("configs:"), "nginx's config as a compose config: {file}");

    let project = "export-flask-compose";
    let _down = Down(&stack, project);
    ok(compose(&stack, project, &["config", "-q"]), "compose config -q");
    ok(compose(&stack, project, &["up", "-d", "--wait", "--no-build"]), "compose up --wait");
    let address = ok(compose(&stack, project, &["port", "proxy", "80"]), "compose port");
    let port: u16 = address.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{address}"));
    let (status, _, body) = http(port, "GET", "/api/notes");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from init.sql"), "{body}");
}

/// The other examples: exported, brought up by compose v2 (every health
/// check passing, the one-shot migration completed), and answering.
#[test]
fn the_bot_layered_and_scaled_examples_exported_come_up_on_compose() {
    needs_engine!();
    let _isolation = crate::support::NETWORK_ISOLATION.lock().unwrap_or_else(|p| p.into_inner());
    for example in ["bot", "layered", "scaled"] {
        let name = format!("export-{example}");
        // Any free port for the proxy: tests run side by side.
        let stack = Stack::from_example(example, &name, |text| text.replace("\"${PROXY_PORT:-8080}\"", "0"));
        // provision builds the images (their Dockerfiles' base is a stand-in
        // only through [images]); compose runs the tags the file names.
        stack.provision(&["up", "--profile", "test"]).ok();
        stack.provision(&["down", "-v"]).ok();
        export(&stack);
        let project = format!("{name}-compose");
        let _down = Down(&stack, &project);
        ok(compose(&stack, &project, &["config", "-q"]), "compose config -q");
        ok(compose(&stack, &project, &["up", "-d", "--wait", "--no-build"]), &format!("{example}: compose up --wait"));
        let ps = ok(compose(&stack, &project, &["ps", "-a", "--format", "{{.Service}} {{.State}} {{.Health}}"]), "compose ps");
        assert!(!ps.contains("unhealthy"), "{example}: {ps}");
        match example {
            "bot" => {
                let runs =
                    ok(compose(&stack, &project, &["exec", "-T", "db", "psql", "-U", "app", "-tAc", "select count(*) from migration_runs"]), "psql");
                assert_eq!(runs.trim(), "1", "bot: the migration ran once before its dependents");
            }
            "scaled" => {
                assert_eq!(ps.lines().filter(|l| l.starts_with("backend ")).count(), 3, "scaled: three replicas: {ps}");
                let address = ok(compose(&stack, &project, &["port", "proxy", "80"]), "compose port");
                let port: u16 = address.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{address}"));
                let (status, _, body) = http(port, "GET", "/whoami");
                assert_eq!(status, 200, "scaled: through the proxy: {body}");
            }
            _ => {
                let address = ok(compose(&stack, &project, &["port", "api", "8000"]), "compose port");
                let port: u16 = address.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{address}"));
                let (status, _, body) = http(port, "GET", "/env");
                assert_eq!(status, 200, "layered: the api: {body}");
            }
        }
    }
}

/// The Rails example exported: compose runs its tasks as one-shot services
/// web waits for, and a job POSTed through nginx is processed by Sidekiq.
#[test]
fn the_rails_example_exported_processes_a_job_on_compose() {
    needs_engine!();
    let stack = crate::rails::rails_stack("export-rails");
    stack.provision(&["up", "--profile", "test"]).ok();
    stack.provision(&["down", "-v"]).ok();
    export(&stack);
    let project = "export-rails-compose";
    let _down = Down(&stack, project);
    ok(compose(&stack, project, &["up", "-d", "--wait", "--no-build"]), "rails: compose up --wait");
    let address = ok(compose(&stack, project, &["port", "proxy", "80"]), "compose port");
    let port: u16 = address.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("{address}"));
    let token = crate::rails::enqueue(port);
    crate::support::eventually(std::time::Duration::from_secs(15), "the job processed through compose's stack", || {
        let (status, _, body) = http(port, "GET", &format!("/api/jobs/{token}"));
        (status == 200 && body.contains("\"done\":true")).then_some(())
    });
}
