//! From a stack to its desired state: resolve and load each plugin, wire
//! services to the roles their plugins use, and call the plugins in
//! dependency order, each seeing the outputs of the services it uses.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use provision_registry::{LockedPlugin, Requirement, Resolved, Resolver};
use semver::Version;

use crate::{
    desired::{self as d, DesiredState, Dependency, PluginRef, ServiceState},
    policy,
    runtime::{CallContext, LogLevel, Plugin, Runtime},
    secrets::Secrets,
    stack::{Stack, StackError, Uses},
};

pub struct Options {
    pub project: String,
    pub profile: String,
    /// Image substitutes (`[images]` and `--images`): reference → image.
    pub images: BTreeMap<String, String>,
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

struct Loaded {
    resolved: Resolved,
    plugin: Plugin,
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

    // `collected`: services some collector uses, asked to plan their metrics.
    let (dependencies, collected) = wire(stack, &plugins)?;
    let order = start_order(stack, &dependencies)?;

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
    let mut substitutes = BTreeMap::new();
    let mut planned: BTreeMap<&str, ServiceState> = BTreeMap::new();
    let mut services = Vec::new();
    for name in order {
        let service = stack.service(name).expect("ordered services exist");
        let loaded = &plugins[&service.plugin];
        let info = &loaded.plugin.info;
        let bindings = dependencies[name]
            .iter()
            .map(|dep| {
                let used = &planned[dep.service.as_str()];
                d::Binding {
                    role: dep.role.clone(),
                    service: dep.service.clone(),
                    plugin: used.plugin.clone(),
                    outputs: used.plan.outputs.iter().map(|o| (o.name.clone(), o.value.clone())).collect(),
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
        let request = d::ServiceRequest {
            project: options.project.clone(),
            service: name.to_string(),
            profile: options.profile.clone(),
            config: service.config.clone(),
            bindings,
            collected: collected.contains(&name),
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
            if let d::Image::Pull(reference) = &mut c.image {
                if let Some(substitute) = options.images.get(reference.as_str()) {
                    substitutes.insert(reference.clone(), substitute.clone());
                    *reference = substitute.clone();
                }
            }
        }
        for output in &mut plan.outputs {
            output.secret = info.outputs.iter().any(|o| o.name == output.name && o.secret);
        }
        policy::check(&plan, info, &service.allow, &stack.dir).map_err(|refusal| {
            let help = refusal.permission.map(|p| {
                format!("if you trust this plugin with it, add `allow = [\"{p}\"]` to [services.{name}]")
            });
            stack.error_at(&format!("services.{name}"), format!("{who} is refused: {}", refusal.message), "planned here", help)
        })?;
        for c in plan.containers.iter_mut().chain(plan.tasks.iter_mut()) {
            if let d::Image::Build(spec) = &mut c.image {
                // [images] also covers the base images a Dockerfile names.
                let hash = crate::build_context::Context::load(&stack.dir, spec).and_then(|ctx| {
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
        planned.insert(
            name,
            ServiceState { name: name.to_string(), plugin: service.plugin.clone(), depends_on: dependencies[name].clone(), plan },
        );
    }
    check_volume_references(stack, &planned)?;

    let state = DesiredState {
        project: options.project.clone(),
        profile: options.profile.clone(),
        plugins: requirements.iter().map(|r| plugin_ref(&plugins[&r.name])).collect(),
        services: services.into_iter().map(|name| planned.remove(name).expect("planned")).collect(),
        substitutes,
    };
    timings.total = started.elapsed();
    Ok(Planned { state, locked_plugins, timings, logs })
}

fn load(stack: &Stack, runtime: &Runtime, requirement: &Requirement, resolved: &Resolved) -> Result<Plugin, StackError> {
    let name = &requirement.name;
    let plugin = runtime
        .load(resolved)
        .map_err(|e| requirement_error(stack, requirement, format!("plugin `{name}` (from {}) {e}", resolved.source)))?;
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
        d::PlanError::Failed(message) => stack.error_at(&format!("services.{service}"), format!("{who} failed: {message}"), "while planning this service", None),
    }
}

/// For each service, the services that fill its plugin's roles; and the
/// services that fill collect roles.
type Wiring<'s> = (HashMap<&'s str, Vec<Dependency>>, Vec<&'s str>);

fn wire<'s>(stack: &'s Stack, plugins: &HashMap<String, Loaded>) -> Result<Wiring<'s>, StackError> {
    let mut all = HashMap::new();
    for service in &stack.services {
        let roles = &plugins[&service.plugin].plugin.info.uses;
        let name = &service.name;
        let uses_key = format!("services.{name}.uses");
        let fits = |role: &d::RoleInfo, used: &str| -> bool {
            stack.service(used).is_some_and(|s| role.plugins.is_empty() || role.plugins.contains(&s.plugin))
        };
        let known = |used: &str, key: &str| -> Result<(), StackError> {
            if stack.service(used).is_none() || used == name {
                let others: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).filter(|s| s != name).collect();
                let help = if others.is_empty() { "the stack has no other service".to_string() } else { format!("services it can use: {}", others.join(", ")) };
                return Err(stack.error_at(key, format!("service `{name}` uses `{used}`, which is not another service of this stack"), "unknown service", Some(help)));
            }
            Ok(())
        };

        let mut deps: Vec<Dependency> = Vec::new();
        let bind = |deps: &mut Vec<Dependency>, role: &d::RoleInfo, used: &str| {
            deps.push(Dependency { role: role.name.clone(), service: used.to_string(), wait: role.wait });
        };
        match &service.uses {
            Uses::Infer => {}
            Uses::Roles(pairs) => {
                for (role_name, used) in pairs {
                    known(used, &format!("{uses_key}.{role_name}"))?;
                    let Some(role) = roles.iter().find(|r| &r.name == role_name) else {
                        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
                        return Err(stack.error_at(&format!("{uses_key}.{role_name}"), format!("plugin `{}` has no role `{role_name}`", service.plugin), "unknown role", Some(format!("its roles are: {}", if names.is_empty() { "none".into() } else { names.join(", ") }))));
                    };
                    if !fits(role, used) {
                        let plugin = &stack.service(used).expect("known").plugin;
                        return Err(stack.error_at(&format!("{uses_key}.{role_name}"), format!("role `{role_name}` of service `{name}` needs a service of plugin {}; `{used}` is `{plugin}`", role.plugins.join(" or ")), "cannot fill this role", None));
                    }
                    if role.collect {
                        return Err(stack.error_at(&format!("{uses_key}.{role_name}"), format!("role `{role_name}` of service `{name}` is filled by the stack itself: every other service, with its metrics"), "not named in uses", Some("remove this entry".into())));
                    }
                    bind(&mut deps, role, used);
                }
            }
            Uses::Services(list) => {
                for (i, used) in list.iter().enumerate() {
                    known(used, &format!("{uses_key}.{i}"))?;
                    let open: Vec<&d::RoleInfo> = roles.iter().filter(|r| !r.collect && !deps.iter().any(|d| d.role == r.name) && fits(r, used)).collect();
                    match open[..] {
                        [role] => bind(&mut deps, role, used),
                        [] => {
                            let plugin = &stack.service(used).expect("known").plugin;
                            return Err(stack.error_at(&format!("{uses_key}.{i}"), format!("plugin `{}` of service `{name}` has no open role that `{used}` (plugin `{plugin}`) can fill", service.plugin), "cannot be used", None));
                        }
                        ref several => {
                            let names: Vec<&str> = several.iter().map(|r| r.name.as_str()).collect();
                            return Err(stack.error_at(&format!("{uses_key}.{i}"), format!("`{used}` could fill roles {} of service `{name}`", names.join(", ")), "ambiguous", Some(format!("name the role: uses = {{ {} = \"{used}\" }}", names[0]))));
                        }
                    }
                }
            }
        }
        // Roles still open are filled by the one service that fits.
        let open: Vec<&d::RoleInfo> = roles.iter().filter(|r| !r.collect && !deps.iter().any(|d| d.role == r.name)).collect();
        for role in open {
            if role.plugins.is_empty() {
                // Any plugin could fill it, so only the user can say which.
                if role.optional {
                    continue;
                }
                return Err(stack.error_at(&format!("services.{name}"), format!("service `{name}` needs a `{}` ({}), which any service can be", role.name, role.description), "role unfilled", Some(format!("name it: uses = {{ {} = \"SERVICE\" }}", role.name))));
            }
            let candidates: Vec<&str> = stack.services.iter().filter(|s| &s.name != name && fits(role, &s.name)).map(|s| s.name.as_str()).collect();
            match candidates.as_slice() {
                [used] => bind(&mut deps, role, used),
                [] if role.optional => {}
                [] => {
                    return Err(stack.error_at(&format!("services.{name}"), format!("service `{name}` needs a `{}` ({}), and no service of the stack can be one", role.name, role.description), "role unfilled", Some(format!("add a service with plugin {}", role.plugins.join(" or ")))));
                }
                several => {
                    return Err(stack.error_at(&format!("services.{name}"), format!("service `{name}` needs one `{}`, and {} could be it", role.name, several.join(", ")), "ambiguous", Some(format!("choose one: uses = {{ {} = \"{}\" }}", role.name, several[0]))));
                }
            }
        }
        all.insert(name.as_str(), deps);
    }
    let collected = collect(stack, plugins, &mut all);
    Ok((all, collected))
}

/// Fill `collect` roles: each collector uses every other service except
/// those that use it (directly or not) and other collectors, so no cycle.
/// Returns the services collected.
fn collect<'s>(stack: &'s Stack, plugins: &HashMap<String, Loaded>, all: &mut HashMap<&'s str, Vec<Dependency>>) -> Vec<&'s str> {
    let mut collected = Vec::new();
    let collect_roles = |plugin: &str| -> Vec<d::RoleInfo> { plugins[plugin].plugin.info.uses.iter().filter(|r| r.collect).cloned().collect() };
    let collectors: Vec<&str> = stack.services.iter().filter(|s| !collect_roles(&s.plugin).is_empty()).map(|s| s.name.as_str()).collect();
    for collector in &collectors {
        let plugin = &stack.service(collector).expect("known").plugin;
        for role in collect_roles(plugin) {
            let used: Vec<&str> = stack
                .services
                .iter()
                .map(|s| s.name.as_str())
                .filter(|s| !collectors.contains(s) && !reaches(all, s, collector))
                .collect();
            let deps = all.get_mut(collector).expect("wired");
            deps.extend(used.iter().map(|s| Dependency { role: role.name.clone(), service: s.to_string(), wait: role.wait }));
            collected.extend(used);
        }
    }
    collected
}

/// Whether `from` uses `to`, directly or through other services.
fn reaches(all: &HashMap<&str, Vec<Dependency>>, from: &str, to: &str) -> bool {
    let mut seen = vec![from];
    let mut next = vec![from];
    while let Some(at) = next.pop() {
        for dep in &all[at] {
            let s = dep.service.as_str();
            if s == to {
                return true;
            }
            if !seen.contains(&s) {
                seen.push(s);
                next.push(s);
            }
        }
    }
    false
}

/// Services ordered so each comes after what it uses; ties keep file order.
fn start_order<'s>(stack: &'s Stack, deps: &HashMap<&'s str, Vec<Dependency>>) -> Result<Vec<&'s str>, StackError> {
    let mut order: Vec<&str> = Vec::new();
    while order.len() < stack.services.len() {
        let next = stack
            .services
            .iter()
            .map(|s| s.name.as_str())
            .find(|s| !order.contains(s) && deps[s].iter().all(|d| order.contains(&d.service.as_str())));
        match next {
            Some(s) => order.push(s),
            None => {
                let cycle = find_cycle(stack, deps, &order);
                return Err(stack.error_at(&format!("services.{}.uses", cycle[0]), format!("services use each other in a cycle: {}", cycle.join(" → ")), "part of the cycle", Some("a service can only use services that do not use it back; remove one `uses` entry".into())));
            }
        }
    }
    Ok(order)
}

fn find_cycle<'s>(stack: &'s Stack, deps: &HashMap<&'s str, Vec<Dependency>>, done: &[&str]) -> Vec<&'s str> {
    // Every unplaced service has an unplaced dependency: walk them until one repeats.
    let mut path: Vec<&str> = Vec::new();
    let mut at = stack.services.iter().map(|s| s.name.as_str()).find(|s| !done.contains(s)).expect("some service is unplaced");
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at);
            return cycle;
        }
        path.push(at);
        let next = deps[at].iter().find(|d| !done.contains(&d.service.as_str())).expect("blocked by an unplaced service");
        at = stack.service(&next.service).map(|s| s.name.as_str()).expect("known service");
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

fn plugin_ref(loaded: &Loaded) -> PluginRef {
    PluginRef {
        name: loaded.plugin.info.name.clone(),
        version: loaded.plugin.info.version.clone(),
        contract: loaded.plugin.contract.to_string(),
        source: loaded.resolved.source.to_string(),
        sha256: loaded.resolved.sha256.clone(),
    }
}
