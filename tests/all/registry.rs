//! Plugins from a real OCI registry (Debian's docker-registry on 127.0.0.1),
//! stack.lock and --locked.

use provision_registry::oci::Registry;
use provision_test_artifacts as artifacts;
use semver::Version;

use crate::support::{Project, RegistryServer, needs_registry_server};

fn app_wasm() -> Vec<u8> {
    std::fs::read(artifacts::APP).unwrap()
}

/// Push the `app` test plugin (version 0.1.0) under `tags`, with annotations
/// claiming `claimed` as its version for tags other than 0.1.0.
fn publish(registry: &RegistryServer, repository: &str, tags: &[&str]) {
    let client = Registry::new();
    let contract = Version::new(0, 1, 1);
    for tag in tags {
        let version = Version::parse(tag).unwrap_or(Version::new(0, 1, 0));
        client.push(&app_wasm(), &format!("{}/{repository}:{tag}", registry.address), "app", &version, &contract).unwrap();
    }
}

fn stack_with(requirement: &str) -> Project {
    Project::new(&format!("[plugins]\napp = {requirement}\n[services.db]\nplugin = \"postgres\"\n[services.web]\nplugin = \"app\"\n"))
}

#[test]
fn push_with_the_cli_then_resolve_the_highest_match_ignoring_other_tags() {
    needs_registry_server!();
    let registry = RegistryServer::start(false);
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n");
    let repo = format!("{}/acme/app", registry.address);
    let run = project.provision(&["plugin", "push", artifacts::APP, &repo]).ok();
    assert!(run.stdout.contains("pushed app 0.1.0 (contract 0.5.0, sha256:"), "{}", run.stdout);
    // A non-semver tag and a newer, non-matching major are ignored by ^0.1.
    publish(&registry, "acme/app", &["latest", "1.0.0"]);

    let project = stack_with(&format!("{{ registry = \"{repo}\", version = \"^0.1\" }}"));
    let state = project.provision(&["plan", "--json"]).ok().json();
    let app = state["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "app").unwrap().clone();
    assert_eq!(app["version"], "0.1.0");
    assert_eq!(app["source"], format!("{repo}:0.1.0"));
    assert_eq!(app["sha256"], provision_registry::sha256_hex(&app_wasm()));

    // The reference-string form resolves the same.
    let project = stack_with(&format!("\"{repo}@^0.1\""));
    assert_eq!(project.provision(&["plan", "--json"]).ok().json()["plugins"][1]["version"], "0.1.0");

    // `plugin ls` shows what resolved from where.
    let ls = project.provision(&["plugin", "ls"]).ok();
    assert!(ls.stdout.contains(&format!("{repo}:0.1.0")), "{}", ls.stdout);
}

#[test]
fn a_component_whose_version_differs_from_its_tag_is_refused() {
    needs_registry_server!();
    let registry = RegistryServer::start(false);
    // Tagged and annotated 0.3.0, but the component's own info says 0.1.0.
    publish(&registry, "acme/app", &["0.3.0"]);
    let project = stack_with(&format!("{{ registry = \"{}/acme/app\" }}", registry.address));
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("is version 0.1.0, which does not match"), "{}", run.stderr);
}

#[test]
fn a_component_published_under_another_name_is_refused() {
    needs_registry_server!();
    let registry = RegistryServer::start(false);
    publish(&registry, "acme/app", &["0.1.0"]);
    let project =
        Project::new(&format!("[plugins]\nnotapp = {{ registry = \"{}/acme/app\" }}\n[services.x]\nplugin = \"notapp\"\n", registry.address));
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("calls itself `app`; refusing a plugin that is not what was asked for"), "{}", run.stderr);
}

#[test]
fn missing_tags_unreachable_registries_and_refused_pushes_are_clear_errors() {
    needs_registry_server!();
    let registry = RegistryServer::start(false);
    publish(&registry, "acme/app", &["0.1.0"]);
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n");
    let run = project.provision(&["plugin", "pull", &format!("{}/acme/app:9.9.9", registry.address)]).failed();
    assert!(run.message().contains("acme/app has no tag 9.9.9"), "{}", run.stderr);

    let run = stack_with(&format!("{{ registry = \"{}/acme/app\", version = \"^2\" }}", registry.address)).provision(&["plan"]).failed();
    assert!(run.message().contains("no version of") && run.message().contains("(its versions: 0.1.0)"), "{}", run.stderr);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = stack_with(&format!("{{ registry = \"127.0.0.1:{closed}/acme/app\" }}")).provision(&["plan"]).failed();
    assert!(run.message().contains(&format!("registry 127.0.0.1:{closed} is unreachable")), "{}", run.stderr);
    assert!(run.message().contains("works offline"), "the error says how to work offline: {}", run.stderr);

    let read_only = RegistryServer::start(true);
    let run = project.provision(&["plugin", "push", artifacts::APP, &format!("{}/acme/app", read_only.address)]).failed();
    assert!(run.message().contains(&format!("registry {} refused the push", read_only.address)), "{}", run.stderr);
}

#[test]
fn a_locked_cached_plugin_needs_no_registry_and_a_changed_requirement_fails_locked() {
    needs_registry_server!();
    let registry = RegistryServer::start(false);
    publish(&registry, "acme/app", &["0.1.0"]);
    let repo = format!("{}/acme/app", registry.address);
    let project = stack_with(&format!("{{ registry = \"{repo}\", version = \"^0.1\" }}"));
    let cache = tempfile::tempdir().unwrap();
    let provision = |args: &[&str]| project.provision_with_env(args, &[("PROVISION_CACHE_DIR", cache.path().to_str().unwrap())]);

    provision(&["lock"]).ok();
    let lock = std::fs::read_to_string(project.path().join("stack.lock")).unwrap();
    assert!(lock.contains(&format!("source = \"oci:{repo}\"")), "{lock}");
    assert!(lock.contains(&format!("sha256 = \"{}\"", provision_registry::sha256_hex(&app_wasm()))), "{lock}");
    let names: Vec<&str> = lock.lines().filter_map(|l| l.strip_prefix("name = ")).collect();
    assert_eq!(names, ["\"app\"", "\"postgres\""], "entries are sorted");

    // The registry goes away: the lock and the cache are enough, and it says so.
    drop(registry);
    let run = provision(&["plan", "--locked"]).ok();
    assert!(run.stderr.contains("from the local cache (locked;"), "{}", run.stderr);

    // The stack asks for something else now: --locked refuses, naming the entry and the fix.
    project.write("stack.toml", &std::fs::read_to_string(project.path().join("stack.toml")).unwrap().replace("^0.1", "^0.2"));
    let run = provision(&["plan", "--locked"]).failed();
    assert!(run.message().contains("plugin `app` is locked as `^0.1`"), "{}", run.stderr);
    assert!(run.message().contains("Run `provision lock` to update it"), "{}", run.stderr);
}

#[test]
fn locked_digests_that_differ_are_refused_naming_both() {
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n");
    project.provision(&["lock"]).ok();
    let path = project.path().join("stack.lock");
    let lock = std::fs::read_to_string(&path).unwrap();
    let builtin = provision_registry::builtins().iter().find(|b| b.name == "postgres").unwrap();
    let (version, actual) = (builtin.version, builtin.sha256);
    std::fs::write(&path, lock.replace(actual, &"ab".repeat(32))).unwrap();
    let run = project.provision(&["plan", "--locked"]).failed();
    assert!(run.message().contains(&format!("locked at {version} sha256:{}", "ab".repeat(32))), "{}", run.stderr);
    assert!(run.message().contains(&format!("resolves to {version} sha256:{actual}")), "{}", run.stderr);

    let fresh = Project::new("[services.db]\nplugin = \"postgres\"\n");
    let run = fresh.provision(&["plan", "--locked"]).failed();
    assert!(run.message().contains("--locked, but there is no"), "{}", run.stderr);
}

#[test]
fn the_host_reports_the_contract_versions_it_loads() {
    let run = Project::new("[services.db]\nplugin = \"postgres\"\n").provision(&["version"]).ok();
    assert!(run.stdout.contains("plugin contracts: 0.5.0, 0.4.0, 0.3.0, 0.2.0, 0.1.1, 0.1.0"), "{}", run.stdout);
}
