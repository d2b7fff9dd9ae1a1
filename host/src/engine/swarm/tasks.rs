//! What the tasks of a service say: the project's containers as reconcile
//! sees them, a container's status, where a task runs, and what is left of
//! a removed service on this node.

use std::{collections::HashMap, time::Duration};

use bollard::{
    models::{EndpointPortConfig, ServiceUpdateStatusStateEnum, Task, TaskState},
    query_parameters::{ListContainersOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder},
};

use crate::engine::{Actual, Engine, EngineError, Result, Status, docker::project_filter};

use super::{
    Swarm,
    spec::{comparable, is_job, wanted},
};

impl Swarm {
    pub(super) async fn actual(&self, project: &str) -> Result<Vec<Actual>> {
        let options = ListServicesOptionsBuilder::default().filters(&project_filter(project)).build();
        let services = self.client().list_services(Some(options)).await?;
        // A port published in host mode without a number gets one per task:
        // read from the running tasks of the project's services that publish.
        let publishing: Vec<String> = services
            .iter()
            .filter(|s| s.spec.as_ref().and_then(|s| s.endpoint_spec.as_ref()).and_then(|e| e.ports.as_ref()).is_some_and(|p| !p.is_empty()))
            .filter_map(|s| s.id.clone())
            .collect();
        let tasks = if publishing.is_empty() {
            Vec::new()
        } else {
            let filter = HashMap::from([("desired-state".to_string(), vec!["running".to_string()]), ("service".to_string(), publishing)]);
            self.client().list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filter).build())).await?
        };
        let ports_of = |service: &str| -> Vec<(u16, u16)> {
            tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(service))
                .flat_map(|t| published(t.status.as_ref().and_then(|s| s.port_status.as_ref()).and_then(|p| p.ports.as_ref())))
                .collect()
        };
        Ok(services
            .into_iter()
            .map(|s| {
                let spec = s.spec.clone().unwrap_or_default();
                let container = spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref());
                Actual {
                    id: s.id.clone().unwrap_or_default(),
                    name: spec.name.clone().unwrap_or_default(),
                    labels: spec.labels.clone().unwrap_or_default(),
                    // Started: the engine keeps it running (or ran the job).
                    running: wanted(&spec) > 0 && !is_job(&spec),
                    published: ports_of(s.id.as_deref().unwrap_or_default()),
                    writes_host: container
                        .and_then(|c| c.mounts.as_ref())
                        .is_some_and(|m| m.iter().any(|m| m.typ == Some(bollard::models::MountType::BIND) && m.read_only != Some(true))),
                    // A service names its image by tag and digest, per node.
                    image_id: None,
                }
            })
            .collect())
    }

    pub(super) async fn task_status(&self, id: &str) -> Result<Status> {
        let service = self.service(id).await?;
        let spec = service.spec.clone().unwrap_or_default();
        let tasks = self.tasks(id).await?;
        let job = is_job(&spec);
        let wanted = wanted(&spec);
        // The tasks of the current run: a job's newest iteration, else those
        // the engine wants running.
        let iteration = service.job_status.as_ref().and_then(|j| j.job_iteration.as_ref()).and_then(|v| v.index);
        let current: Vec<&Task> = tasks
            .iter()
            .filter(|t| {
                if job {
                    iteration.is_some() && t.job_iteration.as_ref().and_then(|v| v.index) == iteration
                } else {
                    t.desired_state == Some(TaskState::RUNNING)
                }
            })
            .collect();
        // Running, and of the current spec: during a rolling update the old
        // task runs on beside the new one.
        let template = spec.task_template.as_ref().map(comparable);
        let container_spec = spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref());
        let running = current.iter().filter(|t| state(t) == Some(TaskState::RUNNING) && t.spec.as_ref().map(comparable) == template).count() as i64;
        let failed = current.iter().find(|t| matches!(state(t), Some(TaskState::FAILED | TaskState::REJECTED)));
        let exit_code = if job {
            match (current.iter().any(|t| state(t) == Some(TaskState::COMPLETE)), failed) {
                (true, _) => Some(0),
                (false, Some(t)) => Some(t.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.exit_code).unwrap_or(-1)),
                _ => None,
            }
        } else {
            None
        };
        // The latest word on a task that is not (yet) running: its error,
        // if one has one (a retried task's successor is only "preparing").
        let has_error = |t: &&Task| t.status.as_ref().and_then(|s| s.err.as_deref()).is_some_and(|e| !e.is_empty());
        let problem = match tasks.iter().filter(|t| state(t) != Some(TaskState::RUNNING)).max_by_key(|t| (has_error(t), timestamp(t))) {
            Some(task) => problem(task, &self.node_name(task.node_id.as_deref()).await),
            None => None,
        };
        // A rolling update is done when the engine says so: until then the
        // old task may still be the one running.
        let update = service.update_status.as_ref().and_then(|u| u.state);
        let updating = matches!(update, Some(ServiceUpdateStatusStateEnum::UPDATING | ServiceUpdateStatusStateEnum::PAUSED));
        let problem = match (update, service.update_status.as_ref().and_then(|u| u.message.clone())) {
            (Some(ServiceUpdateStatusStateEnum::PAUSED), Some(message)) => Some(format!("its update is paused: {message}")),
            _ => problem,
        };
        let ready = wanted > 0 && running >= wanted && !updating;
        Ok(Status {
            // A service runs as long as the engine keeps it so (it restarts
            // failed tasks); a job, until it is done.
            running: if job { wanted > 0 && exit_code.is_none() } else { wanted > 0 },
            exit_code,
            ip: None,
            health: (!job).then(|| if ready { "healthy" } else { "starting" }.into()),
            started_at: current
                .iter()
                .filter(|t| state(t) == Some(TaskState::RUNNING))
                .map(|t| format!("{}@{}", t.id.clone().unwrap_or_default(), timestamp(t).unwrap_or_default()))
                .min(),
            published: current
                .iter()
                .flat_map(|t| published(t.status.as_ref().and_then(|s| s.port_status.as_ref()).and_then(|p| p.ports.as_ref())))
                .collect(),
            problem,
            replicas: (wanted > 1).then(|| (u32::try_from(running).unwrap_or(0), u32::try_from(wanted).unwrap_or(0))),
            // The engine replaces a failed task with a new one; `problem` says why.
            restarts: None,
            image: None,
            stdin_open: container_spec.and_then(|c| c.open_stdin).unwrap_or(false),
            tty: container_spec.and_then(|c| c.tty).unwrap_or(false),
        })
    }

    pub(super) async fn tasks(&self, service: &str) -> Result<Vec<Task>> {
        let filter = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        Ok(self.client().list_tasks(Some(ListTasksOptionsBuilder::default().filters(&filter).build())).await?)
    }

    /// The container of a running task of the service on this node.
    pub(super) async fn local_container(&self, id: &str) -> Result<String> {
        let tasks = self.tasks(id).await?;
        let running = || tasks.iter().filter(|t| state(t) == Some(TaskState::RUNNING));
        if let Some(container) = running().filter(|t| t.node_id.as_deref() == Some(&self.node)).find_map(container_id) {
            return Ok(container);
        }
        let elsewhere = running().find_map(|t| t.node_id.clone());
        Err(EngineError::Api(
            match elsewhere {
                Some(node) => format!(
                    "its task runs on node {}; provision runs commands only in tasks on the node it talks to (a service that publishes a port, \
                     keeps a volume or runs hooks stays there)",
                    self.node_name(Some(&node)).await
                ),
                None => "it has no running task".into(),
            }
            .into(),
        ))
    }

    /// A node's host name, for messages (its id when it has none), asked
    /// of the engine once per node.
    pub(super) async fn node_name(&self, id: Option<&str>) -> String {
        let Some(id) = id.filter(|id| !id.is_empty()) else { return "(none yet)".into() };
        if let Some(name) = self.node_names.lock().expect("not poisoned").get(id) {
            return name.clone();
        }
        let node = self.client().inspect_node(id).await.ok();
        let name = node.and_then(|n| n.description?.hostname).unwrap_or_else(|| id.to_string());
        self.node_names.lock().expect("not poisoned").insert(id.to_string(), name.clone());
        name
    }

    /// Wait until this node's containers of a removed service are gone, so
    /// its volumes and networks can go too. The engine stops them itself,
    /// but leaves a job's exited ones behind: those are removed here, as is
    /// whatever still runs after 10 s.
    pub(super) async fn gone_here(&self, id: &str) -> Result<()> {
        let filter = HashMap::from([("label".to_string(), vec![format!("com.docker.swarm.service.id={id}")])]);
        for attempt in 0..150 {
            let options = ListContainersOptionsBuilder::default().all(true).filters(&filter).build();
            let left = self.client().list_containers(Some(options)).await?;
            if left.is_empty() {
                return Ok(());
            }
            for c in left {
                let running = c.state.is_some_and(|s| s.to_string() == "running");
                if !running || attempt >= 100 {
                    self.docker.remove(c.id.as_deref().unwrap_or_default()).await?;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

pub(super) fn state(task: &Task) -> Option<TaskState> {
    task.status.as_ref()?.state
}

pub(super) fn timestamp(task: &Task) -> Option<String> {
    Some(task.status.as_ref()?.timestamp.as_ref()?.to_string())
}

pub(super) fn container_id(task: &Task) -> Option<String> {
    task.status.as_ref()?.container_status.as_ref()?.container_id.clone().filter(|c| !c.is_empty())
}

/// (container port, published port) of a task. The engine lists a port
/// once per address family, IPv4 first, and Docker 20.10 picks a free port
/// for each family apart: once a port is taken on one family they differ,
/// and the IPv6 one may be another container's on IPv4 (seen: a proxy's
/// IPv6 port was postgres's on 127.0.0.1). So the first listed is kept.
pub(super) fn published(ports: Option<&Vec<EndpointPortConfig>>) -> Vec<(u16, u16)> {
    let pair = |p: &EndpointPortConfig| Some((u16::try_from(p.target_port?).ok()?, u16::try_from(p.published_port?).ok().filter(|p| *p != 0)?));
    let mut pairs: Vec<(u16, u16)> = Vec::new();
    for (container, host) in ports.into_iter().flatten().filter_map(pair) {
        if !pairs.iter().any(|(c, _)| *c == container) {
            pairs.push((container, host));
        }
    }
    pairs
}

/// What a task that is not running says about why.
pub(super) fn problem(task: &Task, node: &str) -> Option<String> {
    let status = task.status.as_ref()?;
    let said = status.err.clone().filter(|e| !e.is_empty()).or_else(|| status.message.clone())?;
    Some(format!("task {} on node {node}: {} ({said})", task.slot.unwrap_or(0), status.state?))
}

#[cfg(test)]
mod tests {
    use bollard::models::EndpointPortConfig;

    #[test]
    fn a_port_is_the_first_the_engine_lists_for_it_ipv4() {
        let port =
            |target: i64, published: i64| EndpointPortConfig { target_port: Some(target), published_port: Some(published), ..Default::default() };
        // IPv4 then IPv6, as Docker 20.10 lists them once their numbers drifted apart.
        let ports = vec![port(80, 32798), port(80, 32796), port(9113, 32799), port(9113, 32799)];
        assert_eq!(super::published(Some(&ports)), [(80, 32798), (9113, 32799)]);
    }
}
