//! The containers the engine runs of a service's plan: each planned one,
//! and of a main container with `replicas = N`, either that container with
//! its count (an engine that runs copies itself: Swarm, or Compose for an
//! export) or N numbered copies — `server`, `server-2`, … — the way Compose
//! numbers containers at creation. The first copy runs the hooks (once for
//! the service); the others publish on free host ports (a fixed one is the
//! first's). Only the main container and its copies answer to the
//! service's name.

use std::borrow::Cow;

use super::{Container, ServicePlan};

/// One container the engine runs.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// As the engine runs it: the planned container, or a numbered copy.
    pub container: Cow<'a, Container>,
    /// It runs once, to exit 0, before the service's containers start.
    pub task: bool,
    /// It answers to the service's name: the main container and its copies.
    pub answers_to_name: bool,
}

impl ServicePlan {
    /// Tasks first, in order; then the main container (and its copies),
    /// then the others. `engine_runs_copies`: the main container once, with
    /// its count.
    pub fn instances(&self, engine_runs_copies: bool) -> Vec<Instance<'_>> {
        let tasks = self.tasks.iter().map(|c| Instance { container: Cow::Borrowed(c), task: true, answers_to_name: false });
        let mut all: Vec<Instance> = tasks.collect();
        for (i, c) in self.containers.iter().enumerate() {
            let main = i == 0;
            if c.replicas <= 1 || engine_runs_copies {
                all.push(Instance { container: Cow::Borrowed(c), task: false, answers_to_name: main });
                continue;
            }
            for number in 1..=c.replicas {
                all.push(Instance { container: Cow::Owned(c.copy(number)), task: false, answers_to_name: main });
            }
        }
        all
    }
}

impl Container {
    /// Copy `number` (from 1) of a container with `replicas`: as one.
    fn copy(&self, number: u32) -> Container {
        let mut copy = self.clone();
        copy.replicas = 1;
        if number > 1 {
            copy.name = format!("{}-{number}", self.name);
            // Hooks run once for the service, in the first copy.
            copy.hooks.clear();
            copy.ports.iter_mut().filter(|p| p.host.is_some()).for_each(|p| p.host = Some(0));
        }
        copy
    }

    /// The names its copies have (`server`, `server-2`, …): what answers
    /// to `SERVICE-NAME` on the network where the engine makes the copies.
    pub fn copy_names(&self) -> Vec<String> {
        (1..=self.replicas.max(1)).map(|n| if n == 1 { self.name.clone() } else { format!("{}-{n}", self.name) }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Hook, Image, Port, Protocol};

    fn plan() -> ServicePlan {
        let mut server = Container::new("server", Image::Pull("app".into()));
        server.replicas = 3;
        server.ports.push(Port { container: 8000, host: Some(8000), protocol: Protocol::Tcp });
        server.hooks.push(Hook { name: "seed".into(), command: vec!["true".into()], user: None, env: Default::default() });
        let exporter = Container::new("exporter", Image::Pull("exporter".into()));
        let migrate = Container::new("migrate", Image::Pull("app".into()));
        ServicePlan { containers: vec![server, exporter], tasks: vec![migrate], ..ServicePlan::default() }
    }

    #[test]
    fn a_count_becomes_numbered_copies_where_the_engine_does_not_run_them() {
        let plan = plan();
        let instances = plan.instances(false);
        let names: Vec<&str> = instances.iter().map(|i| i.container.name.as_str()).collect();
        assert_eq!(names, ["migrate", "server", "server-2", "server-3", "exporter"]);
        let named: Vec<bool> = instances.iter().map(|i| i.answers_to_name).collect();
        assert_eq!(named, [false, true, true, true, false]);
        let (first, second) = (&instances[1].container, &instances[2].container);
        assert_eq!((first.hooks.len(), second.hooks.len()), (1, 0), "hooks run once, in the first");
        assert_eq!((first.ports[0].host, second.ports[0].host), (Some(8000), Some(0)), "a fixed port is the first's");
        assert!(instances.iter().all(|i| i.container.replicas == 1));
        // The first copy hashes as the container would without replicas:
        // scaling adds and removes copies, it recreates none.
        let mut single = plan.containers[0].clone();
        single.replicas = 1;
        assert_eq!(first.spec_hash(), single.spec_hash());
        assert_eq!(plan.containers[0].copy_names(), ["server", "server-2", "server-3"]);
    }

    #[test]
    fn an_engine_that_runs_copies_gets_the_container_with_its_count() {
        let plan = plan();
        let instances = plan.instances(true);
        let main = &instances[1];
        assert_eq!((main.container.name.as_str(), main.container.replicas, main.answers_to_name), ("server", 3, true));
        assert_eq!(instances.len(), 3);
    }
}
