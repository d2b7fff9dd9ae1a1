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

super::conversions::conversions_since_0_2_0!();
super::conversions::shared_conversions!(
    t::Probe::Postgres(port) => d::Probe::Postgres(port),
    t::Probe::Redis(port) => d::Probe::Redis(port),
);
