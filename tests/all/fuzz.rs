//! Bounded fuzzing, run by every `cargo test`: mutations of real stack.toml
//! files through the parser, of plans through the policy check, of compose
//! files through `import`, and plans of every shape a real component can
//! return (tests/plugins/shapeshifter) through the host's conversion of the
//! contract's types and the policy after it. None may panic. A crashing input is written
//! to tests/fuzz/ (commit it: every file there is replayed first, as a
//! regression test). `PROVISION_FUZZ_SEED` replays a run; the seed is
//! printed when one fails.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use provision::{
    desired::{Container, File, Image, Mount, MountSource, Network, PluginInfo, ServicePlan, ServiceRequest},
    import,
    plan::policy,
    runtime::{CallContext, Limits, Runtime},
    secrets::Secrets,
    stack::{Stack, Variables},
};
use provision_registry::{Requirement, RequirementSource, resolve};

use crate::support::repo_root;

/// Each target's time budget: together about a minute of CI's time.
const BUDGET: Duration = Duration::from_secs(15);

/// Small, fast, reproducible (xorshift64*).
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("PROVISION_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
        (Rng(seed), seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that mean something to TOML, to stack.toml, or to a path check.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    ",",
    ".",
    "\n",
    "#",
    "\\",
    "\\u0000",
    "services.",
    "plugins.",
    "stack",
    "plugin",
    "uses",
    "allow",
    "profile",
    "images",
    "path",
    "sha256",
    "version",
    "name",
    "true",
    "1e400",
    "-0",
    "9223372036854775808",
    "1979-05-27T07:32:00Z",
    "\u{1b}[2J",
    "é",
    "🦀",
    "..",
    "/",
    "_",
    "a_b",
    ".provision",
    ".git",
    "docker.sock",
    "",
    " ",
];

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 => bytes.splice(at..at, rng.pick(TOKENS).bytes()).for_each(drop),
            1 if at < bytes.len() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 if at < bytes.len() => bytes[at] = rng.next() as u8,
            _ => {
                // Repeat a slice: nesting and duplicate keys.
                let end = (at + rng.below(64)).min(bytes.len());
                let slice = bytes[at..end].to_vec();
                bytes.splice(at..at, slice).for_each(drop);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Mutate a plan's JSON as a tree, so most mutants are plans the policy sees:
/// strings become hostile paths and names, numbers extremes, lists grow.
fn mutate_json(rng: &mut Rng, input: &str) -> String {
    fn walk(rng: &mut Rng, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if rng.below(3) == 0 => {
                *s = (0..1 + rng.below(3)).map(|_| *rng.pick(TOKENS)).collect();
            }
            serde_json::Value::Number(_) if rng.below(3) == 0 => {
                *value = serde_json::json!(*rng.pick(&[0u64, 1, 65535, 65536, u32::MAX as u64, u64::MAX]));
            }
            serde_json::Value::Bool(b) if rng.below(4) == 0 => *b = !*b,
            serde_json::Value::Array(items) => {
                if !items.is_empty() && rng.below(4) == 0 {
                    let copy = items[rng.below(items.len())].clone();
                    items.push(copy);
                }
                items.iter_mut().for_each(|v| walk(rng, v));
            }
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| walk(rng, v)),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(input).expect("seeds are JSON");
    walk(rng, &mut value);
    value.to_string()
}

fn seeds() -> Vec<String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["examples/quickstart", "examples/rails", "tests/ui"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
}

fn regressions(target: &str) -> Vec<String> {
    let dir = repo_root().join("tests/fuzz").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
}

/// Run `check` on the regressions, then on mutations until the budget is
/// spent; save and report the first input that panics.
fn fuzz(target: &str, seeds: &[String], mutate: impl Fn(&mut Rng, &str) -> String, check: impl Fn(&str)) {
    for input in regressions(target) {
        check(&input);
    }
    let (mut rng, seed) = Rng::seeded();
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed() < BUDGET {
        let seed_input = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed_input);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let dir = repo_root().join("tests/fuzz").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("crash-{seed}-{runs}.txt"));
            std::fs::write(&file, &input).unwrap();
            panic!("{target}: input {runs} of seed {seed} panics; saved as {} (commit it as a regression)", file.display());
        }
        runs += 1;
    }
    eprintln!("fuzz {target}: {runs} inputs in {BUDGET:?}, seed {seed}, no panic");
}

#[test]
fn stack_toml_parsing_never_panics() {
    fuzz("stack-toml", &seeds(), mutate, |text| {
        let _ =
            Stack::parse(Path::new("stack.toml"), PathBuf::from("/nonexistent/project"), text.to_string(), None, &Variables::fixed(&[("X", "1")]));
    });
}

#[test]
fn the_policy_check_never_panics_on_a_hostile_plan() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join(".provision")).unwrap();
    std::fs::create_dir_all(project.path().join("app")).unwrap();
    let mut c = Container::new("server", Image::Pull("redis".into()));
    c.mounts.push(Mount { source: MountSource::Bind("app".into()), target: "/app".into(), read_only: true });
    c.mounts.push(Mount { source: MountSource::Volume("data".into()), target: "/data".into(), read_only: false });
    c.files.push(File { path: "/etc/app.conf".into(), contents: "x".into(), mode: 0o644 });
    c.networks.push("back".into());
    c.labels.insert("team".into(), "a".into());
    let plan = ServicePlan {
        containers: vec![c],
        volumes: vec!["data".into()],
        networks: vec![Network { name: "back".into(), internal: true }],
        ..ServicePlan::default()
    };
    let seed = serde_json::to_string(&plan).unwrap();
    let info: PluginInfo = serde_json::from_value(serde_json::json!({
        "name": "x", "version": "0.1.0", "summary": "", "config_schema": {}, "outputs": [], "uses": []
    }))
    .unwrap();
    let named = ["app"];
    let grants = policy::Grants { allow: &[], named: &named, project_dir: project.path() };
    fuzz("plan", &[seed], mutate_json, |json| {
        if let Ok(plan) = serde_json::from_str::<ServicePlan>(json) {
            let _ = policy::check(&plan, &info, &grants);
        }
    });
}

/// Fragments that mean something to YAML or to a compose file.
const YAML: &[&str] = &[
    "- ",
    ": ",
    "&a ",
    "*a",
    "<<: *a\n",
    "!reset ",
    "!override ",
    "${X}",
    "${X:?e}",
    "$$",
    "[",
    "]",
    "{",
    "}",
    "|\n",
    ">\n",
    "---\n",
    "\t",
    "\n  ",
    "services:\n",
    "extends: ",
    "include: [x.yaml]\n",
    "env_file: ",
    "volumes:\n",
    "- ./:/app\n",
    "- /:/host\n",
    "privileged: true\n",
    "depends_on: ",
    "profiles: [a]\n",
    "?",
    "'",
    "\"",
    "#",
    "~",
    "null",
    "0x10",
    "1e400",
    ".inf",
];

fn mutate_yaml(rng: &mut Rng, input: &str) -> String {
    let mut text = mutate(rng, input);
    for _ in 0..rng.below(4) {
        let at = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).nth(rng.below(text.len() + 1)).unwrap_or(0);
        let fragment = *rng.pick(YAML);
        text.insert_str(at, fragment);
    }
    text
}

#[test]
fn importing_a_compose_file_never_panics() {
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("tests/import")).unwrap() {
        let path = entry.unwrap().path().join("compose.yaml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            seeds.push(text);
        }
    }
    seeds.sort();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    let files = [file.clone()];
    fuzz("compose-yaml", &seeds, mutate_yaml, |text| {
        std::fs::write(&file, text).unwrap();
        let options = import::Options { files: &files, env_file: None, profiles: &[], project_name: Some("fuzz"), out_dir: dir.path(), grant: false };
        let _ = import::import(&options);
    });
}

#[test]
fn any_plan_a_component_returns_is_converted_and_checked_without_panics() {
    let runtime = Runtime::new(None, Limits::default()).unwrap();
    let requirement = Requirement {
        name: "shapeshifter".into(),
        version: semver::VersionReq::STAR,
        source: RequirementSource::Path { path: provision_test_artifacts::SHAPESHIFTER.into(), sha256: None },
    };
    let plugin = runtime.load(&resolve(&requirement, Path::new("/")).unwrap()).unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(project.path().join("data")).unwrap();
    let named = ["data"];
    let grants = policy::Grants { allow: &[], named: &named, project_dir: project.path() };
    let secrets = Arc::new(Secrets::from_key([7; 32]));
    fuzz(
        "wit-plan",
        &["1".to_string()],
        |rng, _| rng.next().to_string(),
        |seed| {
            let config = serde_json::json!({ "seed": seed.parse::<u64>().unwrap_or(1) });
            let request =
                ServiceRequest { project: "p".into(), service: "x".into(), profile: "dev".into(), config, bindings: vec![], collected: false };
            let context = Arc::new(CallContext { project: "p".into(), service: "x".into(), secrets: secrets.clone() });
            if let Ok((Ok(plan), _)) = runtime.plan(&plugin, &request, context) {
                let _ = policy::check(&plan, &plugin.info, &grants);
                plan.containers.iter().chain(&plan.tasks).for_each(|c| drop(c.spec_hash()));
            }
        },
    );
}
