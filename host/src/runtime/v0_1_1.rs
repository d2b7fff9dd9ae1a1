//! Contract 0.1.1: 0.1.0 plus what monitoring needs (`collect` roles,
//! `metrics` on bindings, `collected` on requests, `wait-for.planned`).

use semver::Version;
use wasmtime::component::HasSelf;

use super::Sandbox;
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.1",
    world: "plugin",
});

use exports::provision::provider::provider as export;
use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 1, 1);

fn role(r: t::RoleInfo) -> d::RoleInfo {
    let wait = match r.wait {
        t::WaitFor::Started => d::WaitFor::Started,
        t::WaitFor::Ready => d::WaitFor::Ready,
        t::WaitFor::Planned => d::WaitFor::Planned,
    };
    d::RoleInfo { name: r.name, description: r.description, plugins: r.plugins, optional: r.optional, wait, collect: r.collect }
}

fn service_request(r: &d::ServiceRequest) -> t::ServiceRequest {
    t::ServiceRequest {
        project: r.project.clone(),
        service: r.service.clone(),
        profile: r.profile.clone(),
        config: r.config.to_string(),
        bindings: r
            .bindings
            .iter()
            .map(|b| t::Binding {
                role: b.role.clone(),
                service: b.service.clone(),
                plugin: b.plugin.clone(),
                outputs: b.outputs.clone(),
                metrics: b
                    .metrics
                    .iter()
                    .map(|m| t::MetricsTarget { host: m.host.clone(), port: m.port, path: m.path.clone(), container: m.container.clone() })
                    .collect(),
            })
            .collect(),
        collected: r.collected,
    }
}

include!("convert.rs");
