//! Plugins from paths, hostile and broken ones included: each is stopped or
//! refused with an error naming it, and the host exits cleanly.

use std::{sync::Arc, time::Duration};

use provision::{
    desired::ServiceRequest,
    runtime::{CallContext, Limits, PluginError, Runtime},
    secrets::Secrets,
};
use provision_registry::{Requirement, RequirementSource, resolve};
use provision_test_artifacts as artifacts;
use serde_json::{Value, json};

use crate::support::Project;

/// A stack with one service `x` run by the test plugin `name`.
fn hostile(name: &str, wasm: &str, extra: &str) -> Project {
    let project = Project::new(&format!(
        "[stack]\nname = \"hostile\"\n[plugins]\n{name} = {{ path = \"{name}.wasm\" }}\n[services.x]\nplugin = \"{name}\"\n{extra}"
    ));
    project.add_plugin(name, wasm);
    project
}

#[test]
fn every_test_plugin_has_a_test() {
    let source = include_str!("sandbox.rs");
    for plugin in artifacts::ALL {
        let constant = format!("artifacts::{}", plugin.replace('-', "_").to_uppercase());
        assert!(source.contains(&constant), "test plugin {plugin} is not used by any test");
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let run = hostile("looper", artifacts::LOOPER, "").provision(&["plan"]).failed();
    assert!(run.message().contains("plugin `looper` 0.1.0 (service `x`) ran past its 2s deadline and was stopped"), "{}", run.stderr);
}

#[test]
fn unbounded_memory_is_refused_at_the_cap() {
    let run = hostile("hog", artifacts::HOG, "").provision(&["plan"]).failed();
    assert!(run.message().contains("plugin `hog` 0.1.0 (service `x`) asked for"), "{}", run.stderr);
    assert!(run.message().contains("over the cap of 67108864 bytes"), "{}", run.stderr);
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let run = hostile("crasher", artifacts::CRASHER, "").provision(&["plan"]).failed();
    assert!(run.message().contains("plugin `crasher` 0.1.0 (service `x`) crashed"), "{}", run.stderr);
    assert!(run.message().contains("crasher gave up on service x"), "the guest's panic message is shown:\n{}", run.stderr);
}

#[test]
fn files_sockets_environment_and_clocks_are_denied() {
    let project = hostile("snoop", artifacts::SNOOP, "");
    let run = project.provision_with_env(&["plan", "--json", "--show-secrets"], &[("SNOOP_TARGET", "host-secret")]);
    let run = run.failed();
    assert!(run.message().contains("plugin `snoop` 0.1.0 (service `x`) failed: denied: read /etc/passwd"), "{}", run.stderr);
    assert!(run.message().contains("connect 127.0.0.1:22"), "{}", run.stderr);
    assert!(!run.stdout.contains("root:"), "host file content leaked: {}", run.stdout);
}

#[test]
fn privileged_mode_and_the_docker_socket_need_explicit_permission() {
    let run = hostile("privileged", artifacts::PRIVILEGED, "").provision(&["plan"]).failed();
    assert!(
        run.message().contains("plugin `privileged` 0.1.0 (service `x`) is refused: containers.agent.privileges.privileged asks for privileged mode"),
        "{}",
        run.stderr
    );
    assert!(run.message().contains("add `allow = [\"privileged\"]` to [services.x]"), "{}", run.stderr);

    let run = hostile("privileged", artifacts::PRIVILEGED, "socket_only = true\n").provision(&["plan"]).failed();
    assert!(run.message().contains("containers.agent.mounts.0 asks for the container engine's socket"), "{}", run.stderr);
    assert!(run.message().contains("add `allow = [\"docker-socket\"]` to [services.x]"), "{}", run.stderr);

    let allowed = "allow = [\"privileged\", \"docker-socket\"]\n";
    hostile("privileged", artifacts::PRIVILEGED, allowed).provision(&["plan"]).ok();
}

#[test]
fn a_plugin_that_is_not_what_was_asked_for_is_refused() {
    let run = hostile("mine", artifacts::IMPOSTOR, "").provision(&["plan"]).failed();
    assert!(run.message().contains("plugin `mine` (from "), "{}", run.stderr);
    assert!(run.message().contains("calls itself `postgres`; refusing a plugin that is not what was asked for"), "{}", run.stderr);
}

#[test]
fn a_plugin_for_an_unsupported_contract_is_refused_before_compiling() {
    let run = hostile("future", artifacts::FUTURE_CONTRACT, "").provision(&["plan"]).failed();
    assert!(
        run.message().contains("is built against contract 9.0.0, which this provision does not support (it loads 0.1.1, 0.1.0)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_path_plugin_is_pinned_by_its_digest() {
    let project = hostile("app", artifacts::APP, "[services.db]\nplugin = \"postgres\"\n");
    let state = project.provision(&["plan", "--json"]).ok().json();
    let app = state["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "app").unwrap().clone();
    let digest = provision_registry::sha256_hex(&std::fs::read(artifacts::APP).unwrap());
    assert_eq!(app["sha256"], digest.as_str());
    assert!(app["source"].as_str().unwrap().ends_with("app.wasm"));

    // Pinned right: plans. Pinned wrong: refused, naming both digests.
    let pinned = |sha: &str| {
        project.write("stack.toml", &format!("[plugins]\napp = {{ path = \"app.wasm\", sha256 = \"{sha}\" }}\n[services.x]\nplugin = \"app\"\n[services.db]\nplugin = \"postgres\"\n"));
        project.provision(&["plan"])
    };
    pinned(&digest).ok();
    let wrong = "0".repeat(64);
    let run = pinned(&wrong).failed();
    assert!(run.message().contains(&format!("sha256 is {digest}, but the stack pins {wrong}")), "{}", run.stderr);
}

fn services(state: &Value) -> Vec<(String, Value)> {
    state["services"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s.clone())).collect()
}

#[test]
fn outputs_flow_into_the_bindings_of_dependents_in_dependency_order() {
    let project = hostile("app", artifacts::APP, "[services.cache]\nplugin = \"redis\"\n[services.db]\nplugin = \"postgres\"\n");
    let state = project.provision(&["plan", "--json", "--show-secrets"]).ok().json();
    let services = services(&state);
    let order: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["cache", "db", "x"], "x uses both, so it comes last");
    let x = &services[2].1;
    assert_eq!(
        x["depends_on"],
        json!([{"role": "database", "service": "db", "wait": "ready"}, {"role": "cache", "service": "cache", "wait": "ready"}])
    );
    let db_url = services[1].1["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "url").unwrap()["value"].clone();
    assert_eq!(x["plan"]["containers"][0]["env"]["DATABASE_URL"], db_url);
    assert_eq!(x["plan"]["containers"][0]["env"]["CACHE_URL"], "redis://cache:6379/0");
}

#[test]
fn roles_that_cannot_be_inferred_must_be_named() {
    let stack = "[services.db]\nplugin = \"postgres\"\n[services.db2]\nplugin = \"postgres\"\n";
    let run = hostile("app", artifacts::APP, stack).provision(&["plan"]).failed();
    assert!(run.message().contains("service `x` needs one `database`, and db, db2 could be it"), "{}", run.stderr);
    assert!(run.message().contains("uses = { database = \"db\" }"), "{}", run.stderr);

    let run = hostile("app", artifacts::APP, &format!("uses = {{ database = \"db2\" }}\n{stack}")).provision(&["plan", "--json"]).ok();
    assert_eq!(run.json()["services"][2]["depends_on"][0]["service"], "db2");

    let run = hostile("app", artifacts::APP, "").provision(&["plan"]).failed();
    assert!(run.message().contains("service `x` needs a `database` (Its database), and no service of the stack can be one"), "{}", run.stderr);
}

#[test]
fn cycles_are_rejected_with_their_path() {
    let project = Project::new(
        "[plugins]\napp = { path = \"app.wasm\" }\n[services.db]\nplugin = \"postgres\"\n\
         [services.a]\nplugin = \"app\"\nuses = { upstream = \"b\" }\n[services.b]\nplugin = \"app\"\nuses = { upstream = \"a\" }\n",
    );
    project.add_plugin("app", artifacts::APP);
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("services use each other in a cycle: a → b → a"), "{}", run.stderr);
}

/// The runtime itself, in-process: a hostile call leaves it fully usable.
#[test]
fn the_host_carries_on_after_a_hostile_call() {
    let limits = Limits { deadline: Duration::from_millis(300), memory_bytes: 16 << 20 };
    let runtime = Runtime::new(None, limits).unwrap();
    let load = |name: &str, path: &str| {
        let req =
            Requirement { name: name.into(), version: semver::VersionReq::STAR, source: RequirementSource::Path { path: path.into(), sha256: None } };
        runtime.load(&resolve(&req, std::path::Path::new("/")).unwrap()).unwrap()
    };
    let context = || Arc::new(CallContext { project: "p".into(), service: "x".into(), secrets: Arc::new(Secrets::from_key([7; 32])) });
    let request =
        ServiceRequest { project: "p".into(), service: "x".into(), profile: "dev".into(), config: json!({}), bindings: vec![], collected: false };

    let looper = load("looper", artifacts::LOOPER);
    let started = std::time::Instant::now();
    assert!(matches!(runtime.plan(&looper, &request, context()), Err(PluginError::Timeout(_))));
    assert!(started.elapsed() < Duration::from_secs(10), "the deadline did not stop the loop");

    let hog = load("hog", artifacts::HOG);
    assert!(matches!(runtime.plan(&hog, &request, context()), Err(PluginError::MemoryCap { cap, .. }) if cap == 16 << 20));

    // Same runtime, same plugin, new call: fresh store, works again (and the
    // loop is stopped again: no state carried over).
    let postgres = runtime
        .load(
            &resolve(
                &Requirement { name: "postgres".into(), version: semver::VersionReq::STAR, source: RequirementSource::Builtin },
                std::path::Path::new("/"),
            )
            .unwrap(),
        )
        .unwrap();
    let (plan, _) = runtime.plan(&postgres, &request, context()).unwrap();
    assert_eq!(plan.unwrap().containers.len(), 1);
    assert!(matches!(runtime.plan(&looper, &request, context()), Err(PluginError::Timeout(_))));
}

/// Contract 0.1.0 is released: its WIT must never change (plugins built
/// against it are loaded through bindings generated from it). Additions go
/// in a new folder (wit/v0.1.1/…) with its own bindings module.
#[test]
fn the_released_contract_is_frozen() {
    let wit = std::fs::read(crate::support::repo_root().join("wit/v0.1.0/provider.wit")).unwrap();
    assert_eq!(
        provision_registry::sha256_hex(&wit),
        "39da29134a74340b63256a3577bd58bee6c9280b636882f9e76f058dfa12e460",
        "wit/v0.1.0 is released and frozen; put changes in a new contract version"
    );
}

#[test]
fn plugins_built_for_0_1_load_and_the_version_comes_from_the_export_name() {
    for (name, path) in [("app", artifacts::APP), ("looper", artifacts::LOOPER)] {
        let wasm = std::fs::read(path).unwrap();
        assert_eq!(provision_registry::contract_version(&wasm).unwrap(), semver::Version::new(0, 1, 1), "{name}");
    }
    let legacy = std::fs::read(artifacts::LEGACY).unwrap();
    assert_eq!(provision_registry::contract_version(&legacy).unwrap(), semver::Version::new(0, 1, 0));
    let future = std::fs::read(artifacts::FUTURE_CONTRACT).unwrap();
    assert_eq!(provision_registry::contract_version(&future).unwrap(), semver::Version::new(9, 0, 0));
}

/// A plugin of the first contract still loads, is wired and plans next to
/// plugins of the newest one.
#[test]
fn a_plugin_of_contract_0_1_0_still_plans_beside_0_1_1_plugins() {
    let project = hostile("legacy", artifacts::LEGACY, "[services.cache]\nplugin = \"redis\"\n");
    let state = project.provision(&["plan", "--json"]).ok().json();
    let plugins = state["plugins"].as_array().unwrap();
    let contract = |name: &str| plugins.iter().find(|p| p["name"] == name).unwrap()["contract"].clone();
    assert_eq!(contract("legacy"), "0.1.0");
    assert_eq!(contract("redis"), "0.1.1");
    let x = state["services"].as_array().unwrap().iter().find(|s| s["name"] == "x").unwrap();
    let greeting = x["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "greeting").unwrap();
    assert_eq!(greeting["value"], "hello from x using redis://cache:6379/0");
}
