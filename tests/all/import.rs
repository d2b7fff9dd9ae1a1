//! `provision import`: compose projects (tests/import/NAME, each written
//! after a real project's compose file; tests/import/README.md says which)
//! turned into stack.toml. Golden tests of the stack and the report for
//! each; the generated stacks must plan; three are brought up on the engine
//! and checked to work. BLESS=1 rewrites the golden files.

use crate::support::{Project, Stack, copy_dir, http, needs_engine, repo_root};

fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("tests/import"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A copy of tests/import/NAME as a project folder (no stack.toml yet).
fn fixture(name: &str) -> Project {
    let project = Project::new("");
    std::fs::remove_file(project.path().join("stack.toml")).unwrap();
    copy_dir(&repo_root().join("tests/import").join(name), project.path());
    let _ = std::fs::remove_dir_all(project.path().join("expected"));
    project
}

/// The extra arguments a fixture is imported with (its `import.args`).
fn import_args(project: &Project) -> Vec<String> {
    std::fs::read_to_string(project.path().join("import.args")).map(|text| text.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

#[test]
fn every_fixture_imports_to_its_golden_stack_and_report_and_plans() {
    let bless = std::env::var_os("BLESS").is_some();
    let names = fixtures();
    assert!(names.len() >= 8, "at least eight compose projects: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let project = fixture(name);
        let mut args = vec!["import".to_string(), "--json".into()];
        args.extend(import_args(&project));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = project.provision(&args).ok();
        let mut report = run.json();
        assert!(report["elapsed_ms"].as_u64().is_some());
        report.as_object_mut().unwrap().remove("elapsed_ms");
        let report = serde_json::to_string_pretty(&report).unwrap() + "\n";
        let stack = std::fs::read_to_string(project.path().join("stack.toml")).unwrap();

        let expected = repo_root().join("tests/import").join(name).join("expected");
        for (file, actual) in [("stack.toml", &stack), ("report.json", &report)] {
            let path = expected.join(file);
            if bless {
                std::fs::create_dir_all(&expected).unwrap();
                std::fs::write(&path, actual).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_ref() != Some(actual) {
                failures.push(format!("{name}/{file} differs from tests/import/{name}/expected/{file} (BLESS=1 rewrites it):\n{actual}"));
            }
        }

        // What import writes is a stack provision takes: in its own active
        // profiles, and with each profile it names added to them.
        let quoted = |line: &str| line.split('"').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>();
        let active = stack.lines().find(|l| l.starts_with("profile = ")).map(quoted).unwrap_or_else(|| vec!["dev".into()]);
        let mut profiles = vec![active.join(",")];
        for line in stack.lines().filter(|l| l.starts_with("profiles = ")) {
            profiles.extend(quoted(line).into_iter().filter(|p| !active.contains(p)).map(|p| format!("{},{p}", active.join(","))));
        }
        for profile in profiles {
            let plan = project.provision(&["plan", "--profile", &profile]);
            if plan.code != Some(0) {
                failures.push(format!("{name}: the imported stack does not plan in profile {profile}:\n{}", plan.stderr));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_report_accounts_for_what_was_approximated_dropped_and_granted() {
    let project = fixture("powers");
    let report = project.provision(&["import", "--json", "--grant"]).ok().json();
    let entry = |path: &str| {
        report["entries"].as_array().unwrap().iter().find(|e| e["path"] == path).unwrap_or_else(|| panic!("no entry for {path}: {report}")).clone()
    };
    assert_eq!(entry("services.netdata.security_opt.0")["status"], "dropped");
    assert_eq!(entry("services.cadvisor.privileged")["status"], "mapped");
    assert!(entry("services.cadvisor.privileged")["detail"].as_str().unwrap().contains("allow"));
    let granted: Vec<&str> = report["granted"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    for power in
        ["portainer: docker-socket", "netdata: host-network", "netdata: host-pid", "netdata: cap-add", "cadvisor: privileged", "cadvisor: devices"]
    {
        assert!(granted.contains(&power), "{power} in {granted:?}");
    }
    let stack = std::fs::read_to_string(project.path().join("stack.toml")).unwrap();
    assert!(stack.contains("# ! allow privileged: granted (--grant) because the compose file asks for it"), "{stack}");

    // Without the grant the plan is refused, naming the power.
    project.write(
        "stack.toml",
        &stack.replace("allow = [\"bind-outside-project\", \"devices\", \"privileged\"]", "allow = [\"bind-outside-project\", \"devices\"]"),
    );
    let refused = project.provision(&["plan"]).failed();
    assert!(refused.message().contains("privileged"), "{}", refused.stderr);
}

#[test]
fn a_compose_file_grants_no_power_without_grant() {
    // A compose file from an untrusted repository asking for privileged
    // mode, the Docker socket, the host's network and pid, devices and `/`.
    let project = fixture("powers");
    let run = project.provision(&["import", "--json"]).ok();
    let report = run.json();
    assert_eq!(report["granted"], serde_json::json!([]));
    let asked: Vec<&str> = report["not_granted"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    for power in ["portainer: docker-socket", "netdata: host-network", "netdata: host-pid", "cadvisor: privileged", "cadvisor: bind-outside-project"]
    {
        assert!(asked.contains(&power), "{power} in {asked:?}");
    }
    let stack = std::fs::read_to_string(project.path().join("stack.toml")).unwrap();
    assert!(!stack.lines().any(|l| l.starts_with("allow =")), "no allow entry is written: {stack}");
    assert!(stack.contains("# ! allow privileged: the compose file asks for it, not granted; add allow = [\"privileged\"] here"), "{stack}");
    // The stack says what it needs instead of running with it.
    let refused = project.provision(&["plan"]).failed();
    assert!(refused.message().contains("allow"), "{}", refused.stderr);
    let human = project.provision(&["import", "--force"]).ok();
    assert!(human.stderr.contains("powers the compose file asks for, not granted"), "{}", human.stderr);
    // --strict: a power not granted is a stack that would not plan.
    let strict = project.provision(&["import", "--strict", "--force"]).failed();
    assert!(strict.stderr.contains("power(s) are not granted (the stack would not plan; grant them with --grant"), "{}", strict.stderr);
    assert_eq!(std::fs::read_to_string(project.path().join("stack.toml")).unwrap(), stack, "nothing written");
}

#[test]
fn strict_writes_nothing_when_a_key_would_be_dropped() {
    let project = fixture("web-stack");
    let run = project.provision(&["import", "--strict"]).failed();
    assert!(run.stderr.contains("would be dropped; nothing written"), "{}", run.stderr);
    assert!(run.stderr.contains("services.shop.logging"), "the report names what: {}", run.stderr);
    assert!(!project.path().join("stack.toml").exists());

    // A project with nothing dropped passes --strict; an existing file is kept without --force.
    let clean = fixture("nginx-golang-postgres");
    clean.provision(&["import", "--strict"]).ok();
    let again = clean.provision(&["import"]).failed();
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    clean.provision(&["import", "--force"]).ok();
}

#[test]
fn bad_compose_projects_are_refused_naming_file_and_key() {
    let project = Project::new("");
    let cases = [
        ("services:\n  web:\n    image: \"app:${TAG:?set TAG}\"\n", "services.web.image", "TAG is required: set TAG"),
        ("services:\n  a:\n    extends: b\n  b:\n    extends: a\n    image: x\n", "", "extend each other in a cycle"),
        ("services:\n  web:\n    command: [serve]\n", "", "neither `image` nor `build`"),
        ("services:\n  web:\n    image: x\n  Web:\n    image: y\n", "", "would both be named `web`"),
        ("include:\n  - compose.yaml\nservices: {}\n", "", "cycle"),
        ("- not a mapping\n", "", "not a compose file"),
    ];
    for (text, key, message) in cases {
        project.write("compose.yaml", text);
        let run = project.provision(&["import", "-o", "-"]).failed();
        let stderr = run.message();
        assert!(stderr.contains("compose.yaml"), "names the file: {stderr}");
        assert!(stderr.contains(key), "names {key}: {stderr}");
        assert!(stderr.contains(message), "says {message}: {stderr}");
    }
}

/// A fixture imported and brought up (test profile: every published port a
/// free one), as project `name`.
fn bring_up(fixture_name: &str, name: &str) -> Stack {
    let project = fixture(fixture_name);
    project.provision(&["import"]).ok();
    let stack = std::fs::read_to_string(project.path().join("stack.toml")).unwrap();
    let stack = stack.replacen("[stack]\nname = \"", &format!("[stack]\nname = \"{name}\"\n# was \""), 1);
    project.write("stack.toml", &stack);
    let stack = Stack { project, name: name.to_string() };
    stack.provision(&["up", "--profile", "test"]).ok();
    stack
}

#[test]
fn an_imported_flask_app_behind_nginx_writes_rows_to_postgres() {
    needs_engine!();
    let _isolation = crate::support::NETWORK_ISOLATION.lock().unwrap_or_else(|p| p.into_inner());
    let stack = bring_up("flask-postgres", "import-flask-e2e");
    let port = stack.host_port("proxy");
    let (status, _, body) = http(port, "GET", "/notes");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("written by schema.sql"), "the init script ran: {body}");
    let (status, _, body) = http(port, "POST", "/notes");
    assert_eq!(status, 201, "{body}");
    // The row is in the database, written with the password from .env.
    let count = stack.provision(&["exec", "db", "--", "psql", "-U", "notes", "-d", "notes", "-tAc", "select count(*) from notes"]).ok();
    assert_eq!(count.stdout.trim(), "2");
    let env = stack.provision(&["exec", "backend", "--", "printenv", "DATABASE_URL"]).ok();
    assert!(env.stdout.contains("s3cret-from-dotenv"), "${{DB_PASSWORD}} read from .env when the stack ran: {}", env.stdout);
    // nginx serves what the backend wrote into the volume they share.
    let (status, _, body) = http(port, "GET", "/static/hello.txt");
    assert_eq!((status, body.trim()), (200, "static from the backend"));
    // The backend network is internal: the database has no route out.
    let out = stack.provision(&["exec", "db", "--", "sh", "-c", "getent hosts proxy || echo unreachable"]).ok();
    assert!(out.stdout.contains("unreachable"), "the proxy is not on the database's network: {}", out.stdout);
}

#[test]
fn the_imported_hit_counter_counts_in_redis() {
    needs_engine!();
    let stack = bring_up("counter", "import-counter-e2e");
    let port = stack.host_port("web");
    // Compose would wait for nothing here (no health check); the import has
    // `up` wait for the published port.
    let (status, _, first) = http(port, "GET", "/");
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("seen 1 times"), "{first}");
    let (_, _, second) = http(port, "GET", "/");
    assert!(second.contains("seen 2 times"), "{second}");
    let hits = stack.provision(&["exec", "redis", "--", "redis-cli", "get", "hits"]).ok();
    assert_eq!(hits.stdout.trim(), "2");
}

#[test]
fn imported_dev_services_take_their_settings_scripts_and_rows() {
    needs_engine!();
    let stack = bring_up("dev-services", "import-devdeps-e2e");
    let psql =
        |sql: &str| stack.provision(&["exec", "postgres", "--", "psql", "-U", "dev", "-d", "catalog", "-tAc", sql]).ok().stdout.trim().to_string();
    assert_eq!(psql("select count(*) from products"), "2", "both init scripts ran, in order");
    psql("insert into products (name, price_cents) values ('mug', 899)");
    assert_eq!(psql("select name from products order by id desc limit 1"), "mug");
    assert_eq!(psql("show max_connections"), "40", "-c settings became tuning");
    let policy = stack.provision(&["exec", "redis", "--", "redis-cli", "config", "get", "maxmemory-policy"]).ok();
    assert!(policy.stdout.contains("allkeys-lru"), "{}", policy.stdout);
    // pgadmin is in the `tools` profile only.
    assert!(stack.ps().iter().all(|r| r["service"] != "pgadmin"));
}

/// Each container of a plan: (service, container) → (plugin, spec hash).
fn planned(project: &Project, file: &str) -> std::collections::BTreeMap<(String, String), (String, String)> {
    let plan = project.provision(&["plan", "-f", file, "--json"]).ok().json();
    let mut out = std::collections::BTreeMap::new();
    for service in plan["services"].as_array().unwrap() {
        let name = service["name"].as_str().unwrap().to_string();
        for c in service["plan"]["containers"].as_array().unwrap().iter().chain(service["plan"]["tasks"].as_array().unwrap()) {
            let key = (name.clone(), c["name"].as_str().unwrap().to_string());
            out.insert(key, (service["plugin"].as_str().unwrap().to_string(), c["spec_hash"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// export, then import: the stack plans to the same containers with the same
/// spec hashes, but for what the README lists (hooks' names; a plugin's
/// sidecars and tasks beside a server, which come back as services).
#[test]
fn examples_exported_and_imported_plan_to_the_same_containers() {
    for example in ["quickstart", "flask", "bot", "layered", "scaled", "rails"] {
        let project = Project::new("");
        copy_dir(&repo_root().join("examples").join(example), project.path());
        project.provision(&["export", "-o", "docker-compose.yml", "--with-secrets"]).ok();
        project.provision(&["import", "-f", "docker-compose.yml", "-o", "roundtrip.toml"]).ok();
        let before = planned(&project, "stack.toml");
        let after = planned(&project, "roundtrip.toml");
        for ((service, container), (plugin, hash)) in &before {
            let key = (service.clone(), container.clone());
            let known = match (example, service.as_str(), container.as_str()) {
                // Its `backup` hook comes back as `post-start-1`: compose's hooks have no names.
                ("scaled", "db", "server") => true,
                // Beside a server, the exporters, rails's tasks and sidekiq come back as
                // services of their own (SERVICE-CONTAINER), and rails's code mount as ./app.
                ("rails", _, "exporter" | "bundle" | "db-prepare" | "worker") | ("rails", "web", "server") => true,
                _ => false,
            };
            match after.get(&key) {
                Some((_, after_hash)) if after_hash == hash => assert!(!known, "{example}: {key:?} now round-trips: update the README and this test"),
                _ if known => {}
                Some((after_plugin, after_hash)) => panic!("{example}: {key:?} ({plugin} → {after_plugin}) spec {hash} became {after_hash}"),
                None => panic!("{example}: {key:?} is not in the imported stack: {:?}", after.keys()),
            }
        }
        if example == "rails" {
            for service in ["db-exporter", "web-bundle", "web-db-prepare", "worker"] {
                assert!(after.keys().any(|(s, _)| s == service), "rails: {service} in {:?}", after.keys());
            }
        }
    }
}

/// What a service is, in terms both `docker compose config --format json`
/// and `provision import --config` say the same way.
fn service_facts(name: &str, s: &serde_json::Value, env_from_files: bool) -> serde_json::Value {
    let words = |v: &serde_json::Value| match v {
        // Shell words, as compose splits a string (the fixtures' quotes are whole words).
        serde_json::Value::String(text) => serde_json::json!(text.split_whitespace().map(|w| w.trim_matches(['"', '\''])).collect::<Vec<_>>()),
        other => other.clone(),
    };
    let targets = |key: &str| -> Vec<String> {
        let mut list: Vec<String> = s[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p {
                serde_json::Value::String(text) => text.rsplit(':').next().unwrap().split('/').next().unwrap().to_string(),
                other => other["target"].to_string().trim_matches('"').to_string(),
            })
            .collect();
        list.sort();
        list
    };
    let keys = |key: &str| -> Vec<String> {
        let mut keys: Vec<String> = s[key].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    };
    // A service that names no network is on `default`, as compose writes it.
    let networks = if keys("networks").is_empty() { vec!["default".to_string()] } else { keys("networks") };
    let mut depends: Vec<(String, String)> = s["depends_on"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v["condition"].as_str().unwrap_or("service_started").to_string()))
        .collect();
    depends.sort();
    serde_json::json!({
        "service": name,
        "image": s["image"],
        "command": words(&s["command"]),
        "entrypoint": words(&s["entrypoint"]),
        "ports": targets("ports"),
        "volumes": targets("volumes"),
        "networks": networks,
        "depends_on": depends,
        "profiles": s["profiles"],
        "user": s["user"],
        "healthcheck": !s["healthcheck"].is_null(),
        // compose folds env_file into environment; the import keeps them apart.
        "environment": if env_from_files { serde_json::Value::Null } else { serde_json::json!(keys("environment")) },
    })
}

/// The import reads every project as Compose v2 does: the same services,
/// each with the same image, command, ports, volumes, networks,
/// dependencies, profiles, user and variables after merging, extends,
/// include, anchors and interpolation.
#[test]
fn the_import_reads_every_project_as_compose_v2_does() {
    needs_engine!();
    let compose = std::env::var("COMPOSE").unwrap_or_else(|_| repo_root().join("target/compose-venv/bin/docker-compose").display().to_string());
    for name in fixtures() {
        let project = fixture(&name);
        let args = import_args(&project);
        let files: Vec<&str> =
            args.iter().skip_while(|a| *a != "-f").collect::<Vec<_>>().chunks(2).filter(|c| c[0] == "-f").map(|c| c[1].as_str()).collect();
        let mut theirs = std::process::Command::new(&compose);
        theirs.current_dir(project.path());
        for f in &files {
            theirs.args(["-f", f]);
        }
        let out = theirs.args(["--profile", "*", "config", "--format", "json"]).output().unwrap_or_else(|e| panic!("Compose v2 at {compose}: {e}"));
        assert!(out.status.success(), "{name}: compose config: {}", String::from_utf8_lossy(&out.stderr));
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut our_args = vec!["import".to_string(), "--config".into()];
        our_args.extend(files.iter().flat_map(|f| ["-f".to_string(), f.to_string()]));
        let ours = project.provision(&our_args.iter().map(String::as_str).collect::<Vec<_>>()).ok().json();

        let names = |v: &serde_json::Value| v["services"].as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
        assert_eq!(names(&ours), names(&theirs), "{name}: services");
        for service in names(&ours) {
            let o = &ours["services"][&service];
            let env_files = !o["env_file"].is_null();
            assert_eq!(
                service_facts(&service, o, env_files),
                service_facts(&service, &theirs["services"][&service], env_files),
                "{name}: service {service} (provision import --config, then docker compose config)"
            );
        }
    }
}

#[test]
fn import_config_prints_where_a_stack_toml_exists_and_only_a_write_is_refused() {
    let project = Project::new("[stack]\nname = \"mine\"\n");
    project.write("compose.yaml", "services:\n  web: {image: nginx}\n");
    let printed = project.provision(&["import", "--config"]).ok().json();
    assert_eq!(printed["services"]["web"]["image"], "nginx");
    let refused = project.provision(&["import"]).failed();
    assert!(refused.message().contains("exists; pass --force"), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(project.path().join("stack.toml")).unwrap(), "[stack]\nname = \"mine\"\n");
}

#[test]
fn a_compose_files_escape_sequences_reach_the_terminal_escaped() {
    // A key the report names, and a network the refusal names (YAML's own
    // escapes: the parser refuses raw control characters).
    let project = Project::new("");
    std::fs::remove_file(project.path().join("stack.toml")).unwrap();
    project.write("compose.yaml", "services:\n  web:\n    image: nginx\n    \"x\\e]0;pwned\\a\": 1\n");
    let run = project.provision(&["import"]);
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'), "{:?}", run.stderr);
    assert!(run.stderr.contains("\\u{1b}]0;pwned"), "{}", run.stderr);
    project.write("compose.yaml", "services:\n  web: {image: nginx, networks: [\"n\\e[2J\"]}\n");
    let run = project.provision(&["import", "--force"]).failed();
    assert!(!run.stderr.contains('\u{1b}') && run.stderr.contains("\\u{1b}[2J"), "{:?}", run.stderr);
}
