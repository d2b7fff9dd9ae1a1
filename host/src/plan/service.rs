//! One service's turn in `plan`, in start order: its bindings to the
//! services it uses (planned before it), the outputs its strings refer to,
//! the plugin's call, then what the host does with the answer: image
//! substitutes, secret outputs, the policy, volumes of other services, the
//! service's host-level options, build inputs. One method per step.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use super::{Loaded, Options, Timings, build_context, options, plan_error, policy};
use crate::{
    desired::{self as d, Dependency, HostPaths, ServiceState},
    runtime::{CallContext, LogLevel, Runtime},
    secrets::Secrets,
    stack::{Service, Stack, StackError, interpolate::fill_outputs, options::ServiceOptions},
};

/// What planning one service reads from the stack, and what it adds to for
/// the services after it.
pub(super) struct Planner<'a, 's> {
    pub stack: &'s Stack,
    pub runtime: &'a Runtime,
    pub secrets: Arc<Secrets>,
    pub options: &'a Options,
    pub plugins: &'a HashMap<String, Loaded>,
    pub dependencies: &'a HashMap<&'s str, Vec<Dependency>>,
    /// Services some collector uses, asked to plan their metrics.
    pub collected: &'a HashSet<&'s str>,
    pub timings: &'a mut Timings,
    /// The services planned so far: what later ones bind to.
    pub planned: BTreeMap<&'s str, ServiceState>,
    pub host_paths: HostPaths,
    pub substitutes: BTreeMap<String, String>,
    pub logs: Vec<(LogLevel, String)>,
}

/// A service's host-level options, plugin config and the host paths its
/// own binds resolved to (`options::split`).
pub(super) type Config = (ServiceOptions, serde_json::Value, HostPaths);

impl<'s> Planner<'_, 's> {
    pub fn service(&mut self, name: &'s str, (service_options, config, user_pins): &Config) -> Result<(), StackError> {
        let (stack, plugins) = (self.stack, self.plugins);
        let service = stack.service(name).expect("ordered services exist");
        let loaded = &plugins[&service.plugin];
        let who = format!("plugin `{}` {} (service `{name}`)", loaded.plugin.info.name, loaded.plugin.info.version);

        let (config, service_options) = self.fill_references(name, config, service_options)?;
        let request = d::ServiceRequest {
            project: self.options.project.clone(),
            service: name.to_string(),
            profile: self.options.profile.clone(),
            config: config.clone(),
            bindings: self.bindings(name),
            collected: self.collected.contains(name),
        };
        let mut plan = self.call(service, loaded, &request, &who)?;
        self.substitute_images(&mut plan);
        mark_secret_outputs(&mut plan, &loaded.plugin.info);
        let plugin_pins = check_policy(stack, service, loaded, &plan, &config, &who)?;
        self.host_paths.extend(plugin_pins);
        self.host_paths.extend(user_pins.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.check_volumes_of_others(name, &plan, &who)?;
        options::apply(&mut plan, &service_options, &stack.networks, self.options.ephemeral_ports).map_err(|(key, message)| {
            stack.error_at(&format!("services.{name}.{key}"), format!("`{key}` of service `{name}`: {message}"), "here", None)
        })?;
        self.hash_builds(name, &mut plan, &who)?;
        let depends_on = self.dependencies[name].clone();
        self.planned.insert(name, ServiceState { name: name.to_string(), plugin: service.plugin.clone(), depends_on, plan });
        Ok(())
    }

    /// What the plugin is told of each service it uses: outputs (secret ones
    /// only through a binding that carries secrets), host names, metrics.
    fn bindings(&self, name: &str) -> Vec<d::Binding> {
        self.dependencies[name]
            .iter()
            .filter(|dep| !dep.role.is_empty())
            .map(|dep| {
                let used = &self.planned[dep.service.as_str()];
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
            .collect()
    }

    /// `${db.url}` in the user's strings (config, env, hooks): outputs of
    /// services planned before.
    fn fill_references(
        &self,
        name: &str,
        config: &serde_json::Value,
        service_options: &ServiceOptions,
    ) -> Result<(serde_json::Value, ServiceOptions), StackError> {
        let output = |service: &str, output: &str| {
            self.planned.get(service).and_then(|s| s.plan.outputs.iter().find(|o| o.name == output)).map(|o| o.value.clone())
        };
        let fill = |text: &str, key: &str| {
            fill_outputs(text, &output).map_err(|e| self.stack.error_at(&format!("services.{name}.{key}"), e, "referenced here", None))
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
        Ok((config, service_options))
    }

    /// The plugin's `plan`, in a fresh sandboxed instance; its time and logs kept.
    fn call(&mut self, service: &Service, loaded: &Loaded, request: &d::ServiceRequest, who: &str) -> Result<d::ServicePlan, StackError> {
        let name = &service.name;
        let context = Arc::new(CallContext { project: self.options.project.clone(), service: name.clone(), secrets: self.secrets.clone() });
        let (result, stats) = self
            .runtime
            .plan(&loaded.plugin, request, context)
            .map_err(|e| self.stack.error_at(&format!("services.{name}"), format!("{who} {e}"), "while planning this service", None))?;
        let timing = self.timings.plugins.iter_mut().find(|t| t.plugin == service.plugin).expect("timed when loaded");
        timing.plan_instantiate += stats.instantiate;
        timing.plan_call += stats.call;
        self.logs.extend(stats.logs.into_iter().map(|(level, message)| (level, format!("{who}: {message}"))));
        result.map_err(|e| plan_error(self.stack, name, who, e))
    }

    /// `[images]` and `--images`: a pulled image by its substitute.
    fn substitute_images(&mut self, plan: &mut d::ServicePlan) {
        for c in plan.containers.iter_mut().chain(plan.tasks.iter_mut()) {
            if let d::Image::Pull(reference) = &mut c.image
                && let Some(substitute) = self.options.images.get(reference.as_str())
            {
                self.substitutes.insert(reference.clone(), substitute.clone());
                *reference = substitute.clone();
            }
        }
    }

    /// Another service's volume holds its data: a plugin mounts one only
    /// through a binding that carries secrets (a `uses` the user wrote, or a
    /// built-in's inferred one, as sidekiq shares rails's gems).
    fn check_volumes_of_others(&self, name: &str, plan: &d::ServicePlan, who: &str) -> Result<(), StackError> {
        for mount in plan.containers.iter().chain(&plan.tasks).flat_map(|c| &c.mounts) {
            let d::MountSource::Volume(volume) = &mount.source else { continue };
            let Some((owner, _)) = volume.split_once('/') else { continue };
            if !self.dependencies[name].iter().any(|d| d.service == owner && d.secrets) {
                return Err(self.stack.error_at(
                    &format!("services.{name}"),
                    format!("{who} is refused: it mounts volume `{volume}` of service `{owner}`, which it does not use"),
                    "planned here",
                    Some(format!("if it should reach `{owner}`'s data, name it in `uses` (uses = {{ ROLE = \"{owner}\" }})")),
                ));
            }
        }
        Ok(())
    }

    /// Each build's input hash; `[images]` also covers the base images a
    /// Dockerfile names.
    fn hash_builds(&mut self, name: &str, plan: &mut d::ServicePlan, who: &str) -> Result<(), StackError> {
        for c in plan.containers.iter_mut().chain(plan.tasks.iter_mut()) {
            let d::Image::Build(spec) = &mut c.image else { continue };
            let hash = build_context::Context::load(&self.host_paths[&spec.context], spec).and_then(|ctx| {
                for base in ctx.base_images() {
                    if let Some(substitute) = self.options.images.get(&base) {
                        self.substitutes.insert(base.clone(), substitute.clone());
                        spec.from_substitutes.insert(base, substitute.clone());
                    }
                }
                ctx.input_hash(spec)
            });
            spec.input_hash = hash.map_err(|e| self.stack.error_at(&format!("services.{name}"), format!("{who}: {e}"), "planned here", None))?;
        }
        Ok(())
    }
}

/// An output is secret if declared so, or if it embeds a secret (a URL
/// with the password); secret values are remembered, to be masked.
fn mark_secret_outputs(plan: &mut d::ServicePlan, info: &d::PluginInfo) {
    for output in &mut plan.outputs {
        output.secret = info.outputs.iter().any(|o| o.name == output.name && o.secret) || crate::secrets::holds_secret(&output.value);
        if output.secret {
            crate::secrets::remember(&output.value);
        }
    }
}

/// The policy's verdict on what the plugin asked for, with the host paths
/// it pins; a refusal at the key where the user wrote the path it names.
fn check_policy(
    stack: &Stack,
    service: &Service,
    loaded: &Loaded,
    plan: &d::ServicePlan,
    config: &serde_json::Value,
    who: &str,
) -> Result<HostPaths, StackError> {
    let name = &service.name;
    let mut named = Vec::new();
    options::strings(config, &mut named);
    let grants = policy::Grants { allow: &service.allow, named: &named, project_dir: &stack.dir };
    policy::check(plan, &loaded.plugin.info, &grants).map_err(|refusal| {
        let help = refusal.permission.map(|p| format!("if you trust this plugin with it, add `allow = [\"{p}\"]` to [services.{name}]"));
        // At the key where the user wrote the path it names, if they did
        // (`init = ["db/missing.sql"]`).
        let at = options::key_naming(config, "", &|s| refusal.message.contains(&format!("{s:?}"))).map_or(String::new(), |k| format!(".{k}"));
        stack.error_at(&format!("services.{name}{at}"), format!("{who} is refused: {}", refusal.message), "planned here", help)
    })
}
