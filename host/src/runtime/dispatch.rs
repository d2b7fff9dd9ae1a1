//! Contract versions, dispatched in one place: a plugin is bound by the
//! bindings of exactly the version it was built against (semver-compatible
//! names would otherwise link a 0.1.0 plugin to 0.1.1's differently shaped
//! types). A new contract version is a new module beside this one and a
//! variant in each enum here.

use semver::Version;
use wasmtime::{
    Store,
    component::{InstancePre, Linker},
};

use super::{sandbox::Sandbox, v0_1_0, v0_1_1, v0_2_0, v0_3_0, v0_4_0, v0_5_0};
use crate::desired as d;

/// Bindings of every contract version into one linker.
pub fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    v0_1_0::add_to_linker(linker)?;
    v0_1_1::add_to_linker(linker)?;
    v0_2_0::add_to_linker(linker)?;
    v0_3_0::add_to_linker(linker)?;
    v0_4_0::add_to_linker(linker)?;
    v0_5_0::add_to_linker(linker)
}

/// The versions that have bindings here.
#[cfg(test)]
pub const VERSIONS: &[Version] = &[v0_1_0::VERSION, v0_1_1::VERSION, v0_2_0::VERSION, v0_3_0::VERSION, v0_4_0::VERSION, v0_5_0::VERSION];

/// One variant per supported contract version.
pub enum Provider {
    V0_1_0(v0_1_0::PluginPre<Sandbox>),
    V0_1_1(v0_1_1::PluginPre<Sandbox>),
    V0_2_0(v0_2_0::PluginPre<Sandbox>),
    V0_3_0(v0_3_0::PluginPre<Sandbox>),
    V0_4_0(v0_4_0::PluginPre<Sandbox>),
    V0_5_0(v0_5_0::PluginPre<Sandbox>),
}

impl Provider {
    /// Bind with `contract`'s bindings; the caller has checked that it is
    /// a released version (a unit test keeps those and `VERSIONS` equal).
    pub fn new(contract: &Version, pre: InstancePre<Sandbox>) -> wasmtime::Result<Self> {
        if *contract == v0_1_0::VERSION {
            v0_1_0::PluginPre::new(pre).map(Provider::V0_1_0)
        } else if *contract == v0_1_1::VERSION {
            v0_1_1::PluginPre::new(pre).map(Provider::V0_1_1)
        } else if *contract == v0_2_0::VERSION {
            v0_2_0::PluginPre::new(pre).map(Provider::V0_2_0)
        } else if *contract == v0_3_0::VERSION {
            v0_3_0::PluginPre::new(pre).map(Provider::V0_3_0)
        } else if *contract == v0_4_0::VERSION {
            v0_4_0::PluginPre::new(pre).map(Provider::V0_4_0)
        } else if *contract == v0_5_0::VERSION {
            v0_5_0::PluginPre::new(pre).map(Provider::V0_5_0)
        } else {
            wasmtime::bail!("this provision has no bindings for contract {contract}")
        }
    }

    pub fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Bound> {
        match self {
            Provider::V0_1_0(pre) => pre.instantiate(store).map(Bound::V0_1_0),
            Provider::V0_1_1(pre) => pre.instantiate(store).map(Bound::V0_1_1),
            Provider::V0_2_0(pre) => pre.instantiate(store).map(Bound::V0_2_0),
            Provider::V0_3_0(pre) => pre.instantiate(store).map(Bound::V0_3_0),
            Provider::V0_4_0(pre) => pre.instantiate(store).map(Bound::V0_4_0),
            Provider::V0_5_0(pre) => pre.instantiate(store).map(Bound::V0_5_0),
        }
    }
}

/// An instance, for the duration of one call.
pub enum Bound {
    V0_1_0(v0_1_0::Plugin),
    V0_1_1(v0_1_1::Plugin),
    V0_2_0(v0_2_0::Plugin),
    V0_3_0(v0_3_0::Plugin),
    V0_4_0(v0_4_0::Plugin),
    V0_5_0(v0_5_0::Plugin),
}

impl Bound {
    pub fn info(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<d::PluginInfo> {
        match self {
            Bound::V0_1_0(p) => v0_1_0::info(p, store),
            Bound::V0_1_1(p) => v0_1_1::info(p, store),
            Bound::V0_2_0(p) => v0_2_0::info(p, store),
            Bound::V0_3_0(p) => v0_3_0::info(p, store),
            Bound::V0_4_0(p) => v0_4_0::info(p, store),
            Bound::V0_5_0(p) => v0_5_0::info(p, store),
        }
    }

    pub fn plan(&self, store: &mut Store<Sandbox>, request: &d::ServiceRequest) -> wasmtime::Result<Result<d::ServicePlan, d::PlanError>> {
        match self {
            Bound::V0_1_0(p) => v0_1_0::plan(p, store, request),
            Bound::V0_1_1(p) => v0_1_1::plan(p, store, request),
            Bound::V0_2_0(p) => v0_2_0::plan(p, store, request),
            Bound::V0_3_0(p) => v0_3_0::plan(p, store, request),
            Bound::V0_4_0(p) => v0_4_0::plan(p, store, request),
            Bound::V0_5_0(p) => v0_5_0::plan(p, store, request),
        }
    }
}
