//! The plugin author's walk-through, exactly as the README tells it:
//! new → build → use it from a stack by path → test → push → require it by
//! version → lock.

use crate::support::{Project, RegistryServer, needs_registry_server};

#[test]
fn the_author_walk_through_works_end_to_end() {
    needs_registry_server!();
    let workspace = Project::new("[services.db]\nplugin = \"postgres\"\n");
    // Shared between runs so the plugin's dependencies compile once.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("author-kit");
    let target = target.to_str().unwrap();
    let provision = |args: &[&str]| workspace.provision_with_env(args, &[("CARGO_TARGET_DIR", target)]);

    // new
    let run = provision(&["plugin", "new", "greeter"]).ok();
    assert!(run.stdout.contains("created plugin `greeter` in greeter"), "{}", run.stdout);
    for file in ["Cargo.toml", "src/lib.rs", "wit/provider.wit", "README.md", "tests/basic.toml"] {
        assert!(workspace.path().join("greeter").join(file).exists(), "{file} was not scaffolded");
    }
    let run = provision(&["plugin", "new", "greeter"]).failed();
    assert!(run.message().contains("already exists"), "{}", run.stderr);

    // build
    let run = provision(&["plugin", "build", "greeter"]).ok();
    assert!(run.stdout.contains("built greeter 0.1.0 (contract 0.5.0)"), "{}\n{}", run.stdout, run.stderr);
    let wasm = format!("{target}/wasm32-wasip2/release/greeter.wasm");

    // use it from a stack by path
    workspace
        .write("stack.toml", &format!("[plugins]\ngreeter = {{ path = \"{wasm}\" }}\n[services.web]\nplugin = \"greeter\"\ngreeting = \"hi\"\n"));
    let state = provision(&["plan", "--json"]).ok().json();
    assert_eq!(state["services"][0]["plan"]["containers"][0]["env"]["GREETING"], "hi");
    workspace.write(
        "stack.toml",
        "[plugins]\ngreeter = { path = \"x\" }\n[services.web]\nplugin = \"greeter\"\ngreting = \"typo\"\n"
            .replace("\"x\"", &format!("\"{wasm}\""))
            .as_str(),
    );
    let run = provision(&["plan"]).failed();
    assert!(run.message().contains("invalid `greting`: unknown field `greting`"), "config errors point at the key: {}", run.stderr);

    // test: no golden file yet, bless, pass, then a change is caught
    let run = provision(&["plugin", "test", "greeter"]).failed();
    assert!(run.stdout.contains("run with --bless"), "{}", run.stdout);
    provision(&["plugin", "test", "greeter", "--bless"]).ok();
    let run = provision(&["plugin", "test", "greeter"]).ok();
    assert!(run.stdout.contains("fixture basic ... ok") && run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);
    let fixture = workspace.path().join("greeter/tests/basic.toml");
    std::fs::write(&fixture, std::fs::read_to_string(&fixture).unwrap().replace("8080", "8081")).unwrap();
    let run = provision(&["plugin", "test", "greeter"]).failed();
    assert!(run.stdout.contains("fixture basic ... FAILED") && run.stdout.contains("8081"), "{}", run.stdout);

    // push 0.1.0, then 0.2.0
    let registry = RegistryServer::start(false);
    let repo = format!("{}/acme/greeter", registry.address);
    let run = provision(&["plugin", "push", &wasm, &repo]).ok();
    assert!(run.stdout.contains("pushed greeter 0.1.0"), "{}", run.stdout);
    let manifest = workspace.path().join("greeter/Cargo.toml");
    std::fs::write(&manifest, std::fs::read_to_string(&manifest).unwrap().replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1)).unwrap();
    provision(&["plugin", "build", "greeter"]).ok();
    let run = provision(&["plugin", "push", &wasm, &format!("{repo}:0.2.0")]).ok();
    assert!(run.stdout.contains("pushed greeter 0.2.0"), "{}", run.stdout);

    // require it by version, lock, and run locked
    workspace.write(
        "stack.toml",
        &format!("[plugins]\ngreeter = {{ registry = \"{repo}\", version = \"^0.1\" }}\n[services.web]\nplugin = \"greeter\"\n"),
    );
    provision(&["lock"]).ok();
    let lock = std::fs::read_to_string(workspace.path().join("stack.lock")).unwrap();
    assert!(lock.contains("version = \"0.1.0\"") && lock.contains(&format!("source = \"oci:{repo}\"")), "{lock}");
    let state = provision(&["plan", "--locked", "--json"]).ok().json();
    assert_eq!(state["plugins"][0]["version"], "0.1.0");

    workspace.write(
        "stack.toml",
        &format!("[plugins]\ngreeter = {{ registry = \"{repo}\", version = \"^0.2\" }}\n[services.web]\nplugin = \"greeter\"\n"),
    );
    provision(&["plan", "--locked"]).failed();
    provision(&["lock"]).ok();
    let state = provision(&["plan", "--locked", "--json"]).ok().json();
    assert_eq!(state["plugins"][0]["version"], "0.2.0");
}
