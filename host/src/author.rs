//! The plugin author's kit: `plugin new` scaffolds a standalone crate,
//! `plugin build` compiles it for wasm32-wasip2 and checks the component,
//! `plugin test` plans fixtures without Docker and compares golden files.
//! Must not need an engine or the network beyond cargo's crate registry.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use miette::{Context, IntoDiagnostic, Result, bail, miette};
use provision_registry::{Requirement, RequirementSource, Resolved};

use crate::{
    desired::{Binding, MetricsTarget, PlanError, ServiceRequest},
    runtime::{CallContext, Plugin, Runtime},
    secrets::Secrets,
};

/// The SDK every built-in plugin is written with, carried by the binary so
/// that a new plugin gets exactly it with no network but the crate registry.
const SDK: &[(&str, &str)] = &[
    ("provision-sdk/Cargo.toml", include_str!("../../plugins/sdk/Cargo.toml")),
    ("provision-sdk/src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("provision-sdk/src/builders.rs", include_str!("../../plugins/sdk/src/builders.rs")),
    ("provision-sdk/src/workload.rs", include_str!("../../plugins/sdk/src/workload.rs")),
];

/// Write a new plugin crate NAME in `dir` (which must not exist): the
/// plugin, its SDK (`provision-sdk/`, reading the contract from `wit/`),
/// the current contract's WIT, a Cargo.lock with the versions the built-ins
/// are tested with, a README and a test fixture.
pub fn scaffold(dir: &Path, name: &str) -> Result<()> {
    if !valid_plugin_name(name) {
        bail!("plugin name {name:?}: use lower-case letters, digits and `-`, starting with a letter");
    }
    if dir.exists() {
        bail!("{} already exists; choose another name or folder", dir.display());
    }
    let contract = provision_registry::contract::CURRENT.to_string();
    let fill = |template: &str| template.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_")).replace("{{contract}}", &contract);
    let files = [
        ("Cargo.toml", fill(include_str!("author/template/Cargo.toml.tmpl"))),
        ("src/lib.rs", fill(include_str!("author/template/lib.rs.tmpl"))),
        ("README.md", fill(include_str!("author/template/README.md.tmpl"))),
        ("tests/basic.toml", fill(include_str!("author/template/fixture.toml.tmpl"))),
        ("wit/provider.wit", provision_registry::contract::CURRENT_WIT.to_string()),
        ("Cargo.lock", include_str!("../../plugins/Cargo.lock").to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    let sdk = SDK.iter().map(|(path, text)| (*path, text.to_string()));
    for (path, text) in files.into_iter().chain(sdk) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("files are in folders")).into_diagnostic()?;
        std::fs::write(&path, text).into_diagnostic().with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A built, checked plugin.
pub struct Built {
    pub wasm: PathBuf,
    pub plugin: Plugin,
    pub sha256: String,
    pub size: usize,
}

/// `cargo build --release --target wasm32-wasip2` in `dir`, then load the
/// component and check it: it exports the contract, its info is well formed
/// and its config schema is a JSON Schema object.
pub fn build(dir: &Path, runtime: &Runtime) -> Result<Built> {
    let manifest = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&manifest).into_diagnostic().with_context(|| format!("no plugin crate in {} (no Cargo.toml)", dir.display()))?;
    let package: toml::Table = toml::from_str(&text).into_diagnostic().with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let name =
        package.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()).ok_or_else(|| miette!("Cargo.toml has no [package] name"))?;

    ensure_wasm_target()?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .status()
        .into_diagnostic()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed (see above)");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| dir.join("target"));
    let target = std::path::absolute(&target).into_diagnostic()?;
    let wasm = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!("cargo built no {}; is the crate type cdylib?", wasm.display());
    }
    let (resolved, plugin) = load_component(&wasm, runtime)?;
    Ok(Built { wasm, sha256: resolved.sha256.clone(), size: resolved.wasm.len(), plugin })
}

/// Read a component file, load it as a plugin and check its info: what
/// `plugin build` and `plugin push` both start from.
pub fn load_component(path: &Path, runtime: &Runtime) -> Result<(Resolved, Plugin)> {
    let requirement = Requirement {
        name: path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(),
        version: semver::VersionReq::STAR,
        source: RequirementSource::Path { path: path.to_path_buf(), sha256: None },
    };
    let resolved = provision_registry::resolve(&requirement, Path::new(".")).into_diagnostic()?;
    let plugin = runtime.load(&resolved).map_err(|e| miette!("{}: {e}", path.display()))?;
    check_info(&plugin)?;
    Ok((resolved, plugin))
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "wasm32-wasip2") => Ok(()),
        Ok(_) => {
            eprintln!("adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
            let status = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status().into_diagnostic()?;
            if !status.success() {
                bail!("`rustup target add wasm32-wasip2` failed");
            }
            Ok(())
        }
        // No rustup: let cargo say whether the target is there.
        Err(_) => Ok(()),
    }
}

/// Plugin names: lower-case letters, digits and `-`, starting with a letter.
fn valid_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase()) && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_info(plugin: &Plugin) -> Result<()> {
    let info = &plugin.info;
    let problem = |what: String| miette!("the plugin's info is not well formed: {what}");
    if !valid_plugin_name(&info.name) {
        return Err(problem(format!("name {:?} must be lower-case letters, digits and `-`, starting with a letter", info.name)));
    }
    semver::Version::parse(&info.version).map_err(|_| problem(format!("version {:?} is not semver", info.version)))?;
    if info.summary.trim().is_empty() {
        return Err(problem("summary is empty".into()));
    }
    check_schema(&info.config_schema).map_err(|e| problem(format!("config-schema: {e}")))?;
    for role in &info.uses {
        if role.name.is_empty() {
            return Err(problem("a role has no name".into()));
        }
    }
    Ok(())
}

/// The structural rules of JSON Schema that matter here: an object (or
/// boolean), known `type` names, `properties` an object of schemas,
/// `required` a list of strings.
fn check_schema(schema: &serde_json::Value) -> Result<(), String> {
    const TYPES: &[&str] = &["null", "boolean", "object", "array", "number", "string", "integer"];
    let object = match schema {
        serde_json::Value::Bool(_) => return Ok(()),
        serde_json::Value::Object(o) => o,
        other => return Err(format!("a schema must be an object or a boolean, found {other}")),
    };
    match object.get("type") {
        None => {}
        Some(serde_json::Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(serde_json::Value::Array(ts)) if ts.iter().all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
        Some(other) => return Err(format!("`type` {other} is not a JSON Schema type")),
    }
    if let Some(properties) = object.get("properties") {
        let properties = properties.as_object().ok_or("`properties` must be an object")?;
        for (key, sub) in properties {
            check_schema(sub).map_err(|e| format!("properties.{key}: {e}"))?;
        }
    }
    if let Some(required) = object.get("required")
        && !required.as_array().is_some_and(|r| r.iter().all(|k| k.is_string()))
    {
        return Err("`required` must be a list of strings".into());
    }
    for key in ["$defs", "definitions"] {
        if let Some(defs) = object.get(key).and_then(|d| d.as_object()) {
            for (name, sub) in defs {
                check_schema(sub).map_err(|e| format!("{key}.{name}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// One fixture's outcome.
pub struct Outcome {
    pub fixture: String,
    pub passed: bool,
    /// What differs, when it did not pass.
    pub detail: String,
}

/// Plan every `tests/*.toml` fixture and compare with `tests/*.plan.json`
/// (`bless`: write them instead).
pub fn test(dir: &Path, runtime: &Runtime, plugin: &Plugin, bless: bool) -> Result<Vec<Outcome>> {
    let tests = dir.join("tests");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&tests)
        .into_diagnostic()
        .with_context(|| format!("no fixtures: {} does not exist", tests.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    fixtures.sort();
    if fixtures.is_empty() {
        bail!("no fixtures in {}: add tests/NAME.toml (see the README)", tests.display());
    }
    let mut outcomes = Vec::new();
    for fixture in fixtures {
        let name = fixture.file_stem().expect("a file").to_string_lossy().to_string();
        let request = read_fixture(&fixture)?;
        // A fixed key: generated secrets are the same on every run, so they can be golden.
        let context = Arc::new(CallContext {
            project: request.project.clone(),
            service: request.service.clone(),
            secrets: Arc::new(Secrets::from_key([0; 32])),
        });
        let actual = match runtime.plan(plugin, &request, context) {
            Ok((Ok(plan), _)) => serde_json::json!({ "plan": plan }),
            Ok((Err(error), _)) => serde_json::json!({ "error": plan_error_json(&error) }),
            Err(e) => serde_json::json!({ "crash": e.to_string() }),
        };
        let actual = serde_json::to_string_pretty(&actual).into_diagnostic()? + "\n";
        let golden = tests.join(format!("{name}.plan.json"));
        if bless {
            std::fs::write(&golden, &actual).into_diagnostic()?;
            outcomes.push(Outcome { fixture: name, passed: true, detail: "blessed".into() });
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        let detail = if expected.is_empty() {
            format!("no {}; run with --bless to create it", golden.display())
        } else if expected != actual {
            first_difference(&expected, &actual)
        } else {
            String::new()
        };
        outcomes.push(Outcome { fixture: name, passed: expected == actual, detail });
    }
    Ok(outcomes)
}

fn plan_error_json(error: &PlanError) -> serde_json::Value {
    match error {
        PlanError::InvalidConfig { key, message } => serde_json::json!({ "invalid-config": { "key": key, "message": message } }),
        PlanError::UnusableBinding(m) => serde_json::json!({ "unusable-binding": m }),
        PlanError::Failed(m) => serde_json::json!({ "failed": m }),
    }
}

fn read_fixture(path: &Path) -> Result<ServiceRequest> {
    let text = std::fs::read_to_string(path).into_diagnostic()?;
    let table: toml::Table = toml::from_str(&text).into_diagnostic().with_context(|| format!("{} is not valid TOML", path.display()))?;
    let string = |key: &str, default: &str| table.get(key).and_then(|v| v.as_str()).unwrap_or(default).to_string();
    for key in table.keys() {
        if !["profile", "service", "project", "collected", "config", "bindings"].contains(&key.as_str()) {
            bail!("{}: unknown key `{key}` (a fixture has profile, service, project, collected, [config] and [[bindings]])", path.display());
        }
    }
    let config = serde_json::to_value(table.get("config").cloned().unwrap_or(toml::Value::Table(Default::default()))).into_diagnostic()?;
    let mut bindings = Vec::new();
    for b in table.get("bindings").and_then(|b| b.as_array()).into_iter().flatten() {
        let field =
            |k: &str| b.get(k).and_then(|v| v.as_str()).map(str::to_string).ok_or_else(|| miette!("{}: a binding needs `{k}`", path.display()));
        let outputs = b
            .get("outputs")
            .and_then(|o| o.as_table())
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect())
            .unwrap_or_default();
        let metrics = b
            .get("metrics")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
            .map(|m| {
                let target: Option<MetricsTarget> = m.clone().try_into().ok();
                target.ok_or_else(|| miette!("{}: a metrics entry is {{ host, port, path, container }}", path.display()))
            })
            .collect::<Result<_>>()?;
        let service = field("service")?;
        // One replica unless the fixture lists them.
        let replicas = match b.get("replicas").and_then(|r| r.as_array()) {
            Some(list) => list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            None => vec![format!("{service}-server")],
        };
        bindings.push(Binding { role: field("role")?, service, plugin: field("plugin")?, outputs, metrics, replicas });
    }
    let collected = table.get("collected").and_then(|v| v.as_bool()).unwrap_or(false);
    Ok(ServiceRequest {
        project: string("project", "test"),
        service: string("service", "web"),
        profile: string("profile", "dev"),
        config,
        bindings,
        collected,
    })
}

fn first_difference(expected: &str, actual: &str) -> String {
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            return format!("line {}: expected {}, found {}", i + 1, e.trim(), a.trim());
        }
    }
    format!("expected {} lines, found {}", expected.lines().count(), actual.lines().count())
}
