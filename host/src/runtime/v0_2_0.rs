//! Contract 0.2.0: its bindings and their conversions into the host's own
//! types. 0.2.0 is 0.1.1 plus roles filled by several services (`many`,
//! `from-config`), each replica's host name on bindings, and
//! `wait-for.completed`. A released contract is frozen, and so is this module.

use semver::Version;

use super::sandbox::{LogLevel, Sandbox};
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "plugin",
});

use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 2, 0);

super::conversions::conversions_since_0_2_0!();
super::conversions::shared_conversions!();
