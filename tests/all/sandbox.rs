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
    let source = concat!(include_str!("sandbox.rs"), include_str!("fuzz.rs"));
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
        run.message()
            .contains("is built against contract 9.0.0, which this provision does not support (it loads 0.5.0, 0.4.0, 0.3.0, 0.2.0, 0.1.1, 0.1.0)"),
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
    // Named in `uses`: the user handed db's secrets (in its url) to x.
    let project = hostile(
        "app",
        artifacts::APP,
        "uses = { database = \"db\", cache = \"cache\" }\n[services.cache]\nplugin = \"redis\"\n[services.db]\nplugin = \"postgres\"\n",
    );
    let state = project.provision(&["plan", "--json", "--show-secrets"]).ok().json();
    let services = services(&state);
    let order: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["cache", "db", "x"], "x uses both, so it comes last");
    let x = &services[2].1;
    assert_eq!(
        x["depends_on"],
        json!([{"role": "database", "service": "db", "wait": "ready", "secrets": true}, {"role": "cache", "service": "cache", "wait": "ready", "secrets": true}])
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

/// Released contracts: their WIT must never change (plugins built against
/// them are loaded through bindings generated from it). Additions go in a
/// new folder (wit/vX.Y.Z/…) with its own bindings module.
#[test]
fn the_released_contracts_are_frozen() {
    for (version, sha256) in [
        ("0.1.0", "39da29134a74340b63256a3577bd58bee6c9280b636882f9e76f058dfa12e460"),
        ("0.1.1", "0d7b1f3587911f56d2cf3663d23d36f7869f1c6533ac83ca37554473aa7c1aac"),
        ("0.2.0", "e71c0d420593b797df4f2b6d777d6da6b461faec077846cb12eb803e6a0f67f5"),
        ("0.3.0", "0786e6ea9f17a259049d775a5e16e4e9f523979fbebdd20c11046b95fc4af2f8"),
        ("0.4.0", "e55f14951bb64cac5d086e4d066a89b3aed13b794bbb727d823d9ca57d3959e4"),
        ("0.5.0", "8f7fe872422be80422c8e6a437ffbb395abfce6a57ffabde39a1cd82cad5ddbd"),
    ] {
        let wit = std::fs::read(crate::support::repo_root().join(format!("wit/v{version}/provider.wit"))).unwrap();
        assert_eq!(provision_registry::sha256_hex(&wit), sha256, "wit/v{version} is released and frozen; put changes in a new contract version");
    }
}

#[test]
fn plugins_of_every_contract_load_and_the_version_comes_from_the_export_name() {
    for (name, path) in [("app", artifacts::APP), ("looper", artifacts::LOOPER)] {
        let wasm = std::fs::read(path).unwrap();
        assert_eq!(provision_registry::contract_version(&wasm).unwrap(), semver::Version::new(0, 5, 0), "{name}");
    }
    let legacy = std::fs::read(artifacts::LEGACY).unwrap();
    assert_eq!(provision_registry::contract_version(&legacy).unwrap(), semver::Version::new(0, 1, 0));
    let legacy = std::fs::read(artifacts::LEGACY_0_1_1).unwrap();
    assert_eq!(provision_registry::contract_version(&legacy).unwrap(), semver::Version::new(0, 1, 1));
    let legacy = std::fs::read(artifacts::LEGACY_0_2_0).unwrap();
    assert_eq!(provision_registry::contract_version(&legacy).unwrap(), semver::Version::new(0, 2, 0));
    let legacy = std::fs::read(artifacts::LEGACY_0_3_0).unwrap();
    assert_eq!(provision_registry::contract_version(&legacy).unwrap(), semver::Version::new(0, 3, 0));
    let legacy = std::fs::read(artifacts::LEGACY_0_4_0).unwrap();
    assert_eq!(provision_registry::contract_version(&legacy).unwrap(), semver::Version::new(0, 4, 0));
    let future = std::fs::read(artifacts::FUTURE_CONTRACT).unwrap();
    assert_eq!(provision_registry::contract_version(&future).unwrap(), semver::Version::new(9, 0, 0));
}

/// Plugins of the older contracts still load, are wired and plan next to
/// plugins of the newest one.
#[test]
fn plugins_of_contracts_0_1_0_to_0_4_0_still_plan_beside_0_5_0_plugins() {
    let legacies = [
        ("legacy", artifacts::LEGACY, "0.1.0"),
        ("legacy-0-1-1", artifacts::LEGACY_0_1_1, "0.1.1"),
        ("legacy-0-2-0", artifacts::LEGACY_0_2_0, "0.2.0"),
        ("legacy-0-3-0", artifacts::LEGACY_0_3_0, "0.3.0"),
        ("legacy-0-4-0", artifacts::LEGACY_0_4_0, "0.4.0"),
    ];
    for (name, wasm, version) in legacies {
        let project = hostile(name, wasm, "[services.cache]\nplugin = \"redis\"\n");
        let state = project.provision(&["plan", "--json"]).ok().json();
        let plugins = state["plugins"].as_array().unwrap();
        let contract = |name: &str| plugins.iter().find(|p| p["name"] == name).unwrap()["contract"].clone();
        assert_eq!(contract(name), version);
        assert_eq!(contract("redis"), "0.5.0");
        let x = state["services"].as_array().unwrap().iter().find(|s| s["name"] == "x").unwrap();
        let greeting = x["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "greeting").unwrap();
        assert_eq!(greeting["value"], "hello from x using redis://cache:6379/0");
    }
}

/// A stack of `mischief` services: (name, config lines).
fn mischief(services: &[(&str, &str)], extra: &str) -> Project {
    let mut text = String::from("[stack]\nname = \"mischief\"\n[plugins]\nmischief = { path = \"mischief.wasm\" }\n");
    for (name, config) in services {
        text.push_str(&format!("[services.{name}]\nplugin = \"mischief\"\n{config}\n"));
    }
    text.push_str(extra);
    let project = Project::new(&text);
    project.add_plugin("mischief", artifacts::MISCHIEF);
    project
}

/// `provision ARGS`, failing the test instead of hanging it after `limit`.
fn within(project: &Project, args: &[&str], limit: Duration) -> crate::support::Run {
    let mut child = crate::support::provision_cmd(&crate::support::shared_cache())
        .current_dir(project.path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("provision {args:?} still runs after {limit:?}: a plugin blocked the host");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    crate::support::Run::from(child.wait_with_output().unwrap())
}

#[test]
fn a_plugin_that_sleeps_does_not_hold_the_host() {
    // `info` and `plan` each sleep an hour through WASI: the frozen clock's
    // sleeps return at once, so the run ends in moments (60 s is only the
    // point where the test gives up instead of hanging).
    let project = hostile("sleeper", artifacts::SLEEPER, "");
    within(&project, &["plan"], Duration::from_secs(60)).ok();
    let project = mischief(&[("x", "trick = \"sleep\"")], "");
    within(&project, &["plan"], Duration::from_secs(60)).ok();
}

#[test]
fn host_secret_calls_and_plan_size_are_capped() {
    let project = mischief(&[("x", "trick = \"secrets\"")], "");
    let run = within(&project, &["plan"], Duration::from_secs(60)).failed();
    assert!(run.message().contains("called host.secret more than 1000 times"), "{}", run.stderr);

    let project = mischief(&[("x", "trick = \"huge\"\ncount = 1000")], "");
    let run = within(&project, &["plan"], Duration::from_secs(60)).failed();
    assert!(run.message().contains("1000 containers and tasks, over the limit of 256"), "{}", run.stderr);
    // 100,000 containers do not even fit in the plugin's 64 MiB.
    let project = mischief(&[("x", "trick = \"huge\"\ncount = 100000")], "");
    let run = within(&project, &["plan"], Duration::from_secs(60)).failed();
    assert!(run.message().contains("bytes of memory, over the cap of 67108864 bytes"), "{}", run.stderr);
}

#[test]
fn secrets_reach_only_the_services_the_user_wired() {
    // x declares an optional role that fits postgres and a collect role:
    // neither was written by the user, so neither carries db's password.
    let project = mischief(&[("x", "")], "[services.db]\nplugin = \"postgres\"\n");
    let state = project.provision(&["plan", "--json", "--show-secrets"]).ok().json();
    let services = services(&state);
    let db = &services.iter().find(|(n, _)| n == "db").unwrap().1;
    let password = db["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "password").unwrap()["value"].as_str().unwrap();
    let x = &services.iter().find(|(n, _)| n == "x").unwrap().1;
    let loot = x["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "loot").unwrap()["value"].as_str().unwrap();
    assert!(loot.contains("peek.db.host=db"), "the non-secret outputs do flow: {loot}");
    assert!(!loot.contains(password), "an inferred or collect role got db's password: {loot}");
    assert!(x["depends_on"].as_array().unwrap().iter().all(|d| d["secrets"] == false), "{}", x["depends_on"]);

    // Named by the user in `uses`: then it does get them, and plan says so.
    let project = mischief(&[("x", "uses = { peek = \"db\" }")], "[services.db]\nplugin = \"postgres\"\n");
    let plan = project.provision(&["plan"]).ok();
    assert!(plan.stdout.contains("peek=db (started, with secrets)"), "{}", plan.stdout);
    assert!(!plan.stdout.contains(password), "plan masks the password it handed over");
}

#[test]
fn plans_that_write_to_the_host_or_reach_past_the_project_are_refused() {
    let refused = |config: &str, setup: &dyn Fn(&Project), expected: &str| {
        let project = mischief(&[("x", config)], "");
        setup(&project);
        let run = project.provision(&["plan"]).failed();
        assert!(run.message().contains(expected), "{config}: {}", run.stderr);
    };
    let nothing = |_: &Project| {};
    let git = |p: &Project| std::fs::create_dir_all(p.path().join(".git/hooks")).unwrap();
    // A writable bind the user did not name in the service's config.
    refused("trick = \"own-bind\"", &nothing, "asks to write to host path");
    // Files placed under a bind would be written through it onto the host.
    refused(
        "bind = \".\"\nbind_writable = true\nfile = \"/mnt/.git/hooks/post-checkout\"",
        &git,
        "\"/mnt/.git/hooks/post-checkout\" is under the bind mount \"/mnt\": it would be written to the host",
    );
    // Links are followed: to /etc, to the engine's socket, into .provision.
    let link = |target: &'static str| move |p: &Project| std::os::unix::fs::symlink(target, p.path().join("link")).unwrap();
    refused("bind = \"link\"", &link("/etc"), "host path /etc outside the project folder");
    refused("bind = \"link\"", &link("/var/run/docker.sock"), "the container engine's socket");
    refused("bind = \"link\"", &link(".provision"), "inside the project's .provision folder");
    refused("bind = \".provision/secret-key\"", &nothing, "inside the project's .provision folder");
    refused("bind = \".git\"", &git, "inside the project's .git folder");
    refused("bind = \"missing\"", &nothing, "does not exist");
    refused("build = \"link\"", &link("/etc"), "build context /etc outside the project folder");
    // Labels of other tools, and metrics paths that would inject config.
    refused("label = \"com.docker.compose.project\"", &nothing, "`com.docker.compose.project` is in a namespace of provision or another tool");
    refused("metrics = \"/m'\\n- job_name: evil\"", &nothing, "names no container of the plan or is not a plain path");
}

#[test]
fn names_cannot_reach_another_project_or_answer_twice() {
    let project = Project::new("[stack]\nname = \"a_b\"\n[services.db]\nplugin = \"postgres\"\n");
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("stack name \"a_b\" is not usable as a project name"), "{}", run.stderr);
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n");
    let run = project.provision(&["plan", "-p", "a_b"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);

    // `db`'s container `server` answers to db-server; a service of that name too.
    let project = mischief(&[("db", ""), ("db-server", "")], "");
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("DNS name `db-server` would answer for both service `db` and service"), "{}", run.stderr);

    let project = mischief(&[("x", "network = \"back\"\ninternal = true"), ("y", "network = \"back\"")], "");
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("network `back` is not internal for service `y` but internal for `x`"), "{}", run.stderr);
}

#[test]
fn an_upstream_url_cannot_inject_nginx_config() {
    let project = mischief(
        &[("x", "url = \"http://x:8080;\\n}\\nserver { listen 81; root /; }\\nupstream y {\\n server x:8080\"")],
        "[services.proxy]\nplugin = \"nginx\"\nuses = [\"x\"]\n",
    );
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("nginx proxies to http://HOST:PORT"), "{}", run.stderr);
}

#[test]
fn terminal_control_characters_from_plugins_are_shown_not_sent() {
    let project = mischief(&[("x", "trick = \"escape\"\nenv_value = \"\\u001b[2J\"")], "");
    let run = project.provision(&["plan"]).ok();
    assert!(!run.stderr.contains('\u{1b}') && !run.stdout.contains('\u{1b}'), "raw escape printed:\n{}\n{}", run.stderr, run.stdout);
    assert!(run.stderr.contains("\\u{1b}]52;c;"), "{}", run.stderr);
    assert!(run.stdout.contains("MISCHIEF=\\u{1b}[2J"), "{}", run.stdout);
}

#[test]
fn a_plugin_path_must_be_a_regular_file() {
    // /dev/zero reads without end; a FIFO blocks on open until a writer comes.
    for path in ["/dev/zero", "fifo.wasm"] {
        let project = Project::new(&format!("[plugins]\nx = {{ path = \"{path}\" }}\n[services.x]\nplugin = \"x\"\n"));
        assert!(std::process::Command::new("mkfifo").arg(project.path().join("fifo.wasm")).status().unwrap().success());
        let run = within(&project, &["plan"], Duration::from_secs(60)).failed();
        assert!(run.message().contains("not a regular file"), "{path}: {}", run.stderr);
    }
}
