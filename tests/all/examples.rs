//! The example stacks written with built-ins only (examples/flask, bot,
//! layered, scaled), each brought up on the real engine and held to what it
//! promises, not only to coming up.

use std::{collections::BTreeSet, process::Command, time::Duration};

use crate::support::{Stack, docker, eventually, http, needs_engine};

/// Whether `command` exits 0 inside `container`.
fn succeeds_in(container: &str, command: &str) -> bool {
    Command::new("docker").args(["exec", container, "bash", "-c", command]).output().unwrap().status.success()
}

fn psql(container: &str, database: &str, sql: &str) -> String {
    docker(&["exec", container, "psql", "-U", "app", "-d", database, "-tAc", sql]).trim().to_string()
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The replicas that answered `n` requests to `/whoami` through the proxy.
fn replicas_answering(port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            let (status, _, body) = http(port, "GET", "/whoami");
            assert_eq!(status, 200, "{body}");
            let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_ne!(reply["uid"], 0, "the backend runs as root");
            reply["replica"].as_str().unwrap().to_string()
        })
        .collect()
}

/// GET `path` once: its status (None: no answer) and how long it took.
fn timed_get(port: u16, path: &str) -> (Option<u16>, Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into();
    let started = std::time::Instant::now();
    let status = agent.get(&format!("http://127.0.0.1:{port}{path}")).call().ok().map(|r| r.status().as_u16());
    (status, started.elapsed())
}

#[test]
fn flask_behind_nginx_keeps_the_database_on_an_internal_network() {
    needs_engine!();
    let _isolation = crate::support::NETWORK_ISOLATION.lock().unwrap_or_else(|p| p.into_inner());
    let stack = Stack::from_example("flask", "e2e-flask", |text| text);
    stack.provision(&["up", "--profile", "test"]).ok();
    let port = stack.host_port("proxy");

    let (status, headers, body) = http(port, "GET", "/api/notes");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from init.sql"), "postgres 15 ran the init file: {body}");
    assert_eq!(header(&headers, "content-security-policy"), Some("default-src 'self'"));
    assert_eq!(header(&headers, "x-xss-protection"), Some("1; mode=block"));
    assert_eq!(header(&headers, "x-frame-options"), Some("DENY"), "the secure defaults stay");
    let (_, _, whoami) = http(port, "GET", "/api/whoami");
    assert!(whoami.contains("\"uid\":10001"), "gunicorn runs as the image's non-root user: {whoami}");
    let statuses: Vec<u16> = (0..25).map(|_| http(port, "GET", "/api/whoami").0).collect();
    assert!(statuses.contains(&429), "10r/s with a burst of 5 turns some away: {statuses:?}");

    let (proxy, app, db) = ("e2e-flask_proxy_server", "e2e-flask_app_server", "e2e-flask_db_server");
    let db_ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", db]).trim().to_string();
    assert!(!db_ip.is_empty());
    assert!(!succeeds_in(proxy, "getent hosts db"), "nginx sees no `db`");
    assert!(!succeeds_in(proxy, &format!("timeout 3 bash -c 'echo > /dev/tcp/{db_ip}/5432'")), "nginx reaches the database by address");
    assert!(succeeds_in(app, &format!("timeout 3 bash -c 'echo > /dev/tcp/{db_ip}/5432'")), "the app cannot reach the database");
    assert!(!succeeds_in(db, "timeout 3 bash -c 'echo > /dev/tcp/1.1.1.1/53'"), "the database has a route out");
    assert!(!succeeds_in(db, "getent hosts proxy"), "the database sees the frontend network");
}

#[test]
fn a_failed_migration_blocks_its_dependents_and_a_good_one_runs_once() {
    needs_engine!();
    let stack = Stack::from_example("bot", "e2e-bot", |text| text);
    let env = [("BACKEND_PORT", "0")];
    let run = stack.provision_env(&["up", "--profile", "test"], &[env[0], ("FAIL_MIGRATION", "1")]).failed();
    assert!(run.message().contains("service `migrate` failed while running task `run`: it exited with code 1"), "{}", run.stderr);
    assert!(run.message().contains("migration 002 failed"), "the task's log is shown: {}", run.stderr);
    let services: BTreeSet<String> = stack.ps().iter().map(|r| r["service"].as_str().unwrap().to_string()).collect();
    assert_eq!(services, BTreeSet::from(["db".to_string(), "migrate".to_string()]), "nothing that waits for the migration was created");

    stack.provision_env(&["up", "--profile", "test"], &env).ok();
    let db = "e2e-bot_db_server";
    assert_eq!(psql(db, "app", "SELECT count(*) FROM migration_runs"), "1");
    // The bot has no health check: started is all `up` waits for, so its first message comes soon after.
    let first = eventually(Duration::from_secs(20), "the bot's first message", || {
        Some(psql(db, "app", "SELECT body FROM messages")).filter(|m| !m.is_empty())
    });
    assert_eq!(first, "bot started", "the bot started after the backend");
    let again = stack.provision_env(&["up", "--profile", "test"], &env).ok();
    assert!(again.stderr.contains("0 created, 0 recreated, 4 kept"), "{}", again.stderr);
    assert_eq!(psql(db, "app", "SELECT count(*) FROM migration_runs"), "1", "an unchanged migration does not run again");

    let restart = |c: &str| docker(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", c]).trim().to_string();
    assert_eq!(restart("e2e-bot_backend_server"), "always");
    assert_eq!(restart("e2e-bot_bot_server"), "on-failure");
    assert_eq!(restart(db), "unless-stopped");
}

#[test]
fn dev_and_test_profiles_of_one_stack_run_side_by_side() {
    needs_engine!();
    let dev = Stack::from_example("layered", "e2e-layered", |text| text);
    let ports = [("DB_PORT", "0"), ("API_PORT", "0")];
    dev.provision_env(&["up"], &ports).ok();
    // The same folder as a second project, in the test profile.
    struct Down<'a>(&'a Stack);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.provision(&["down", "-v", "-p", "e2e-layered-test"]);
        }
    }
    let _test_down = Down(&dev);
    dev.provision(&["up", "--profile", "test", "-p", "e2e-layered-test"]).ok();

    let test_ps = dev.provision(&["ps", "--json", "-p", "e2e-layered-test"]).ok().json();
    let rows = test_ps.as_array().unwrap();
    let port_of = |rows: &[serde_json::Value], service: &str| -> u16 {
        rows.iter().find(|r| r["service"] == service).unwrap()["ports"][0].as_u64().unwrap() as u16
    };
    assert!(rows.iter().all(|r| r["service"] != "mail"), "the dev tool is not in test");
    assert!(dev.ps().iter().any(|r| r["service"] == "mail"), "the dev tool runs in dev");
    let (test_api, dev_api) = (port_of(rows, "api"), dev.host_port("api"));
    assert_ne!(test_api, dev_api);
    let (_, _, test_env) = http(test_api, "GET", "/env");
    let (_, _, dev_env) = http(dev_api, "GET", "/env");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&test_env).unwrap(), serde_json::json!({"env": "test", "fsync": "off"}));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&dev_env).unwrap(), serde_json::json!({"env": "development", "fsync": "on"}));
    let mounts = |c: &str| docker(&["inspect", "-f", "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}{{json .HostConfig.Tmpfs}}", c]);
    // Ephemeral data in test: a tmpfs, or, when it starts from a data
    // snapshot, the container's own layer (gone with the container too).
    let seeded = docker(&["inspect", "-f", "{{.Config.Image}}", "e2e-layered-test_db_server"]).starts_with("provision-snapshot/");
    let test_mounts = mounts("e2e-layered-test_db_server");
    assert!(seeded && !test_mounts.contains("volume:") || test_mounts.contains("/var/lib/postgresql/data"), "tmpfs in test: {test_mounts}");
    assert!(mounts("e2e-layered_db_server").contains("volume:/var/lib/postgresql/data"), "a volume in dev");

    dev.provision(&["down", "-v", "-p", "e2e-layered-test"]).ok();
    let label = "label=dev.provision.project=e2e-layered-test";
    for args in [["ps", "-a", "-q", "--filter", label], ["network", "ls", "-q", "--filter", label], ["volume", "ls", "-q", "--filter", label]] {
        assert_eq!(docker(&args).trim(), "", "`down -v` left something: docker {args:?}");
    }
    assert!(dev.ps().iter().any(|r| r["service"] == "api"), "the dev project is untouched");
}

#[test]
fn three_replicas_behind_nginx_scale_to_five_and_back_hardened_and_backed_up() {
    needs_engine!();
    let stack = Stack::from_example("scaled", "e2e-scaled", |text| text);
    let env = |replicas: &'static str| [("PROXY_PORT", "0"), ("REPLICAS", replicas)];
    stack.provision_env(&["up"], &env("3")).ok();
    let port = stack.host_port("proxy");
    assert_eq!(replicas_answering(port, 40).len(), 3, "every replica gets requests");

    let up = stack.provision_env(&["up"], &env("5")).ok();
    assert!(up.stderr.contains("2 created, 0 recreated, 5 kept"), "scaling adds replicas only: {}", up.stderr);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(replicas_answering(port, 100).len(), 5);

    // Scaling down while requests keep coming: none fails, none stalls.
    let scaling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic = std::thread::spawn({
        let scaling = scaling.clone();
        move || {
            let mut sent = Vec::new();
            // Two seconds past the change: the resolver's cached answer ages out.
            let mut until = None;
            while until.is_none_or(|t| std::time::Instant::now() < t) {
                if until.is_none() && !scaling.load(std::sync::atomic::Ordering::SeqCst) {
                    until = Some(std::time::Instant::now() + Duration::from_secs(2));
                }
                sent.push(timed_get(port, "/whoami"));
            }
            sent
        }
    });
    let up = stack.provision_env(&["up"], &env("3")).ok();
    scaling.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(up.stderr.contains("0 created, 0 recreated, 5 kept, 2 removed"), "{}", up.stderr);
    let sent = traffic.join().unwrap();
    let failed: Vec<_> = sent.iter().filter(|(status, _)| status.as_ref().is_none_or(|s| *s != 200)).collect();
    assert!(failed.is_empty(), "requests failed while two replicas were removed: {failed:?}");
    let longest = sent.iter().map(|(_, took)| *took).max().unwrap();
    eprintln!("scale-down 5 -> 3: {} requests, the longest {longest:?}", sent.len());
    // What issue 28 asks of a scale-down: no request over 1 s. A removed
    // replica's stale address held one for ~39 s before nginx moved on;
    // now a connect to it gives up after 300 ms (measured: 338 ms at most).
    assert!(longest < Duration::from_secs(1), "a request took {longest:?} while replicas were removed");
    assert_eq!(replicas_answering(port, 40).len(), 3, "nginx keeps no address of a removed replica");

    for row in stack.ps().iter().filter(|r| r["service"] == "backend") {
        let id = row["id"].as_str().unwrap();
        let inspect = docker(&[
            "inspect",
            "-f",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}} {{.HostConfig.SecurityOpt}} {{.HostConfig.PidsLimit}}",
            id,
        ]);
        assert_eq!(inspect.trim(), "10001:10001 true 268435456 [no-new-privileges:true] 100", "{}", row["container"]);
    }

    let dump = std::fs::read_to_string(stack.project.path().join("backups/app.sql")).unwrap();
    assert!(dump.contains("CREATE TABLE public.customers"), "the backup hook wrote a dump");
    let db = "e2e-scaled_db_server";
    docker(&["exec", db, "createdb", "-U", "app", "restored"]);
    docker(&["exec", db, "psql", "-U", "app", "-d", "restored", "-q", "-f", "/backups/app.sql"]);
    assert_eq!(psql(db, "restored", "SELECT string_agg(name, ',' ORDER BY id) FROM customers"), "Ada,Grace,Edsger", "the dump restores");
}

#[test]
fn two_ci_jobs_of_one_stack_run_at_once_without_sharing_a_port() {
    needs_engine!();
    // layered's api publishes 8000 in dev; in ci every published port is a
    // free one, so two jobs of the same checkout on one engine both pass.
    let stack = Stack::from_example("layered", "e2e-jobs", |text| text);
    struct Down<'a>(&'a Stack, &'static str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.provision(&["down", "-v", "-p", self.1]);
        }
    }
    let jobs = ["e2e-job-a", "e2e-job-b"];
    let _down = jobs.map(|job| Down(&stack, job));
    let runs = std::thread::scope(|s| jobs.map(|job| s.spawn(|| stack.provision(&["up", "--profile", "ci", "-p", job]))).map(|h| h.join().unwrap()));
    for run in runs {
        run.ok();
    }
    let urls = jobs.map(|job| {
        let env = stack.provision(&["env", "--profile", "ci", "-p", job, "--format", "json", "api"]).ok().json();
        env["API_URL"].as_str().unwrap().to_string()
    });
    assert_ne!(urls[0], urls[1]);
    for url in &urls {
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let (status, _, body) = http(port, "GET", "/env");
        assert_eq!(status, 200, "{body}");
    }
    let label = |job: &str| format!("label=dev.provision.project={job}");
    let networks = jobs.map(|job| docker(&["network", "ls", "-q", "--filter", &label(job)]));
    assert!(!networks[0].trim().is_empty() && networks[0] != networks[1], "each job has its own network");
}
