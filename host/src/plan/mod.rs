//! Plan: from a stack to its desired state. Owns the outline: resolve and
//! load each plugin, wire services to the roles their plugins use (`wire`),
//! call the plugins in dependency order, each seeing the outputs of the
//! services it uses, check each answer (`policy`) and hash build inputs
//! (`build_context`). Must not touch an engine: `plan` works without one.

pub mod build_context;
pub mod host_path;
pub mod host_tree;
mod options;
pub mod policy;
mod wire;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use provision_registry::{LockedPlugin, Requirement, Resolved, Resolver};
use semver::Version;

use crate::{
    desired::{self as d, DesiredState, PluginRef, ServiceState},
    runtime::{CallContext, LogLevel, Plugin, Runtime},
    secrets::Secrets,
    stack::{Stack, StackError, interpolate::fill_outputs},
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

    let requirements = stack.requirements();
    let mut resolved = Vec::new();
    for requirement in &requirements {
        resolved.push(resolver.resolve(requirement).map_err(|e| requirement_error(stack, requirement, e.to_string()))?);
    }
    timings.resolve = started.elapsed();

    let mut plugins: HashMap<String, Loaded> = HashMap::new();
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

    let mut configs = HashMap::new();
    for service in &stack.services {
        configs.insert(service.name.as_str(), options::split(stack, service, &plugins[&service.plugin])?);
    }
    // `collected`: services some collector uses, asked to plan their metrics.
    let (dependencies, collected) = wire::wire(stack, &plugins, &configs)?;
    let order = wire::start_order(stack, &dependencies)?;

    let mut locked_plugins: Vec<LockedPlugin> = requirements
        .iter()
        .map(|r| {
            let loaded = &plugins[&r.name];
            loaded.resolved.lock_entry(&r.source, &loaded.plugin.info.version)
        })
        .collect();
    // In stack.lock's order, so the two compare equal when nothing changed.
    locked_plugins.sort_by(|a, b| a.name.cmp(&b.name));

    let mut logs = Vec::new();
    let mut host_paths = d::HostPaths::new();
    let mut substitutes = BTreeMap::new();
    let mut planned: BTreeMap<&str, ServiceState> = BTreeMap::new();
    let mut services = Vec::new();
    for name in order {
        let service = stack.service(name).expect("ordered services exist");
        let loaded = &plugins[&service.plugin];
        let info = &loaded.plugin.info;
        let (service_options, config, user_pins) = &configs[name];
        let bindings = dependencies[name]
            .iter()
            .filter(|dep| !dep.role.is_empty())
            .map(|dep| {
                let used = &planned[dep.service.as_str()];
                d::Binding {
                    role: dep.role.clone(),
                    service: dep.service.clone(),
                    plugin: used.plugin.clone(),
                    // Every container answers to `SERVICE-CONTAINER`; the
                    // main one's copies are `SERVICE-CONTAINER-N`.
                    replicas: used
                        .plan
                        .containers
                        .first()
                        .map_or_else(Vec::new, |main| main.copy_names().into_iter().map(|name| format!("{}-{name}", dep.service)).collect()),
                    outputs: used.plan.outputs.iter().filter(|o| dep.secrets || !o.secret).map(|o| (o.name.clone(), o.value.clone())).collect(),
                    metrics: used
                        .plan
                        .metrics
                        .iter()
                        .map(|m| d::MetricsTarget {
                            // Every container has this alias on every network it joins.
                            host: format!("{}-{}", dep.service, m.container),
                            port: m.port,
                            path: m.path.clone(),
                            container: m.container.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        // `${db.url}` in the user's strings: outputs of services planned before.
        let output = |service: &str, output: &str| {
            planned.get(service).and_then(|s| s.plan.outputs.iter().find(|o| o.name == output)).map(|o| o.value.clone())
        };
        let fill = |text: &str, key: &str| {
            fill_outputs(text, &output).map_err(|e| stack.error_at(&format!("services.{name}.{key}"), e, "referenced here", None))
        };
        let config = options::map_strings(config.clone(), "", &fill)?;
        let mut service_options = service_options.clone();
        for (key, value) in service_options.env.iter_mut() {
            *value = fill(value, &format!("env.{key}"))?;
        }
        for hook in &mut service_options.hooks {
            for arg in &mut hook.command {
                *arg = fill(arg, &format!("hooks.{}", hook.name))?;
            }
        }
        let request = d::ServiceRequest {
            project: options.project.clone(),
            service: name.to_string(),
            profile: options.profile.clone(),
            config: config.clone(),
            bindings,
            collected: collected.contains(name),
        };
        let context = Arc::new(CallContext { project: options.project.clone(), service: name.to_string(), secrets: secrets.clone() });
        let who = format!("plugin `{}` {} (service `{name}`)", info.name, info.version);

        let (result, stats) = runtime
            .plan(&loaded.plugin, &request, context)
            .map_err(|e| stack.error_at(&format!("services.{name}"), format!("{who} {e}"), "while planning this service", None))?;
        let timing = timings.plugins.iter_mut().find(|t| t.plugin == service.plugin).expect("timed when loaded");
        timing.plan_instantiate += stats.instantiate;
        timing.plan_call += stats.call;
        logs.extend(stats.logs.into_iter().map(|(level, message)| (level, format!("{who}: {message}"))));

        let mut plan = result.map_err(|e| plan_error(stack, name, &who, e))?;
        for c in plan.containers.iter_mut().chain(plan.tasks.iter_mut()) {
            if let d::Image::Pull(reference) = &mut c.image
                && let Some(substitute) = options.images.get(reference.as_str())
            {
                substitutes.insert(reference.clone(), substitute.clone());
                *reference = substitute.clone();
            }
        }
        for output in &mut plan.outputs {
            // Secret if declared so, or if it embeds a secret (a URL with the password).
            output.secret = info.outputs.iter().any(|o| o.name == output.name && o.secret) || crate::secrets::holds_secret(&output.value);
            if output.secret {
                crate::secrets::remember(&output.value);
            }
        }
        let mut named = Vec::new();
        options::strings(&config, &mut named);
        let grants = policy::Grants { allow: &service.allow, named: &named, project_dir: &stack.dir };
        let plugin_pins = policy::check(&plan, info, &grants).map_err(|refusal| {
            let help = refusal.permission.map(|p| format!("if you trust this plugin with it, add `allow = [\"{p}\"]` to [services.{name}]"));
            // At the key where the user wrote the path it names, if they did
            // (`init = ["db/missing.sql"]`).
            let at = options::key_naming(&config, "", &|s| refusal.message.contains(&format!("{s:?}"))).map_or(String::new(), |k| format!(".{k}"));
            stack.error_at(&format!("services.{name}{at}"), format!("{who} is refused: {}", refusal.message), "planned here", help)
        })?;
        host_paths.extend(plugin_pins);
        host_paths.extend(user_pins.iter().map(|(k, v)| (k.clone(), v.clone())));
        // Another service's volume holds its data: a plugin mounts one only
        // through a binding that carries secrets (a `uses` the user wrote,
        // or a built-in's inferred one, as sidekiq shares rails's gems).
        for mount in plan.containers.iter().chain(&plan.tasks).flat_map(|c| &c.mounts) {
            let d::MountSource::Volume(volume) = &mount.source else { continue };
            let Some((owner, _)) = volume.split_once('/') else { continue };
            if !dependencies[name].iter().any(|d| d.service == owner && d.secrets) {
                return Err(stack.error_at(
                    &format!("services.{name}"),
                    format!("{who} is refused: it mounts volume `{volume}` of service `{owner}`, which it does not use"),
                    "planned here",
                    Some(format!("if it should reach `{owner}`'s data, name it in `uses` (uses = {{ ROLE = \"{owner}\" }})")),
                ));
            }
        }
        options::apply(&mut plan, &service_options, &stack.networks, options.ephemeral_ports).map_err(|(key, message)| {
            stack.error_at(&format!("services.{name}.{key}"), format!("`{key}` of service `{name}`: {message}"), "here", None)
        })?;
        for c in plan.containers.iter_mut().chain(plan.tasks.iter_mut()) {
            if let d::Image::Build(spec) = &mut c.image {
                // [images] also covers the base images a Dockerfile names.
                let hash = build_context::Context::load(&host_paths[&spec.context], spec).and_then(|ctx| {
                    for base in ctx.base_images() {
                        if let Some(substitute) = options.images.get(&base) {
                            substitutes.insert(base.clone(), substitute.clone());
                            spec.from_substitutes.insert(base, substitute.clone());
                        }
                    }
                    ctx.input_hash(spec)
                });
                spec.input_hash = hash.map_err(|e| stack.error_at(&format!("services.{name}"), format!("{who}: {e}"), "planned here", None))?;
            }
        }
        services.push(name);
        planned.insert(name, ServiceState { name: name.to_string(), plugin: service.plugin.clone(), depends_on: dependencies[name].clone(), plan });
    }
    check_volume_references(stack, &planned)?;
    let third_party = |plugin: &str| plugins.get(plugin).is_some_and(|p| !matches!(p.resolved.source, provision_registry::Source::Builtin));
    host_path::hand_over_inside_writable(stack, &mut planned, &host_paths, &third_party)?;
    check_completed(stack, &planned)?;
    check_project_wide(stack, &planned)?;

    let state = DesiredState {
        project: options.project.clone(),
        profile: options.profile.clone(),
        plugins: requirements.iter().map(|r| plugin_ref(&plugins[&r.name])).collect(),
        services: services.into_iter().map(|name| planned.remove(name).expect("planned")).collect(),
        substitutes,
        build_scope: options.project.clone(),
        host_paths,
    };
    timings.total = started.elapsed();
    Ok(Planned { state, locked_plugins, timings, logs })
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
