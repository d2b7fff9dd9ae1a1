// Conversions shared by every contract version's module: `include!`d after
// that module's `bindgen!`, so `t`, `export`, `host` and `Plugin` name that
// version's generated types. What differs between versions (roles, requests,
// wait-for) each module writes itself.

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<Sandbox>) -> wasmtime::Result<()> {
    Plugin::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |s| s)
}

impl t::Host for Sandbox {}

impl host::Host for Sandbox {
    fn log(&mut self, level: t::LogLevel, message: String) {
        let level = match level {
            t::LogLevel::Trace | t::LogLevel::Debug => super::LogLevel::Debug,
            t::LogLevel::Info => super::LogLevel::Info,
            t::LogLevel::Warn | t::LogLevel::Error => super::LogLevel::Warn,
        };
        self.log(level, message);
    }

    fn secret(&mut self, name: String) -> String {
        self.secret(&name)
    }
}

pub fn info(plugin: &Plugin, store: &mut wasmtime::Store<Sandbox>) -> wasmtime::Result<d::PluginInfo> {
    let info = plugin.provision_provider_provider().call_info(store)?;
    let config_schema = serde_json::from_str(&info.config_schema)
        .map_err(|e| wasmtime::format_err!("its info has a config-schema that is not JSON: {e}"))?;
    Ok(d::PluginInfo {
        name: info.name,
        version: info.version,
        summary: info.summary,
        config_schema,
        outputs: info
            .outputs
            .into_iter()
            .map(|o| d::OutputInfo { name: o.name, description: o.description, secret: o.secret })
            .collect(),
        uses: info.uses.into_iter().map(role).collect(),
    })
}

pub fn plan(
    plugin: &Plugin,
    store: &mut wasmtime::Store<Sandbox>,
    request: &d::ServiceRequest,
) -> wasmtime::Result<Result<d::ServicePlan, d::PlanError>> {
    let request = service_request(request);
    let result = plugin.provision_provider_provider().call_plan(store, &request)?;
    Ok(result.map(service_plan).map_err(plan_error))
}

fn plan_error(e: export::PlanError) -> d::PlanError {
    match e {
        t::PlanError::InvalidConfig(c) => d::PlanError::InvalidConfig { key: c.key, message: c.message },
        t::PlanError::UnusableBinding(m) => d::PlanError::UnusableBinding(m),
        t::PlanError::Failed(m) => d::PlanError::Failed(m),
    }
}

fn service_plan(p: t::ServicePlan) -> d::ServicePlan {
    d::ServicePlan {
        containers: p.containers.into_iter().map(container).collect(),
        tasks: p.tasks.into_iter().map(container).collect(),
        volumes: p.volumes.into_iter().map(|v| v.name).collect(),
        networks: p.networks.into_iter().map(|n| d::Network { name: n.name, internal: n.internal }).collect(),
        // Whether an output is secret comes from the plugin's info.
        outputs: p.outputs.into_iter().map(|(name, value)| d::Output { name, value, secret: false }).collect(),
        metrics: p
            .metrics
            .into_iter()
            .map(|m| d::MetricsEndpoint { container: m.container, port: m.port, path: m.path })
            .collect(),
    }
}

fn container(c: t::Container) -> d::Container {
    d::Container {
        name: c.name,
        image: match c.image {
            t::ImageSource::Pull(reference) => d::Image::Pull(reference),
            t::ImageSource::Build(b) => d::Image::Build(d::BuildSpec {
                context: b.context,
                dockerfile: b.dockerfile,
                target: b.target,
                args: b.args.into_iter().collect(),
                input_hash: String::new(),
                from_substitutes: Default::default(),
            }),
        },
        command: c.command,
        entrypoint: c.entrypoint,
        env: c.env.into_iter().collect(),
        working_dir: c.working_dir,
        ports: c
            .ports
            .into_iter()
            .map(|p| d::Port {
                container: p.container,
                host: p.host,
                protocol: match p.protocol {
                    t::Protocol::Tcp => d::Protocol::Tcp,
                    t::Protocol::Udp => d::Protocol::Udp,
                },
            })
            .collect(),
        mounts: c
            .mounts
            .into_iter()
            .map(|m| d::Mount {
                source: match m.source {
                    t::MountSource::Volume(name) => d::MountSource::Volume(name),
                    t::MountSource::Bind(path) => d::MountSource::Bind(path),
                    t::MountSource::Tmpfs(t) => d::MountSource::Tmpfs { size_bytes: t.size_bytes, mode: t.mode },
                    t::MountSource::Anonymous => d::MountSource::Anonymous,
                },
                target: m.target,
                read_only: m.read_only,
            })
            .collect(),
        files: c.files.into_iter().map(|f| d::File { path: f.path, contents: f.contents, mode: f.mode }).collect(),
        health: c.health.map(|h| d::HealthCheck {
            probe: match h.probe {
                t::Probe::Exec(cmd) => d::Probe::Exec(cmd),
                t::Probe::Http(get) => d::Probe::Http { port: get.port, path: get.path },
                t::Probe::Tcp(port) => d::Probe::Tcp(port),
            },
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            retries: h.retries,
            start_period_ms: h.start_period_ms,
        }),
        hooks: c
            .hooks
            .into_iter()
            .map(|h| d::Hook { name: h.name, command: h.command, user: h.user, env: h.env.into_iter().collect() })
            .collect(),
        user: c.user,
        read_only: c.read_only,
        init: c.init,
        no_new_privileges: c.no_new_privileges,
        resources: d::Resources {
            milli_cpus: c.resources.milli_cpus,
            memory_bytes: c.resources.memory_bytes,
            pids: c.resources.pids,
        },
        restart: match c.restart {
            t::RestartPolicy::No => d::RestartPolicy::No,
            t::RestartPolicy::OnFailure => d::RestartPolicy::OnFailure,
            t::RestartPolicy::Always => d::RestartPolicy::Always,
            t::RestartPolicy::UnlessStopped => d::RestartPolicy::UnlessStopped,
        },
        networks: c.networks,
        labels: c.labels.into_iter().collect(),
        privileges: d::Privileges {
            privileged: c.privileges.privileged,
            cap_add: c.privileges.cap_add,
            host_network: c.privileges.host_network,
            host_pid: c.privileges.host_pid,
            devices: c.privileges.devices,
        },
    }
}
