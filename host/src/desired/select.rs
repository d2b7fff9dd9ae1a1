//! Part of a stack: `up SERVICE…`, `start` and `restart` act on the services
//! named and on what those need running first, and on nothing else.

use std::collections::BTreeSet;

use super::{Dependency, DesiredState, MountSource, ServiceState, WaitFor};

impl ServiceState {
    /// What this service waits for of a dependency before it starts, if
    /// anything: a `planned` one only ordered the plugin calls, unless the
    /// service mounts its volume (then it must have started).
    pub fn waits_for(&self, dependency: &Dependency) -> Option<WaitFor> {
        match dependency.wait {
            WaitFor::Planned if self.mounts_volume_of(&dependency.service) => Some(WaitFor::Started),
            WaitFor::Planned => None,
            wait => Some(wait),
        }
    }

    fn mounts_volume_of(&self, owner: &str) -> bool {
        let mounts = self.plan.containers.iter().chain(&self.plan.tasks).flat_map(|c| &c.mounts);
        mounts.filter_map(|m| if let MountSource::Volume(v) = &m.source { v.split_once('/') } else { None }).any(|(o, _)| o == owner)
    }
}

impl DesiredState {
    /// The services named, every one when none is. An unknown name is an
    /// error that lists the services there are.
    pub fn named(&self, names: &[String]) -> Result<BTreeSet<String>, String> {
        if let Some(name) = names.iter().find(|n| !self.services.iter().any(|s| s.name == **n)) {
            let there: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
            return Err(format!("the stack has no service `{name}` in this profile (its services: {})", there.join(", ")));
        }
        let all = self.services.iter().map(|s| &s.name);
        Ok(if names.is_empty() { all.cloned().collect() } else { names.iter().cloned().collect() })
    }

    /// The services named and, transitively, those they wait for.
    pub fn with_dependencies(&self, names: &[String]) -> Result<BTreeSet<String>, String> {
        let mut selected = BTreeSet::new();
        let mut todo: Vec<String> = self.named(names)?.into_iter().collect();
        while let Some(name) = todo.pop() {
            let Some(service) = self.services.iter().find(|s| s.name == name) else { continue };
            todo.extend(service.depends_on.iter().filter(|d| service.waits_for(d).is_some()).map(|d| d.service.clone()));
            selected.insert(name);
        }
        Ok(selected)
    }

    /// The stack with only these services, in the same start order.
    pub fn only(&self, services: &BTreeSet<String>) -> DesiredState {
        let mut part = self.clone();
        part.services.retain(|s| services.contains(&s.name));
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Container, Image, Mount, ServicePlan};

    fn service(name: &str, deps: &[(&str, WaitFor)]) -> ServiceState {
        let depends_on = deps.iter().map(|(s, wait)| Dependency { role: "r".into(), service: s.to_string(), wait: *wait, secrets: false }).collect();
        ServiceState { name: name.into(), plugin: "container".into(), depends_on, plan: ServicePlan::default() }
    }

    fn state(services: Vec<ServiceState>) -> DesiredState {
        let mut state: DesiredState =
            serde_json::from_value(serde_json::json!({"project": "p", "profile": "dev", "plugins": [], "services": []})).unwrap();
        state.services = services;
        state
    }

    #[test]
    fn a_service_comes_with_what_it_waits_for_and_nothing_else() {
        let mut watcher = service("monitoring", &[("web", WaitFor::Planned), ("db", WaitFor::Planned)]);
        let s = state(vec![
            service("db", &[]),
            service("cache", &[]),
            service("migrate", &[("db", WaitFor::Ready)]),
            service("web", &[("migrate", WaitFor::Completed), ("cache", WaitFor::Started)]),
            service("mail", &[]),
            watcher.clone(),
        ]);
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(s.with_dependencies(&["web".into()]).unwrap(), names(&["cache", "db", "migrate", "web"]));
        assert_eq!(s.with_dependencies(&["monitoring".into()]).unwrap(), names(&["monitoring"]), "planned after only");
        let part = s.only(&names(&["db", "web"]));
        assert_eq!(part.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["db", "web"]);
        let err = s.with_dependencies(&["wbe".into()]).unwrap_err();
        assert!(err.contains("no service `wbe`") && err.contains("db, cache, migrate, web, mail, monitoring"), "{err}");

        // Mounting a planned dependency's volume needs it started.
        let mut server = Container::new("server", Image::Pull("prom".into()));
        server.mounts.push(Mount { source: MountSource::Volume("db/data".into()), target: "/data".into(), read_only: true });
        watcher.plan.containers.push(server);
        let s = state(vec![service("db", &[]), service("web", &[]), watcher]);
        assert_eq!(s.with_dependencies(&["monitoring".into()]).unwrap(), names(&["db", "monitoring"]));
    }
}
