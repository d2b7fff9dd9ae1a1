//! Contract 0.5.0: its bindings and their conversions into the host's own
//! types. 0.5.0 is 0.4.0 plus watch rules (`service-plan.watch`). A
//! released contract is frozen, and so is this module.

use semver::Version;

use super::sandbox::{LogLevel, Sandbox};
use crate::desired as d;

wasmtime::component::bindgen!({
    path: "../wit/v0.5.0",
    world: "plugin",
});

use provision::provider::{host, types as t};

pub const VERSION: Version = Version::new(0, 5, 0);

fn container_snapshot(c: &t::Container) -> Option<d::DataSnapshot> {
    let s = c.snapshot.as_ref()?;
    Some(d::DataSnapshot { path: s.path.clone(), key: s.key.clone(), command: s.command.clone() })
}

fn plan_watch(p: &t::ServicePlan) -> Vec<d::WatchRule> {
    let action = |a: &t::WatchAction| match a {
        t::WatchAction::Sync(target) => d::WatchAction::Sync(target.clone()),
        t::WatchAction::Restart => d::WatchAction::Restart,
        t::WatchAction::Rebuild => d::WatchAction::Rebuild,
        t::WatchAction::Rerun(task) => d::WatchAction::Rerun(task.clone()),
        t::WatchAction::Exec(command) => d::WatchAction::Exec(command.clone()),
    };
    p.watch.iter().map(|r| d::WatchRule { path: r.path.clone(), ignore: r.ignore.clone(), actions: r.actions.iter().map(action).collect() }).collect()
}

super::conversions::conversions_since_0_2_0!();
super::conversions::shared_conversions!(snapshots, watch;
    t::Probe::Postgres(port) => d::Probe::Postgres(port),
    t::Probe::Redis(port) => d::Probe::Redis(port),
);
