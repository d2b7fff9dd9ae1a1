//! Contract 0.3.0: its bindings and their conversions into the host's own
//! types. 0.3.0 is 0.2.0 plus probes that speak the service's protocol
//! (`postgres`, `redis`). A released contract is frozen, and so is this module.

use semver::Version;

use super::sandbox::{LogLevel, Sandbox};
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.3.0",
    world: "plugin",
});

use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 3, 0);

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

super::conversions::shared_conversions!(
    t::Probe::Postgres(port) => d::Probe::Postgres(port),
    t::Probe::Redis(port) => d::Probe::Redis(port),
);
