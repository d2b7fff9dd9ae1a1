//! Contract 0.1.0: its bindings and their conversions into the host's own
//! types. A released contract is frozen, and so is this module: later
//! contracts get modules of their own, so a plugin built against 0.1.0 is
//! bound by exactly these types forever.

use semver::Version;

use super::sandbox::{LogLevel, Sandbox};
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "plugin",
});

use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 1, 0);

// Host → plugin.

impl From<&d::ServiceRequest> for t::ServiceRequest {
    fn from(r: &d::ServiceRequest) -> Self {
        t::ServiceRequest {
            project: r.project.clone(),
            service: r.service.clone(),
            profile: r.profile.clone(),
            config: r.config.to_string(),
            // 0.1.0 has no `collected`: its plugins are never asked for metrics.
            bindings: r.bindings.iter().map(Into::into).collect(),
        }
    }
}

impl From<&d::Binding> for t::Binding {
    fn from(b: &d::Binding) -> Self {
        t::Binding { role: b.role.clone(), service: b.service.clone(), plugin: b.plugin.clone(), outputs: b.outputs.clone() }
    }
}

// Plugin → host.

impl From<t::RoleInfo> for d::RoleInfo {
    fn from(r: t::RoleInfo) -> Self {
        let wait = match r.wait {
            t::WaitFor::Started => d::WaitFor::Started,
            t::WaitFor::Ready => d::WaitFor::Ready,
        };
        d::RoleInfo {
            name: r.name,
            description: r.description,
            plugins: r.plugins,
            optional: r.optional,
            wait,
            collect: false,
            many: false,
            from_config: None,
        }
    }
}

super::conversions::shared_conversions!();
