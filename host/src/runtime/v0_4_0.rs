//! Contract 0.4.0: its bindings and their conversions into the host's own
//! types. 0.4.0 is 0.3.0 plus data snapshots (`container.snapshot`). A
//! released contract is frozen, and so is this module.

use semver::Version;

use super::sandbox::{LogLevel, Sandbox};
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.4.0",
    world: "plugin",
});

use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 4, 0);

fn container_snapshot(c: &t::Container) -> Option<d::DataSnapshot> {
    let s = c.snapshot.as_ref()?;
    Some(d::DataSnapshot { path: s.path.clone(), key: s.key.clone(), command: s.command.clone() })
}

super::conversions::conversions_since_0_2_0!();
super::conversions::shared_conversions!(snapshots;
    t::Probe::Postgres(port) => d::Probe::Postgres(port),
    t::Probe::Redis(port) => d::Probe::Redis(port),
);
