//! Any stack with the built-ins alone: the `container` plugin, host-level
//! service options, profiles and their overrides, interpolation, output
//! references, routes. Plans here; the examples run on the engine in
//! `examples.rs`.

use serde_json::Value;

use crate::support::Project;

fn service<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["services"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no service {name}"))
}

fn containers(state: &Value, name: &str) -> Vec<Value> {
    service(state, name)["plan"]["containers"].as_array().unwrap().clone()
}

const STACK: &str = r#"
[stack]
name = "shop"

[networks.backend]
internal = true

[services.db]
plugin = "postgres"
networks = ["backend"]
publish = false
tuning = { work_mem = "8MB", random_page_cost = 1.1 }
[services.db.profiles.test]
tmpfs = ["/var/lib/postgresql/data"]
publish = { 5432 = 0 }

[services.migrate]
plugin = "container"
image = "app:1"
command = "python3 migrate.py"
once = true
env = { DATABASE_URL = "${db.url}" }
networks = ["backend"]

[services.api]
plugin = "container"
image = "app:1"
command = ["gunicorn", "app:app"]
ports = [8000]
health = { http = "/healthz", interval = "250ms" }
replicas = "${REPLICAS:-3}"
networks = ["default", "backend"]
after = { migrate = "completed" }
env = { DATABASE_URL = "${db.url}", MODE = "${MODE:-dev}" }
user = "10001"
read_only = true
no_new_privileges = true
resources = { memory = "256m", cpus = 0.5, pids = 200 }
restart = "always"

[services.proxy]
plugin = "nginx"
routes = { "/" = "web", "/api" = "api" }
headers = { "Content-Security-Policy" = "default-src 'self'" }

[services.web]
plugin = "container"
image = "web:1"
ports = ["3000"]

[services.adminer]
plugin = "container"
image = "adminer:4"
ports = ["8081:8080"]
profiles = ["dev"]
"#;

#[test]
fn host_options_shape_every_plugins_plan() {
    let project = Project::new(STACK);
    let state = project.provision(&["plan", "--json", "--show-secrets"]).ok().json();

    let db = &containers(&state, "db")[0];
    assert_eq!(db["ports"][0]["host"], Value::Null, "publish = false");
    assert_eq!(db["networks"], serde_json::json!(["backend"]));
    let command: Vec<&str> = db["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(command.contains(&"work_mem=8MB") && command.contains(&"random_page_cost=1.1"), "any postgres setting: {command:?}");
    let db_networks = &service(&state, "db")["plan"]["networks"];
    assert_eq!(db_networks, &serde_json::json!([{ "name": "backend", "internal": true }]));

    let api = containers(&state, "api");
    // Replicas are a count on the planned container; the engine numbers
    // the copies (server, server-2, server-3) when it makes them.
    let names: Vec<&str> = api.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!((names, &api[0]["replicas"]), (vec!["server"], &serde_json::json!(3)));
    let url = service(&state, "db")["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "url").unwrap()["value"].clone();
    for c in &api {
        assert_eq!(c["env"]["DATABASE_URL"], url, "${{db.url}} is filled in");
        assert_eq!(c["env"]["MODE"], "dev");
        assert_eq!(
            (&c["user"], &c["read_only"], &c["no_new_privileges"], &c["restart"]),
            (&"10001".into(), &true.into(), &true.into(), &"always".into())
        );
        assert_eq!(c["resources"]["memory_bytes"], 256 << 20);
        assert_eq!(c["networks"], serde_json::json!(["default", "backend"]));
    }
    let waits: Vec<(String, String)> = service(&state, "api")["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["service"].as_str().unwrap().to_string(), d["wait"].as_str().unwrap().to_string()))
        .collect();
    assert!(waits.contains(&("migrate".into(), "completed".into())) && waits.contains(&("db".into(), "ready".into())), "{waits:?}");
    assert_eq!(service(&state, "migrate")["plan"]["tasks"][0]["command"], serde_json::json!(["python3", "migrate.py"]));

    let conf = containers(&state, "proxy")[0]["files"].as_array().unwrap()[0]["contents"].as_str().unwrap().to_string();
    assert!(conf.contains("location / {\n        set $upstream http://web:3000;"), "{conf}");
    assert!(conf.contains("location /api {\n        set $upstream http://api:8000;"), "{conf}");
    assert!(conf.contains("resolver 127.0.0.11 valid=1s"), "every replica, found again each second: {conf}");
    assert!(conf.contains("add_header Content-Security-Policy \"default-src 'self'\" always;"), "{conf}");
    let routes: Vec<&str> = service(&state, "proxy")["depends_on"].as_array().unwrap().iter().map(|d| d["service"].as_str().unwrap()).collect();
    assert_eq!(routes, ["web", "api"], "routes bind their services");
    assert!(state["services"].as_array().unwrap().iter().any(|s| s["name"] == "adminer"));
}

#[test]
fn profiles_and_variables_change_the_stack() {
    let project = Project::new(STACK);
    let state = project.provision_with_env(&["plan", "--json", "--profile", "test"], &[("REPLICAS", "2"), ("MODE", "ci")]).ok().json();
    assert!(state["services"].as_array().unwrap().iter().all(|s| s["name"] != "adminer"), "adminer is dev only");
    let db = &containers(&state, "db")[0];
    assert_eq!(db["ports"][0]["host"], 0, "the test profile publishes on any free port");
    assert_eq!(db["mounts"][0]["source"], serde_json::json!({"tmpfs": {"size_bytes": null, "mode": null}}));
    let api = containers(&state, "api");
    assert_eq!(api[0]["replicas"], 2);
    assert_eq!(api[0]["env"]["MODE"], "ci");

    // `.env` beside stack.toml; the environment wins over it.
    project.write(".env", "REPLICAS=4\nMODE=from-dotenv\n");
    let state = project.provision_with_env(&["plan", "--json"], &[("MODE", "from-env")]).ok().json();
    assert_eq!(containers(&state, "api")[0]["replicas"], 4);
    assert_eq!(containers(&state, "api")[0]["env"]["MODE"], "from-env");
}

/// Each bad stack and the exact message it gets, at its line.
#[test]
fn mistakes_are_named_at_their_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "networks = [\"backend\"]\npublish",
            "networks = [\"backnd\"]\npublish",
            "service `db` joins network `backnd`, which the stack does not declare",
            "networks = [\"backnd\"]",
        ),
        (
            "after = { migrate = \"completed\" }",
            "after = { migrate = \"completed\", db = \"completed\" }",
            "service `api` waits for `db` to complete, but `db` runs no one-shot task",
            "db = \"completed\"",
        ),
        ("replicas = \"${REPLICAS:-3}\"", "replicas = \"${REPLICAS:?say how many}\"", "variable REPLICAS is required: say how many", "replicas = "),
        (
            "replicas = \"${REPLICAS:-3}\"",
            "replicas = 65",
            "invalid `replicas` of service `api`: 65 replicas; a service runs 1 to 64",
            "replicas = 65",
        ),
        (
            "restart = \"always\"",
            "restart = \"sometimes\"",
            "invalid `restart` of service `api`: unknown variant `sometimes`",
            "restart = \"sometimes\"",
        ),
        (
            "[services.db]\nplugin",
            "[services.db]\nafter = [\"api\"]\nplugin",
            "services use each other in a cycle: db → api → migrate → db",
            "[services.db]",
        ),
        (
            "ports = [\"3000\"]",
            "ports = [\"eighty\"]",
            "(service `web`): invalid `ports.0`: \"eighty\": expected PORT, HOST_PORT:PORT or PORT/udp",
            "\"eighty\"",
        ),
        (
            "\"/api\" = \"api\"",
            "\"/api\" = \"apii\"",
            "service `proxy` uses `apii`, which is not another service of this stack",
            "\"/api\" = \"apii\"",
        ),
        (
            "image = \"web:1\"",
            "image = \"web:1\"\nvolumes = [\"./missing:/data\"]",
            "bind mount of service `web`: \"./missing\" does not exist",
            "volumes = ",
        ),
        (
            "image = \"web:1\"",
            "image = \"web:1\"\nenv = { URL = \"${cache.url}\" }",
            "service `web` uses `cache`, which is not another service of this stack",
            "[services.web]",
        ),
    ];
    for (from, to, message, at) in cases {
        assert!(STACK.contains(from), "{from}");
        let text = STACK.replacen(from, to, 1);
        let project = Project::new(&text);
        let run = project.provision(&["plan"]).failed();
        assert!(run.message().contains(message), "{to}: expected {message:?}, got\n{}", run.stderr);
        let line = text.lines().position(|l| l.contains(at)).unwrap() + 1;
        assert!(run.stderr.contains(&format!("[stack.toml:{line}:")), "{to}: expected line {line}:\n{}", run.stderr);
    }
}

#[test]
fn a_third_party_plugin_cannot_take_a_host_key() {
    // mischief's schema is open: were declared keys its own, it could
    // swallow `read_only` and leave the container writable.
    let project = Project::new(
        "[stack]\nname = \"m\"\n[plugins]\nmischief = { path = \"mischief.wasm\" }\n[services.x]\nplugin = \"mischief\"\nread_only = true\nuser = \"65534\"\n",
    );
    project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    let state = project.provision(&["plan", "--json"]).ok().json();
    let c = &containers(&state, "x")[0];
    assert_eq!((&c["read_only"], &c["user"]), (&true.into(), &"65534".into()));
}

#[test]
fn nginx_serves_project_folders_and_limits_the_route_a_prefix_falls_under() {
    let project = Project::new(
        "[services.api]\nplugin = \"container\"\nimage = \"api:1\"\nports = [8000]\n\
         [services.proxy]\nplugin = \"nginx\"\nroutes = { \"/api\" = \"api\" }\nlocations = { \"/\" = \"public\" }\n\
         rate_limits.\"/api/login\" = { rate = \"5r/m\" }\n",
    );
    std::fs::create_dir(project.path().join("public")).unwrap();
    let state = project.provision(&["plan", "--json"]).ok().json();
    let server = &containers(&state, "proxy")[0];
    let conf = server["files"][0]["contents"].as_str().unwrap();
    assert!(conf.contains("location / {\n        alias /srv/locations/0/;\n    }"), "{conf}");
    assert!(
        conf.contains("location /api/login {\n        limit_req zone=api_login;\n        set $upstream http://api:8000;"),
        "a limited prefix goes where its route goes: {conf}"
    );
    assert_eq!(server["mounts"][0], serde_json::json!({"source": {"bind": "public"}, "target": "/srv/locations/0", "read_only": true}));

    std::fs::remove_dir(project.path().join("public")).unwrap();
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("\"public\" does not exist"), "{}", run.stderr);
    assert!(run.stderr.contains("[stack.toml:8:"), "at the `locations` line: {}", run.stderr);
}

#[test]
fn a_bind_from_home_needs_its_permission() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("cache")).unwrap();
    let env = [("HOME", home.path().to_str().unwrap())];
    let text = "[services.app]\nplugin = \"container\"\nimage = \"app:1\"\nvolumes = [\"~/cache:/cache\"]\n";
    let project = Project::new(text);
    let run = project.provision_with_env(&["plan"], &env).failed();
    let outside = format!("service `app` binds {}, outside the project folder", home.path().join("cache").canonicalize().unwrap().display());
    assert!(run.message().contains(&outside), "{}", run.stderr);
    assert!(run.message().contains("add `allow = [\"bind-outside-project\"]` to [services.app]"), "{}", run.stderr);

    let project = Project::new(&format!("{text}allow = [\"bind-outside-project\"]\n"));
    let state = project.provision_with_env(&["plan", "--json"], &env).ok().json();
    assert_eq!(containers(&state, "app")[0]["mounts"][0]["source"], serde_json::json!({"bind": "~/cache"}));
}
