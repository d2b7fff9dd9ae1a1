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
    let probe = server["health"]["probe"]["exec"].as_array().unwrap();
    assert_eq!(probe[0], "pg_isready");
    let hook = server["hooks"][0]["command"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
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
        json!(["redis-server", "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--save", "900", "1", "--save", "300", "10", "--save", "60", "10000", "--appendonly", "no"])
    );
    assert_eq!(server["health"]["probe"], json!({"exec": ["redis-cli", "ping"]}));
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
