//! What every contract version shares: linking, the two calls, the plan a
//! plugin returns and the host functions it imports are the same shape in
//! each, though each version's `bindgen!` makes types of its own. A version
//! module invokes `shared_conversions!()` after naming its bindings `t` and
//! `host`, and writes by hand only what differs (requests, bindings, roles),
//! passing the probes a version added as match arms:
//! `shared_conversions!(t::Probe::Redis(port) => d::Probe::Redis(port))`.
//! A version with `container.snapshot` (0.4.0 on) starts the list with
//! `snapshots;` and defines `fn container_snapshot(&t::Container)` itself;
//! one with `service-plan.watch` too (0.5.0 on) with `snapshots, watch;`,
//! defining `fn plan_watch(&t::ServicePlan)`.
//! Versions from 0.2.0 on also invoke `conversions_since_0_2_0!()`: the
//! requests, bindings (with each replica's host name) and roles filled by
//! several services that 0.2.0 changed, the same in every later version.

macro_rules! shared_conversions {
    (snapshots, watch; $($probe:pat => $to:expr),* $(,)?) => {
        super::conversions::shared_conversions!(@common $($probe => $to),*);
    };
    (snapshots; $($probe:pat => $to:expr),* $(,)?) => {
        super::conversions::shared_conversions!(@no_watch);
        super::conversions::shared_conversions!(@common $($probe => $to),*);
    };
    ($($probe:pat => $to:expr),* $(,)?) => {
        /// Before 0.4.0 a plugin cannot offer its data for snapshots.
        fn container_snapshot(_: &t::Container) -> Option<d::DataSnapshot> {
            None
        }
        super::conversions::shared_conversions!(@no_watch);
        super::conversions::shared_conversions!(@common $($probe => $to),*);
    };
    (@no_watch) => {
        /// Before 0.5.0 a plugin declares no watch rules.
        fn plan_watch(_: &t::ServicePlan) -> Vec<d::WatchRule> {
            Vec::new()
        }
    };
    (@common $($probe:pat => $to:expr),*) => {
        pub fn add_to_linker(linker: &mut wasmtime::component::Linker<Sandbox>) -> wasmtime::Result<()> {
            Plugin::add_to_linker::<Sandbox, wasmtime::component::HasSelf<Sandbox>>(linker, |s| s)
        }

        pub fn info(plugin: &Plugin, store: &mut wasmtime::Store<Sandbox>) -> wasmtime::Result<d::PluginInfo> {
            plugin.provision_provider_provider().call_info(store)?.try_into()
        }

        pub fn plan(
            plugin: &Plugin,
            store: &mut wasmtime::Store<Sandbox>,
            request: &d::ServiceRequest,
        ) -> wasmtime::Result<Result<d::ServicePlan, d::PlanError>> {
            let result = plugin.provision_provider_provider().call_plan(store, &request.into())?;
            Ok(result.map(Into::into).map_err(Into::into))
        }

        impl t::Host for Sandbox {}

        impl host::Host for Sandbox {
            fn log(&mut self, level: t::LogLevel, message: String) {
                let level = match level {
                    t::LogLevel::Trace | t::LogLevel::Debug => LogLevel::Debug,
                    t::LogLevel::Info => LogLevel::Info,
                    t::LogLevel::Warn | t::LogLevel::Error => LogLevel::Warn,
                };
                self.log(level, message);
            }

            fn secret(&mut self, name: String) -> String {
                self.secret(&name)
            }
        }

        impl TryFrom<t::PluginInfo> for d::PluginInfo {
            type Error = wasmtime::Error;

            fn try_from(info: t::PluginInfo) -> wasmtime::Result<Self> {
                let config_schema = serde_json::from_str(&info.config_schema)
                    .map_err(|e| wasmtime::format_err!("its info has a config-schema that is not JSON: {e}"))?;
                Ok(d::PluginInfo {
                    name: info.name,
                    version: info.version,
                    summary: info.summary,
                    config_schema,
                    outputs: info.outputs.into_iter().map(|o| d::OutputInfo { name: o.name, description: o.description, secret: o.secret }).collect(),
                    uses: info.uses.into_iter().map(Into::into).collect(),
                })
            }
        }

        impl From<t::PlanError> for d::PlanError {
            fn from(e: t::PlanError) -> Self {
                match e {
                    t::PlanError::InvalidConfig(c) => d::PlanError::InvalidConfig { key: c.key, message: c.message },
                    t::PlanError::UnusableBinding(m) => d::PlanError::UnusableBinding(m),
                    t::PlanError::Failed(m) => d::PlanError::Failed(m),
                }
            }
        }

        impl From<t::ServicePlan> for d::ServicePlan {
            fn from(p: t::ServicePlan) -> Self {
                let watch = plan_watch(&p);
                d::ServicePlan {
                    containers: p.containers.into_iter().map(Into::into).collect(),
                    tasks: p.tasks.into_iter().map(Into::into).collect(),
                    volumes: p.volumes.into_iter().map(|v| v.name).collect(),
                    networks: p.networks.into_iter().map(|n| d::Network { name: n.name, internal: n.internal }).collect(),
                    // Whether an output is secret comes from the plugin's info.
                    outputs: p.outputs.into_iter().map(|(name, value)| d::Output { name, value, secret: false }).collect(),
                    metrics: p.metrics.into_iter().map(|m| d::MetricsEndpoint { container: m.container, port: m.port, path: m.path }).collect(),
                    watch,
                }
            }
        }

        impl From<t::Container> for d::Container {
            fn from(c: t::Container) -> Self {
                let snapshot = container_snapshot(&c);
                d::Container {
                    name: c.name,
                    image: c.image.into(),
                    command: c.command,
                    entrypoint: c.entrypoint,
                    env: c.env.into_iter().collect(),
                    working_dir: c.working_dir,
                    ports: c.ports.into_iter().map(Into::into).collect(),
                    mounts: c.mounts.into_iter().map(Into::into).collect(),
                    files: c.files.into_iter().map(|f| d::File { path: f.path, contents: f.contents, mode: f.mode }).collect(),
                    health: c.health.map(Into::into),
                    hooks: c
                        .hooks
                        .into_iter()
                        .map(|h| d::Hook { name: h.name, command: h.command, user: h.user, env: h.env.into_iter().collect() })
                        .collect(),
                    user: c.user,
                    read_only: c.read_only,
                    init: c.init,
                    no_new_privileges: c.no_new_privileges,
                    resources: d::Resources { milli_cpus: c.resources.milli_cpus, memory_bytes: c.resources.memory_bytes, pids: c.resources.pids },
                    restart: c.restart.into(),
                    networks: c.networks,
                    labels: c.labels.into_iter().collect(),
                    privileges: d::Privileges {
                        privileged: c.privileges.privileged,
                        cap_add: c.privileges.cap_add,
                        host_network: c.privileges.host_network,
                        host_pid: c.privileges.host_pid,
                        devices: c.privileges.devices,
                    },
                    replicas: 1,
                    // The user's (`aliases`), never a plugin's: set by the host.
                    aliases: Vec::new(),
                    stdin_open: false,
                    tty: false,
                    snapshot,
                }
            }
        }

        impl From<t::ImageSource> for d::Image {
            fn from(image: t::ImageSource) -> Self {
                match image {
                    t::ImageSource::Pull(reference) => d::Image::Pull(reference),
                    t::ImageSource::Build(b) => d::Image::Build(d::BuildSpec {
                        context: b.context,
                        dockerfile: b.dockerfile,
                        target: b.target,
                        args: b.args.into_iter().collect(),
                        input_hash: String::new(),
                        from_substitutes: Default::default(),
                    }),
                }
            }
        }

        impl From<t::Port> for d::Port {
            fn from(p: t::Port) -> Self {
                let protocol = match p.protocol {
                    t::Protocol::Tcp => d::Protocol::Tcp,
                    t::Protocol::Udp => d::Protocol::Udp,
                };
                d::Port { container: p.container, host: p.host, protocol }
            }
        }

        impl From<t::Mount> for d::Mount {
            fn from(m: t::Mount) -> Self {
                let source = match m.source {
                    t::MountSource::Volume(name) => d::MountSource::Volume(name),
                    t::MountSource::Bind(path) => d::MountSource::Bind(path),
                    t::MountSource::Tmpfs(t) => d::MountSource::Tmpfs { size_bytes: t.size_bytes, mode: t.mode },
                    t::MountSource::Anonymous => d::MountSource::Anonymous,
                };
                d::Mount { source, target: m.target, read_only: m.read_only }
            }
        }

        impl From<t::HealthCheck> for d::HealthCheck {
            fn from(h: t::HealthCheck) -> Self {
                let probe = match h.probe {
                    t::Probe::Exec(cmd) => d::Probe::Exec(cmd),
                    t::Probe::Http(get) => d::Probe::Http { port: get.port, path: get.path },
                    t::Probe::Tcp(port) => d::Probe::Tcp(port),
                    $($probe => $to,)*
                };
                d::HealthCheck { probe, interval_ms: h.interval_ms, timeout_ms: h.timeout_ms, retries: h.retries, start_period_ms: h.start_period_ms }
            }
        }

        impl From<t::RestartPolicy> for d::RestartPolicy {
            fn from(r: t::RestartPolicy) -> Self {
                match r {
                    t::RestartPolicy::No => d::RestartPolicy::No,
                    t::RestartPolicy::OnFailure => d::RestartPolicy::OnFailure,
                    t::RestartPolicy::Always => d::RestartPolicy::Always,
                    t::RestartPolicy::UnlessStopped => d::RestartPolicy::UnlessStopped,
                }
            }
        }
    };
}

pub(super) use shared_conversions;

/// What 0.2.0 changed, and later versions keep: requests, bindings with
/// each replica's host name, roles filled by several services.
macro_rules! conversions_since_0_2_0 {
    () => {
        // Host → plugin.

        impl From<&d::ServiceRequest> for t::ServiceRequest {
            fn from(r: &d::ServiceRequest) -> Self {
                t::ServiceRequest {
                    project: r.project.clone(),
                    service: r.service.clone(),
                    profile: r.profile.clone(),
                    config: r.config.to_string(),
                    bindings: r.bindings.iter().map(Into::into).collect(),
                    collected: r.collected,
                }
            }
        }

        impl From<&d::Binding> for t::Binding {
            fn from(b: &d::Binding) -> Self {
                t::Binding {
                    role: b.role.clone(),
                    service: b.service.clone(),
                    plugin: b.plugin.clone(),
                    outputs: b.outputs.clone(),
                    metrics: b
                        .metrics
                        .iter()
                        .map(|m| t::MetricsTarget { host: m.host.clone(), port: m.port, path: m.path.clone(), container: m.container.clone() })
                        .collect(),
                    replicas: b.replicas.clone(),
                }
            }
        }

        // Plugin → host.

        impl From<t::RoleInfo> for d::RoleInfo {
            fn from(r: t::RoleInfo) -> Self {
                let wait = match r.wait {
                    t::WaitFor::Started => d::WaitFor::Started,
                    t::WaitFor::Ready => d::WaitFor::Ready,
                    t::WaitFor::Completed => d::WaitFor::Completed,
                    t::WaitFor::Planned => d::WaitFor::Planned,
                };
                d::RoleInfo {
                    name: r.name,
                    description: r.description,
                    plugins: r.plugins,
                    optional: r.optional,
                    wait,
                    collect: r.collect,
                    many: r.many,
                    from_config: r.from_config,
                }
            }
        }
    };
}

pub(super) use conversions_since_0_2_0;
