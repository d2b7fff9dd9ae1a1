//! Plan: from a stack to its desired state. Owns the outline, in named
//! steps: resolve and load each plugin (`resolve_and_load`), split each
//! service's host-level options from its plugin config (`options`), wire
//! services to the roles their plugins use (`wire`), plan each service in
//! start order (`service`: bindings, references, the plugin's call, the
//! policy, options, build inputs), then the project-wide checks. Must not
//! touch an engine: `plan` works without one.

pub mod build_context;
pub mod host_path;
pub mod host_tree;
mod options;
pub mod policy;
mod service;
pub mod watch_policy;
mod wire;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use provision_registry::{LockedPlugin, Requirement, Resolved, Resolver};
use semver::Version;

use service::Planner;

use crate::{
    desired::{self as d, DesiredState, PluginRef, ServiceState},
    runtime::{LogLevel, Plugin, Runtime},
    secrets::Secrets,
    stack::{Stack, StackError},
};

pub struct Options {
    pub project: String,
    pub profile: String,
    /// Image substitutes (`[images]` and `--images`): reference → image.
    pub images: BTreeMap<String, String>,
    /// Every published port a free one unless `publish` names it: the test
    /// and ci profiles, and `run`, so parallel jobs never collide.
    pub ephemeral_ports: bool,
}

/// A plan and how long its parts took (for `plan --timings` and benches).
pub struct Planned {
    pub state: DesiredState,
    /// The stack.lock entries of the plugins as resolved.
    pub locked_plugins: Vec<LockedPlugin>,
    pub timings: Timings,
    /// What plugins logged, tagged with plugin and service.
    pub logs: Vec<(LogLevel, String)>,
}

#[derive(Debug, Default)]
pub struct Timings {
    pub resolve: Duration,
    pub plugins: Vec<PluginTiming>,
    pub total: Duration,
}

#[derive(Debug)]
pub struct PluginTiming {
    pub plugin: String,
    /// Compile (cold) or load of cached compiled code (warm).
    pub load: Duration,
    pub cached: bool,
    /// Linking plus the `info` call.
    pub instantiate: Duration,
    /// Fresh instances and `plan` calls, summed over its services.
    pub plan_instantiate: Duration,
    pub plan_call: Duration,
}

pub(super) struct Loaded {
    pub(super) resolved: Resolved,
    pub(super) plugin: Plugin,
}

pub fn plan(stack: &Stack, resolver: &Resolver, runtime: &Runtime, secrets: Arc<Secrets>, options: &Options) -> Result<Planned, StackError> {
    let started = Instant::now();
    let mut timings = Timings::default();
    let (requirements, plugins) = resolve_and_load(stack, resolver, runtime, &mut timings)?;
    let mut configs = HashMap::new();
    for service in &stack.services {
        configs.insert(service.name.as_str(), options::split(stack, service, &plugins[&service.plugin])?);
    }
    let (dependencies, collected) = wire::wire(stack, &plugins, &configs)?;
    let order = wire::start_order(stack, &dependencies)?;

    let mut planner = Planner {
        stack,
        runtime,
        secrets,
        options,
        plugins: &plugins,
        dependencies: &dependencies,
        collected: &collected,
        timings: &mut timings,
        planned: BTreeMap::new(),
        host_paths: d::HostPaths::new(),
        substitutes: BTreeMap::new(),
        logs: Vec::new(),
    };
    for &name in &order {
        planner.service(name, &configs[name])?;
    }
    let Planner { mut planned, host_paths, substitutes, logs, .. } = planner;

    check_volume_references(stack, &planned)?;
    let third_party = |plugin: &str| plugins.get(plugin).is_some_and(|p| !matches!(p.resolved.source, provision_registry::Source::Builtin));
    host_path::hand_over_inside_writable(stack, &mut planned, &host_paths, &third_party)?;
    check_completed(stack, &planned)?;
    check_project_wide(stack, &planned)?;

    let state = DesiredState {
        project: options.project.clone(),
        profile: options.profile.clone(),
        plugins: requirements.iter().map(|r| plugin_ref(&plugins[&r.name])).collect(),
        services: order.iter().map(|name| planned.remove(name).expect("planned")).collect(),
        substitutes,
        build_scope: options.project.clone(),
        host_paths,
        external_networks: stack.networks.iter().filter_map(|(name, d)| Some((name.clone(), d.external.clone()?))).collect(),
    };
    timings.total = started.elapsed();
    Ok(Planned { state, locked_plugins: lock_entries(&requirements, &plugins), timings, logs })
}

/// Each requirement resolved (`provision_registry`) and its plugin loaded:
/// compiled, or its compiled code read from the cache.
fn resolve_and_load(
    stack: &Stack,
    resolver: &Resolver,
    runtime: &Runtime,
    timings: &mut Timings,
) -> Result<(Vec<Requirement>, HashMap<String, Loaded>), StackError> {
    let started = Instant::now();
    let requirements = stack.requirements();
    let mut resolved = Vec::new();
    for requirement in &requirements {
        resolved.push(resolver.resolve(requirement).map_err(|e| requirement_error(stack, requirement, e.to_string()))?);
    }
    timings.resolve = started.elapsed();
    let mut plugins = HashMap::new();
    for (requirement, resolved) in requirements.iter().zip(resolved) {
        let plugin = load(stack, runtime, requirement, &resolved)?;
        timings.plugins.push(PluginTiming {
            plugin: requirement.name.clone(),
            load: plugin.stats.compile,
            cached: plugin.stats.cached,
            instantiate: plugin.stats.instantiate,
            plan_instantiate: Duration::ZERO,
            plan_call: Duration::ZERO,
        });
        plugins.insert(requirement.name.clone(), Loaded { resolved, plugin });
    }
    Ok((requirements, plugins))
}

/// The stack.lock entries of the plugins as resolved, in stack.lock's
/// order, so the two compare equal when nothing changed.
fn lock_entries(requirements: &[Requirement], plugins: &HashMap<String, Loaded>) -> Vec<LockedPlugin> {
    let mut locked: Vec<LockedPlugin> = requirements
        .iter()
        .map(|r| {
            let loaded = &plugins[&r.name];
            loaded.resolved.lock_entry(&r.source, &loaded.plugin.info.version)
        })
        .collect();
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    locked
}

/// `after = { x = "completed" }` needs `x` to have one-shot tasks.
fn check_completed(stack: &Stack, planned: &BTreeMap<&str, ServiceState>) -> Result<(), StackError> {
    for state in planned.values() {
        for dep in state.depends_on.iter().filter(|d| d.wait == d::WaitFor::Completed) {
            if planned.get(dep.service.as_str()).is_some_and(|used| used.plan.tasks.is_empty()) {
                return Err(stack.error_at(
                    &format!("services.{}.after.{}", state.name, dep.service),
                    format!("service `{}` waits for `{}` to complete, but `{}` runs no one-shot task", state.name, dep.service, dep.service),
                    "nothing to complete",
                    Some("wait for \"ready\" or \"started\" instead".into()),
                ));
            }
        }
    }
    Ok(())
}

fn load(stack: &Stack, runtime: &Runtime, requirement: &Requirement, resolved: &Resolved) -> Result<Plugin, StackError> {
    let name = &requirement.name;
    let plugin =
        runtime.load(resolved).map_err(|e| requirement_error(stack, requirement, format!("plugin `{name}` (from {}) {e}", resolved.source)))?;
    let info = &plugin.info;
    if &info.name != name {
        return Err(requirement_error(
            stack,
            requirement,
            format!("plugin `{name}` (from {}) calls itself `{}`; refusing a plugin that is not what was asked for", resolved.source, info.name),
        ));
    }
    let version = Version::parse(&info.version).map_err(|e| {
        requirement_error(stack, requirement, format!("plugin `{name}` reports version {:?}, which is not semver: {e}", info.version))
    })?;
    if !requirement.version.matches(&version) || resolved.version.as_ref().is_some_and(|v| *v != version) {
        return Err(requirement_error(
            stack,
            requirement,
            format!("plugin `{name}` (from {}) is version {version}, which does not match `{}`", resolved.source, requirement.version),
        ));
    }
    Ok(plugin)
}

/// An error about where a plugin comes from: at its [plugins] entry if it
/// has one, else at the first service that names it.
fn requirement_error(stack: &Stack, requirement: &Requirement, message: String) -> StackError {
    let name = &requirement.name;
    if stack.plugins.contains_key(name) {
        return stack.error_at(&format!("plugins.{name}"), message, "required here", None);
    }
    let service = stack.services.iter().find(|s| &s.plugin == name).expect("requirements come from services");
    let key = if service.plugin == service.name { format!("services.{}", service.name) } else { format!("services.{}.plugin", service.name) };
    stack.error_at(&key, message, "plugin named here", None)
}

fn plan_error(stack: &Stack, service: &str, who: &str, error: d::PlanError) -> StackError {
    match error {
        d::PlanError::InvalidConfig { key, message } => {
            let path = if key.is_empty() { format!("services.{service}") } else { format!("services.{service}.{key}") };
            let (label, message) = if key.is_empty() {
                ("in this service".to_string(), format!("{who}: {message}"))
            } else {
                (format!("`{key}`"), format!("{who}: invalid `{key}`: {message}"))
            };
            stack.error_at(&path, message, label, None)
        }
        d::PlanError::UnusableBinding(message) => {
            stack.error_at(&format!("services.{service}.uses"), format!("{who}: {message}"), "check what this service uses", None)
        }
        d::PlanError::Failed(message) => {
            stack.error_at(&format!("services.{service}"), format!("{who} failed: {message}"), "while planning this service", None)
        }
    }
}

/// `SERVICE/VOLUME` mounts must name a volume that service declares.
fn check_volume_references(stack: &Stack, planned: &BTreeMap<&str, ServiceState>) -> Result<(), StackError> {
    for state in planned.values() {
        for container in state.plan.containers.iter().chain(&state.plan.tasks) {
            for mount in &container.mounts {
                let d::MountSource::Volume(name) = &mount.source else { continue };
                let Some((service, volume)) = name.split_once('/') else { continue };
                if !planned.get(service).is_some_and(|s| s.plan.volumes.iter().any(|v| v == volume)) {
                    return Err(stack.error_at(
                        &format!("services.{}", state.name),
                        format!("service `{}` mounts volume `{name}`, but service `{service}` declares no volume `{volume}`", state.name),
                        "planned here",
                        None,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What must hold across services: one meaning per network name, one
/// container per DNS name (a service's name answers for its main container,
/// `SERVICE-CONTAINER` for each container), and one output per variable
/// name of `provision env` and `run` (`web`'s `api_url` and `web-api`'s
/// `url` would both be `WEB_API_URL`: one would take the other's place).
fn check_project_wide(stack: &Stack, planned: &BTreeMap<&str, ServiceState>) -> Result<(), StackError> {
    let mut networks: HashMap<&str, (bool, &str)> = HashMap::new();
    let mut dns: HashMap<String, &str> = HashMap::new();
    let mut variables: HashMap<String, (&str, &str)> = HashMap::new();
    for state in planned.values() {
        let at = format!("services.{}", state.name);
        for output in &state.plan.outputs {
            let variable = d::output_variable("", &state.name, &output.name);
            if let Some((service, other)) = variables.insert(variable.clone(), (&state.name, &output.name)) {
                return Err(stack.error_at(
                    &at,
                    format!(
                        "output `{}` of service `{}` and output `{other}` of service `{service}` would both be {variable} in `provision env` and `run`",
                        output.name, state.name
                    ),
                    "planned here",
                    Some("rename one of the services, so that no service name and output name join into another's".into()),
                ));
            }
        }
        for network in &state.plan.networks {
            match networks.insert(&network.name, (network.internal, &state.name)) {
                Some((internal, other)) if internal != network.internal => {
                    let setting = |internal: bool| if internal { "internal" } else { "not internal" };
                    return Err(stack.error_at(
                        &at,
                        format!(
                            "network `{}` is {} for service `{}` but {} for `{other}`; one network has one setting",
                            network.name,
                            setting(network.internal),
                            state.name,
                            setting(internal)
                        ),
                        "planned here",
                        Some("give the networks different names, or make both declarations agree".into()),
                    ));
                }
                _ => {}
            }
        }
        let names = state.plan.containers.iter().map(|c| format!("{}-{}", state.name, c.name)).chain(std::iter::once(state.name.clone()));
        for name in names {
            if let Some(other) = dns.insert(name.clone(), &state.name) {
                return Err(stack.error_at(
                    &at,
                    format!("DNS name `{name}` would answer for both service `{other}` and service `{}`", state.name),
                    "planned here",
                    Some("rename one of the services".into()),
                ));
            }
        }
    }
    Ok(())
}

fn plugin_ref(loaded: &Loaded) -> PluginRef {
    PluginRef {
        name: loaded.plugin.info.name.clone(),
        version: loaded.plugin.info.version.clone(),
        contract: loaded.plugin.contract.to_string(),
        source: loaded.resolved.source.to_string(),
        sha256: loaded.resolved.sha256.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{runtime::Limits, stack::Variables};

    /// `text` as a project's stack.toml, planned with the built-in plugins
    /// (really compiled and called), in a folder removed afterwards.
    pub fn planned(text: &str) -> Result<Planned, StackError> {
        static PROJECTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = PROJECTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("provision-plan-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stack.toml");
        let stack = Stack::parse(&path, dir.clone(), text.to_string(), None, &Variables::fixed(&[]));
        let result = stack.and_then(|stack| {
            let resolver = Resolver::new(&dir, None, None, false);
            let runtime = Runtime::new(None, Limits::default()).unwrap();
            let options = Options { project: "p".into(), profile: "dev".into(), images: BTreeMap::new(), ephemeral_ports: false };
            plan(&stack, &resolver, &runtime, Arc::new(Secrets::from_key([7; 32])), &options)
        });
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    const STACK: &str = r#"
[stack]
name = "p"

[services.proxy]
plugin = "nginx"
routes = { "/" = "web" }

[services.web]
plugin = "container"
image = "web:1"
ports = ["3000"]
env = { DATABASE_URL = "${db.url}" }

[services.db]
plugin = "postgres"
"#;

    #[test]
    fn each_service_is_planned_after_what_it_uses_and_sees_its_outputs() {
        let planned = planned(STACK).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<&str> = planned.state.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "web", "proxy"], "in start order, not file order");
        let url = &planned.state.services[0].plan.outputs.iter().find(|o| o.name == "url").unwrap().value;
        let web = &planned.state.services[1].plan.containers[0];
        assert_eq!(web.env.get("DATABASE_URL"), Some(url), "${{db.url}} is filled from the plan before it");
        assert!(planned.state.services[0].plan.outputs.iter().any(|o| o.name == "url" && o.secret), "a URL with the password is secret");
        let locked: Vec<&str> = planned.locked_plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(locked, ["container", "nginx", "postgres"], "in stack.lock's order");
        assert_eq!(planned.timings.plugins.len(), 3);
    }

    #[test]
    fn a_reference_to_an_output_no_service_has_names_its_key() {
        let text = STACK.replace("${db.url}", "${db.nope}");
        let err = planned(&text).err().expect("refused");
        assert!(err.to_string().contains("service `db` has no output `nope`"), "{err}");
        let at = text.find("DATABASE_URL").unwrap();
        let debug = format!("{err:?}");
        assert!(debug.contains(&format!("offset: SourceOffset({at})")), "at the env key that refers to it: {debug}");
    }
}
