//! Outside data is bounded, and credentials stay with their registry
//! (SECURITY.md, "Outside data" and "Credentials"), attacked by
//! tests/registry/fake.py: a registry that sends without end, sends more
//! than a plugin may be, never answers, serves a shell script as a
//! component, prints escape sequences, or collects credentials. Each case
//! is also held to a memory bound (this process's own peak, from wait4).

use std::time::Duration;

use crate::support::{FakeRegistry, Project, provision_cmd, run_measured, shared_cache};

/// A stack whose one service's plugin comes from `ADDRESS/REPO`.
fn stack_from(address: &str, repo: &str) -> Project {
    Project::new(&format!("[plugins]\napp = {{ registry = \"{address}/{repo}\" }}\n[services.web]\nplugin = \"app\"\n"))
}

/// `provision ARGS` in `project`, with `env`, measured.
fn measured(project: &Project, args: &[&str], env: &[(&str, &str)]) -> (crate::support::Run, u64, Duration) {
    let mut cmd = provision_cmd(&shared_cache());
    cmd.current_dir(project.path()).args(args).envs(env.iter().copied());
    run_measured(&mut cmd)
}

/// The most a bounded case may take: the component limit (32 MiB) plus the
/// host itself, with room; an unbounded one grew to gigabytes.
const PEAK_KIB: u64 = 256 << 10;

#[test]
fn endless_and_oversized_registry_answers_are_cut_at_their_limits() {
    let registry = FakeRegistry::start();
    for (repo, expected) in [
        ("endless-tags", "sent a tag list larger than 4 MiB"),
        ("endless-manifest", "sent a manifest larger than 1 MiB"),
        ("huge-layer", "its layer is 536870912 bytes, over the 32 MiB a plugin may be"),
        ("lying-layer", "sent a layer larger than 32 MiB"),
    ] {
        let (run, peak, took) = measured(&stack_from(&registry.address, repo), &["plan"], &[]);
        let run = run.failed();
        assert!(run.message().contains(expected), "{repo}: {}", run.stderr);
        assert!(peak < PEAK_KIB, "{repo}: provision grew to {peak} KiB");
        eprintln!("{repo}: refused in {took:?}, peak {} MiB", peak >> 10);
    }
}

#[test]
fn a_registry_that_never_answers_is_given_up_on() {
    let registry = FakeRegistry::start();
    let project = stack_from(&registry.address, "silent");
    for args in [&["plan"][..], &["lock"], &["plugin", "pull", &format!("{}/silent:0.1.0", registry.address)]] {
        let (run, _, took) = measured(&project, args, &[("PROVISION_REGISTRY_TIMEOUT", "2")]);
        let run = run.failed();
        assert!(run.message().contains("did not answer within 2 s (set PROVISION_REGISTRY_TIMEOUT to wait longer)"), "{args:?}: {}", run.stderr);
        eprintln!("{args:?}: gave up after {took:?}");
    }
}

#[test]
fn what_a_registry_serves_must_be_a_component_and_its_text_is_escaped() {
    let registry = FakeRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n");
    let env = [("PROVISION_CACHE_DIR", cache.path().to_str().unwrap())];
    let run = project.provision_with_env(&["plugin", "pull", &format!("{}/script:0.1.0", registry.address)], &env).failed();
    assert!(run.message().contains("is not a provision plugin: its layer is not a WebAssembly component"), "{}", run.stderr);
    let stored = std::fs::read_dir(cache.path().join("plugins")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0, "a shell script was stored as a component");

    let run = project.provision_with_env(&["plugin", "pull", &format!("{}/escape:0.1.0", registry.address)], &env).failed();
    assert!(run.message().contains("is not a plugin name"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{7}'),
        "the registry's escape sequences reached the terminal: {:?}",
        run.stderr
    );
}

#[test]
fn credentials_go_only_to_the_registry_they_are_for_and_never_in_clear() {
    let registry = FakeRegistry::start();
    let authorizations = |port: &str, repo: &str| -> Vec<String> {
        let seen = registry.seen();
        seen.iter()
            .filter(|s| s["port"].as_u64().map(|p| p.to_string()).as_deref() == Some(port) && s["path"].as_str().unwrap_or_default().contains(repo))
            .filter_map(|s| s["authorization"].as_str().map(str::to_string))
            .collect()
    };
    let port = |address: &str| address.split(':').nth(1).unwrap().to_string();
    fn creds(host: &str) -> [(&'static str, &str); 3] {
        [("PROVISION_REGISTRY_USER", "ci"), ("PROVISION_REGISTRY_PASSWORD", "hunter2"), ("PROVISION_REGISTRY_HOST", host)]
    }
    let project = stack_from(&registry.address, "basic");

    // Asked for Basic by a registry they are not for: nothing is sent.
    let env = creds("registry.example.com");
    let run = project.provision_with_env(&["plan"], &env).failed();
    assert!(run.message().contains("for registry.example.com only: add"), "{}", run.stderr);
    assert!(authorizations(&port(&registry.address), "basic").is_empty(), "credentials went to a registry they are not for");

    // For this registry: sent (loopback, so plain HTTP is allowed).
    let env = creds(&registry.address);
    project.provision_with_env(&["plan"], &env);
    assert!(authorizations(&port(&registry.address), "basic").iter().any(|a| a.starts_with("Basic ")), "{:?}", registry.seen());

    // A token service in clear off this machine is refused before any request.
    let run = stack_from(&registry.address, "bearer-http").provision_with_env(&["plan"], &env).failed();
    assert!(run.message().contains("token service http://192.0.2.1/token is plain HTTP off this machine; refusing"), "{}", run.stderr);

    // A token service on another host gets no credentials meant for the registry.
    stack_from(&registry.address, "bearer-elsewhere").provision_with_env(&["plan"], &env);
    let token_requests: Vec<_> =
        registry.seen().into_iter().filter(|s| s["port"].as_u64().map(|p| p.to_string()) == Some(port(&registry.other))).collect();
    assert!(!token_requests.is_empty(), "the token service was asked: {:?}", registry.seen());
    assert!(token_requests.iter().all(|s| s["authorization"].is_null()), "credentials went to another host: {token_requests:?}");
    assert!(authorizations(&port(&registry.address), "bearer-elsewhere").iter().any(|a| a == "Bearer t0ken"), "{:?}", registry.seen());
}
