//! Contract 0.1.0: bindings and the conversions that differ from later
//! versions; the rest is shared (`convert.rs`).

use semver::Version;
use wasmtime::component::HasSelf;

use super::Sandbox;
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "plugin",
});

use exports::provision::provider::provider as export;
use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 1, 0);

fn role(r: t::RoleInfo) -> d::RoleInfo {
    let wait = match r.wait {
        t::WaitFor::Started => d::WaitFor::Started,
        t::WaitFor::Ready => d::WaitFor::Ready,
    };
    d::RoleInfo { name: r.name, description: r.description, plugins: r.plugins, optional: r.optional, wait, collect: false }
}

/// 0.1.0 has no metrics on bindings and no `collected`; a 0.1.0 plugin is
/// never asked for metrics.
fn service_request(r: &d::ServiceRequest) -> t::ServiceRequest {
    t::ServiceRequest {
        project: r.project.clone(),
        service: r.service.clone(),
        profile: r.profile.clone(),
        config: r.config.to_string(),
        bindings: r
            .bindings
            .iter()
            .map(|b| t::Binding { role: b.role.clone(), service: b.service.clone(), plugin: b.plugin.clone(), outputs: b.outputs.clone() })
            .collect(),
    }
}

include!("convert.rs");
