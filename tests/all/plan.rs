//! `provision plan` of real stacks with the built-in plugins.

use serde_json::{Value, json};

use crate::support::{Project, provision_in_repo};

fn service<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["services"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no service {name}"))
}

fn output<'a>(service: &'a Value, name: &str) -> &'a str {
    service["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap()["value"].as_str().unwrap()
}

fn quickstart() -> Project {
    Project::new(&std::fs::read_to_string(crate::support::repo_root().join("examples/quickstart/stack.toml")).unwrap())
}

#[test]
fn quickstart_plans_as_configured() {
    let run = provision_in_repo(&["plan", "-f", "examples/quickstart/stack.toml", "--json", "--show-secrets"]).ok();
    let state = run.json();
    assert_eq!(state["project"], "quickstart");
    assert_eq!(state["profile"], "dev");
    let plugins: Vec<&str> = state["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(plugins, ["postgres", "redis"]);
    for p in state["plugins"].as_array().unwrap() {
        assert_eq!(p["source"], "builtin");
        assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
    }

    let db = service(&state, "db");
    let server = &db["plan"]["containers"][0];
    assert_eq!(server["image"], json!({"pull": "postgres:16-alpine"}));
    assert_eq!(server["env"]["POSTGRES_DB"], "app_development");
    assert_eq!(server["env"]["POSTGRES_USER"], "app");
    let password = server["env"]["POSTGRES_PASSWORD"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    let command: Vec<&str> = server["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for setting in ["shared_buffers=256MB", "effective_cache_size=1GB", "max_connections=200", "shared_preload_libraries=pg_stat_statements"] {
        assert!(command.contains(&setting), "{setting} missing from {command:?}");
    }
    assert_eq!(server["ports"], json!([{"container": 5432, "host": 5432, "protocol": "tcp"}]));
    assert_eq!(server["mounts"][0], json!({"source": {"volume": "data"}, "target": "/var/lib/postgresql/data", "read_only": false}));
    assert_eq!(db["plan"]["volumes"], json!(["data"]));
    assert_eq!(server["health"]["probe"], json!({"postgres": 5432}), "the host asks postgres itself");
    let hook_command = |name: &str| {
        let hook = server["hooks"].as_array().unwrap().iter().find(|h| h["name"] == name).unwrap_or_else(|| panic!("no hook {name}"));
        hook["command"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string()
    };
    // Snapshots and changed passwords: this project's is set on every start,
    // in the same psql session as the extensions.
    let hook = hook_command("set password, create extensions");
    assert!(hook.starts_with("ALTER ROLE \"app\" PASSWORD :'password';"), "{hook}");
    assert_eq!(server["snapshot"]["path"], "/var/lib/postgresql/data");
    for ext in ["uuid-ossp", "pgcrypto", "pg_stat_statements", "unaccent", "pg_trgm"] {
        assert!(hook.contains(&format!("CREATE EXTENSION IF NOT EXISTS \"{ext}\"")), "{ext} not created by {hook}");
    }
    assert_eq!(output(db, "url"), format!("postgres://app:{password}@db:5432/app_development"));
    assert_eq!(server["spec_hash"].as_str().unwrap().len(), 16);

    let cache = service(&state, "cache");
    let server = &cache["plan"]["containers"][0];
    assert_eq!(server["image"], json!({"pull": "redis:7-alpine"}));
    assert_eq!(
        server["command"],
        json!([
            "redis-server",
            "--maxmemory",
            "256mb",
            "--maxmemory-policy",
            "allkeys-lru",
            "--save",
            "900",
            "1",
            "--save",
            "300",
            "10",
            "--save",
            "60",
            "10000",
            "--appendonly",
            "no"
        ])
    );
    assert_eq!(server["health"]["probe"], json!({"redis": 6379}));
    assert_eq!(server["mounts"][0]["target"], "/data");
    assert_eq!(output(cache, "url"), "redis://cache:6379/0");
}

#[test]
fn secrets_are_masked_unless_asked_for() {
    let project = quickstart();
    let shown = project.provision(&["plan", "--json", "--show-secrets"]).ok().json();
    let password = service(&shown, "db")["plan"]["containers"][0]["env"]["POSTGRES_PASSWORD"].as_str().unwrap().to_string();
    for args in [&["plan"][..], &["plan", "--json"][..]] {
        let run = project.provision(args).ok();
        assert!(!run.stdout.contains(&password), "`provision {}` printed the password", args.join(" "));
        assert!(run.stdout.contains("••••••"));
    }
}

#[test]
fn generated_secrets_are_stable_per_project_and_differ_between_projects() {
    let project = quickstart();
    let password = |args: &[&str]| {
        let state = project.provision(args).ok().json();
        service(&state, "db")["plan"]["containers"][0]["env"]["POSTGRES_PASSWORD"].as_str().unwrap().to_string()
    };
    let first = password(&["plan", "--json", "--show-secrets"]);
    assert_eq!(first, password(&["plan", "--json", "--show-secrets"]), "the same project must get the same password");
    assert_ne!(first, password(&["plan", "--json", "--show-secrets", "-p", "other"]));
    let elsewhere = quickstart().provision(&["plan", "--json", "--show-secrets"]).ok().json();
    assert_ne!(first, output(service(&elsewhere, "db"), "password"), "another checkout has its own key");
}

#[test]
fn plans_are_reproducible() {
    let project = quickstart();
    let a = project.provision(&["plan", "--json"]).ok().stdout;
    let b = project.provision(&["plan", "--json"]).ok().stdout;
    assert_eq!(a, b);
}

#[test]
fn test_profile_keeps_data_in_memory_on_any_free_port() {
    let project = quickstart();
    let state = project.provision(&["plan", "--json", "--profile", "test"]).ok().json();
    let server = &service(&state, "db")["plan"]["containers"][0];
    assert_eq!(server["ports"][0]["host"], 0);
    assert_eq!(server["mounts"][0]["source"]["tmpfs"]["mode"], 0o700);
    assert!(server["command"].as_array().unwrap().contains(&json!("fsync=off")));
    let redis = &service(&state, "cache")["plan"];
    assert_eq!(redis["volumes"], json!([]));
}

#[test]
fn warm_runs_load_compiled_code_from_the_cache() {
    let project = quickstart();
    let cache = tempfile::tempdir().unwrap();
    let run = |_: ()| {
        let out = crate::support::provision_cmd(cache.path()).current_dir(project.path()).args(["plan", "--timings"]).output().unwrap();
        String::from_utf8(out.stderr).unwrap()
    };
    let cold = run(());
    assert!(cold.contains("(compiled)") && !cold.contains("(cached)"), "{cold}");
    let warm = run(());
    assert!(warm.contains("(cached)") && !warm.contains("(compiled)"), "{warm}");
    // A damaged cache entry is recompiled, not trusted.
    for entry in std::fs::read_dir(cache.path().join("compiled")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let repaired = run(());
    assert!(repaired.contains("(compiled)"), "{repaired}");
}

fn container<'a>(service: &'a Value, name: &str) -> &'a Value {
    let all = service["plan"]["containers"].as_array().unwrap();
    all.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no container {name} in {}", service["name"]))
}

fn file<'a>(container: &'a Value, path: &str) -> &'a str {
    let files = container["files"].as_array().unwrap();
    files.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("no file {path}"))["contents"].as_str().unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

#[test]
fn the_rails_example_is_wired_by_its_plugins() {
    let state = provision_in_repo(&["plan", "-f", "examples/rails/stack.toml", "--json", "--show-secrets"]).ok().json();
    let order: Vec<&str> = state["services"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(order, ["db", "cache", "web", "worker", "proxy", "metrics"], "start order");

    // web: wired to db and cache, env from the profile, a project secret,
    // the code mounted in dev, bundle then db:prepare before the server.
    let web = service(&state, "web");
    let server = container(web, "server");
    let env = &server["env"];
    assert_eq!(env["DATABASE_URL"], output(service(&state, "db"), "url"));
    assert_eq!(env["REDIS_URL"], "redis://cache:6379/0");
    assert_eq!(env["RAILS_ENV"], "development");
    assert_eq!(env["SECRET_KEY_BASE"].as_str().unwrap().len(), 32);
    assert_eq!(server["image"]["build"]["context"], "app");
    assert_eq!(server["health"]["probe"], json!({"http": {"port": 3000, "path": "/up"}}));
    let mounts: Vec<String> = server["mounts"].as_array().unwrap().iter().map(|m| format!("{} {}", m["source"], m["target"])).collect();
    assert_eq!(
        mounts,
        [
            r#"{"bind":"app"} "/app""#,
            r#"{"volume":"bundle"} "/usr/local/bundle""#,
            r#"{"volume":"node_modules"} "/app/node_modules""#,
            r#""anonymous" "/app/tmp""#,
            r#""anonymous" "/app/log""#
        ]
    );
    let tasks: Vec<(&str, Vec<&str>)> =
        web["plan"]["tasks"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap(), strings(&t["command"]))).collect();
    assert_eq!(tasks, [("bundle", vec!["sh", "-c", "bundle check || bundle install"]), ("db-prepare", vec!["bin/rails", "db:prepare"])]);
    assert!(web["plan"]["outputs"].as_array().unwrap().iter().any(|o| o["name"] == "workload" && o["secret"] == true));

    // worker: the same image, env and code, its own command and concurrency.
    let worker = container(service(&state, "worker"), "worker");
    assert_eq!(worker["image"], server["image"]);
    assert_eq!(worker["env"]["DATABASE_URL"], env["DATABASE_URL"]);
    assert_eq!(worker["env"]["SECRET_KEY_BASE"], env["SECRET_KEY_BASE"]);
    assert_eq!(worker["env"]["SIDEKIQ_CONCURRENCY"], "5");
    assert_eq!(strings(&worker["command"]), ["bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"]);
    assert_eq!(worker["mounts"][1]["source"], json!({"volume": "web/bundle"}), "the app's bundle volume, shared");
    assert_eq!(
        service(&state, "worker")["depends_on"],
        json!([
            {"role": "app", "service": "web", "wait": "started", "secrets": true},
            {"role": "database", "service": "db", "wait": "ready", "secrets": true},
            {"role": "cache", "service": "cache", "wait": "ready", "secrets": true}
        ])
    );

    // proxy: the generated config.
    let nginx = container(service(&state, "proxy"), "server");
    let site = file(nginx, "/etc/nginx/conf.d/default.conf");
    for line in [
        "set $upstream http://web:3000;",
        "limit_req_zone $binary_remote_addr zone=api:10m rate=100r/m;",
        "limit_req_zone $binary_remote_addr zone=auth:10m rate=5r/m;",
        "limit_req zone=api burst=20 nodelay;",
        "limit_req zone=auth burst=10 nodelay;",
        "limit_req_status 429;",
        "client_max_body_size 10m;",
        "add_header X-Frame-Options \"DENY\" always;",
        "add_header X-Content-Type-Options \"nosniff\" always;",
        "add_header Referrer-Policy \"strict-origin-when-cross-origin\" always;",
        "location = /health {",
        "stub_status;",
    ] {
        assert!(site.contains(line), "nginx config lacks `{line}`:\n{site}");
    }
    let proxy = file(nginx, "/etc/nginx/conf.d/proxy.inc");
    assert!(proxy.contains("proxy_set_header Upgrade $http_upgrade;") && proxy.contains("proxy_set_header X-Forwarded-For"), "{proxy}");

    // metrics: every service with metrics is a target, none listed by hand.
    let metrics = service(&state, "metrics");
    let prometheus = file(container(metrics, "server"), "/etc/prometheus/prometheus.yml");
    for target in ["job_name: db", "'db-exporter:9187'", "job_name: cache", "'cache-exporter:9121'", "job_name: proxy", "'proxy-exporter:9113'"] {
        assert!(prometheus.contains(target), "prometheus.yml lacks `{target}`:\n{prometheus}");
    }
    assert!(!prometheus.contains("job_name: web") && !prometheus.contains("job_name: worker"), "no metrics, no target:\n{prometheus}");
    assert!(strings(&container(metrics, "server")["command"]).contains(&"--storage.tsdb.retention.time=7d"));
    assert!(metrics["depends_on"].as_array().unwrap().iter().all(|d| d["wait"] == "planned"), "monitoring starts without waiting");
}

#[test]
fn exporters_run_only_when_something_collects() {
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n[services.cache]\nplugin = \"redis\"\n");
    let state = project.provision(&["plan", "--json"]).ok().json();
    for name in ["db", "cache"] {
        let containers = service(&state, name)["plan"]["containers"].as_array().unwrap().len();
        assert_eq!(containers, 1, "{name} has no exporter when nothing collects it");
    }
}

#[test]
fn the_test_profile_runs_the_app_as_built_and_grafana_gets_its_data_source() {
    let project = Project::new(
        r#"
[services.db]
plugin = "postgres"
[services.web]
plugin = "rails"
image = "example/app:1"
metrics_path = "/metrics"
[services.metrics]
plugin = "monitoring"
grafana = {}
"#,
    );
    let state = project.provision(&["plan", "--json", "--profile", "test"]).ok().json();
    let web = service(&state, "web");
    let server = container(web, "server");
    assert_eq!(server["env"]["RAILS_ENV"], "test");
    assert_eq!(server["image"], json!({"pull": "example/app:1"}));
    assert!(server["mounts"].as_array().unwrap().is_empty(), "no code mount outside dev");
    assert_eq!(web["plan"]["tasks"].as_array().unwrap().len(), 1, "db:prepare only");
    assert!(server.get("env").unwrap().get("REDIS_URL").is_none(), "no redis, no REDIS_URL");

    let metrics = service(&state, "metrics");
    let prometheus = file(container(metrics, "server"), "/etc/prometheus/prometheus.yml");
    assert!(prometheus.contains("job_name: web") && prometheus.contains("'web-server:3000'"), "the app's own /metrics:\n{prometheus}");
    let grafana = container(metrics, "grafana");
    let datasource = file(grafana, "/etc/grafana/provisioning/datasources/provision.yml");
    assert!(datasource.contains("type: prometheus") && datasource.contains("url: http://metrics:9090"), "{datasource}");
}

#[test]
fn nginx_serves_tls_from_project_files_with_hsts() {
    let project = Project::new(
        r#"
[services.web]
plugin = "rails"
image = "example/app:1"
[services.proxy]
plugin = "nginx"
uses = ["web"]
client_max_body_size = "25m"
tls = { cert = "certs/dev.crt", key = "certs/dev.key", port = 0 }
"#,
    );
    // Bind sources must exist (the engine would otherwise create them on the host).
    std::fs::create_dir_all(project.path().join("certs")).unwrap();
    project.write("certs/dev.crt", "cert");
    project.write("certs/dev.key", "key");
    let state = project.provision(&["plan", "--json"]).ok().json();
    let nginx = container(service(&state, "proxy"), "server");
    let site = file(nginx, "/etc/nginx/conf.d/default.conf");
    for line in ["listen 443 ssl;", "ssl_certificate /etc/nginx/tls/cert.pem;", "Strict-Transport-Security", "client_max_body_size 25m;"] {
        assert!(site.contains(line), "nginx config lacks `{line}`:\n{site}");
    }
    let mounts: Vec<(&str, &str)> =
        nginx["mounts"].as_array().unwrap().iter().map(|m| (m["source"]["bind"].as_str().unwrap(), m["target"].as_str().unwrap())).collect();
    assert_eq!(mounts, [("certs/dev.crt", "/etc/nginx/tls/cert.pem"), ("certs/dev.key", "/etc/nginx/tls/key.pem")]);
    assert!(nginx["ports"].as_array().unwrap().iter().any(|p| p["container"] == 443));
}

#[test]
fn postgres_18_and_later_keep_pgdata_where_the_data_volume_is() {
    for (version, pgdata) in [(16, None), (18, Some("/var/lib/postgresql/data"))] {
        let project = Project::new(&format!("[stack]\nname = \"pg\"\n\n[services.db]\nplugin = \"postgres\"\nversion = {version}\n"));
        let state = project.provision(&["plan", "--json"]).ok().json();
        let server = &service(&state, "db")["plan"]["containers"][0];
        assert_eq!(server["image"], json!({"pull": format!("postgres:{version}-alpine")}));
        assert_eq!(server["env"]["PGDATA"].as_str(), pgdata, "version {version}");
        assert_eq!(server["mounts"][0]["target"], "/var/lib/postgresql/data");
    }
}
