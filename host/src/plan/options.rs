//! The user's side of a service: its table split into the host-level
//! options (`stack::options`) and the plugin's config (`split`), the strings
//! the user wrote (`strings`: paths they named, `${service.output}`
//! references), and the options applied to the plan the plugin returned and
//! the policy accepted (`apply`): the user's word over the plugin's, so a
//! plugin never needs to know about them. Which container each reaches: `env` every container and task; `networks` every
//! container and task; `user`, `read_only`, `no_new_privileges`,
//! `resources`, `volumes` and `tmpfs` the main container and the tasks;
//! `restart`, `hooks` and `replicas` the main container; `publish` the host
//! ports of every container.

use std::collections::BTreeMap;

use super::{Loaded, host_path};
use crate::{
    desired::{self as d, HostPaths, Network, ServicePlan},
    stack::{
        NetworkDecl, Permission, Stack, StackError,
        interpolate::{has_references, output_references, shown},
        options::{Publish, ServiceOptions},
    },
};

/// A service's config as the user wrote it → (host-level options, the
/// plugin's config). A key a built-in plugin's schema declares stays the
/// plugin's (postgres's `user`); a third-party plugin cannot take a key from
/// the host this way (`read_only = true` must not reach a plugin that
/// ignores it).
pub(super) fn split(
    stack: &Stack,
    service: &crate::stack::Service,
    loaded: &Loaded,
) -> Result<(ServiceOptions, serde_json::Value, HostPaths), StackError> {
    let name = &service.name;
    let builtin = matches!(loaded.resolved.source, provision_registry::Source::Builtin);
    let properties = loaded.plugin.info.config_schema.get("properties").filter(|_| builtin);
    let declared = |key: &str| properties.and_then(|p| p.get(key)).is_some();
    let mut config = service.config.clone();
    // Outputs are filled in the plugin's config, `env` and `hooks`; a host
    // option is read before any service is planned.
    for key in crate::stack::options::KEYS.iter().filter(|k| !["env", "hooks"].contains(k) && !declared(k)) {
        let Some(value) = config.get(*key) else { continue };
        let text = std::cell::RefCell::new(String::new());
        let marked = |s: &str| {
            let found = has_references(s);
            if found {
                *text.borrow_mut() = shown(s);
            }
            found
        };
        if let Some(at) = key_naming(value, key, &marked) {
            let text = text.into_inner();
            return Err(stack.error_at(
                &format!("services.{name}.{at}"),
                format!("`{key}` of service `{name}` refers to another service's output ({text:?}), which is filled only in env, hooks and the plugin's config"),
                "not filled here",
                Some("write the value itself, or a ${VARIABLE} from the environment or .env".into()),
            ));
        }
    }
    let options = ServiceOptions::take(&mut config, &declared).map_err(|e| {
        let key = e.key.split('.').next().unwrap_or_default().to_string();
        stack.error_at(&format!("services.{name}.{}", e.key), format!("invalid `{key}` of service `{name}`: {}", e.message), "here", None)
    })?;
    for (i, network) in options.networks.iter().enumerate() {
        if network != "default" && !stack.networks.contains_key(network) {
            let declared: Vec<&str> = stack.networks.keys().map(String::as_str).collect();
            return Err(stack.error_at(
                &format!("services.{name}.networks.{i}"),
                format!("service `{name}` joins network `{network}`, which the stack does not declare"),
                "undeclared network",
                Some(format!(
                    "declare it at the top level: [networks.{network}] (with `internal = true` to cut it off from outside){}",
                    if declared.is_empty() { String::new() } else { format!("; declared: {}", declared.join(", ")) }
                )),
            ));
        }
    }
    // A name another service answers to would take its traffic.
    for (i, alias) in options.aliases.iter().enumerate() {
        if stack.service(alias).is_some_and(|s| s.name != *name) {
            return Err(stack.error_at(
                &format!("services.{name}.aliases.{i}"),
                format!("service `{name}` would answer to `{alias}`, which is another service's name"),
                "taken",
                Some("choose a name no service has".into()),
            ));
        }
    }
    let mut pins = HostPaths::new();
    for (i, mount) in options.mounts.iter().enumerate() {
        let d::MountSource::Bind(path) = &mount.source else { continue };
        let key = format!("services.{name}.volumes.{i}");
        let host =
            host_path::resolve(&stack.dir, path).map_err(|e| stack.error_at(&key, format!("bind mount of service `{name}`: {e}"), "here", None))?;
        pins.insert(path.clone(), host.real.clone());
        if !host.inside && !service.allow.contains(&Permission::BindOutsideProject) {
            return Err(stack.error_at(
                &key,
                format!("service `{name}` binds {}, outside the project folder", host.real.display()),
                "outside the project",
                Some(format!("if you mean it, add `allow = [\"bind-outside-project\"]` to [services.{name}]")),
            ));
        }
    }
    Ok((options, config, pins))
}

/// Every string of a config, through `f` (with its dotted key).
pub(super) fn map_strings(
    value: serde_json::Value,
    key: &str,
    f: &dyn Fn(&str, &str) -> Result<String, StackError>,
) -> Result<serde_json::Value, StackError> {
    use serde_json::Value;
    let join = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
    Ok(match value {
        Value::String(s) if has_references(&s) => Value::String(f(&s, key)?),
        Value::Array(items) => {
            Value::Array(items.into_iter().enumerate().map(|(i, v)| map_strings(v, &join(&i.to_string()), f)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| Ok((k.clone(), map_strings(v, &join(&k), f)?))).collect::<Result<_, _>>()?),
        other => other,
    })
}

/// The dotted key of the first string in a config that `wanted` accepts.
pub(super) fn key_naming(value: &serde_json::Value, key: &str, wanted: &dyn Fn(&str) -> bool) -> Option<String> {
    use serde_json::Value;
    let join = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
    match value {
        Value::String(s) if !s.is_empty() && wanted(s) => Some(key.to_string()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| key_naming(v, &join(&i.to_string()), wanted)),
        Value::Object(map) => map.iter().find_map(|(k, v)| key_naming(v, &join(k), wanted)),
        _ => None,
    }
}

/// The services a config's strings reference as `${service.output}`.
pub(super) fn referenced_services<'a>(options: &'a ServiceOptions, config: &'a serde_json::Value) -> Vec<&'a str> {
    let mut texts = Vec::new();
    strings(config, &mut texts);
    texts.extend(options.env.values().map(String::as_str));
    texts.extend(options.hooks.iter().flat_map(|h| h.command.iter().map(String::as_str)));
    let mut services: Vec<&str> = texts.into_iter().flat_map(output_references).map(|(service, _)| service).collect();
    services.sort_unstable();
    services.dedup();
    services
}

/// Every string in a config (paths the user named there, references).
pub(super) fn strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// An option that cannot apply to this plan: (key, message).
pub type Misfit = (String, String);

/// `ephemeral_ports` (the test and ci profiles): every published port is a
/// free one the engine picks, unless `publish` names it, so parallel jobs of
/// one stack never collide (`provision env` and `port` say which it got).
pub fn apply(
    plan: &mut ServicePlan,
    options: &ServiceOptions,
    declared: &BTreeMap<String, NetworkDecl>,
    ephemeral_ports: bool,
) -> Result<(), Misfit> {
    // A network made outside the stack is joined where the user says so,
    // never because a plugin named it (it may be another project's).
    let external = |n: &String| declared.get(n).is_some_and(|d| d.external.is_some()) && !options.networks.contains(n);
    let planned = plan.networks.iter().map(|n| &n.name).chain(plan.containers.iter().chain(&plan.tasks).flat_map(|c| &c.networks));
    if let Some(network) = planned.into_iter().find(|n| external(n)) {
        return Err((
            "networks".into(),
            format!(
                "the plugin joins network `{network}`, which the stack declares external: only `networks = [\"{network}\"]` of the service joins it"
            ),
        ));
    }
    let needs_main = [
        ("replicas", options.replicas > 1),
        ("restart", options.restart.is_some()),
        ("hooks", !options.hooks.is_empty()),
        ("aliases", !options.aliases.is_empty()),
        ("stdin_open", options.stdin_open),
        ("tty", options.tty),
    ];
    if plan.containers.is_empty()
        && let Some((key, _)) = needs_main.iter().find(|(_, set)| *set)
    {
        return Err((key.to_string(), "this service runs only one-shot tasks: there is no long-running container to apply it to".into()));
    }

    for c in plan.containers.iter_mut().chain(plan.tasks.iter_mut()) {
        c.env.extend(options.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for network in &options.networks {
            if !c.networks.contains(network) {
                c.networks.push(network.clone());
            }
        }
        if ephemeral_ports {
            let named = |port: u16| matches!(&options.publish, Some(Publish::Ports(ports)) if ports.contains_key(&port));
            c.ports.iter_mut().filter(|p| p.host.is_some() && !named(p.container)).for_each(|p| p.host = Some(0));
        }
        match &options.publish {
            None | Some(Publish::All(true)) => {}
            Some(Publish::All(false)) => c.ports.iter_mut().for_each(|p| p.host = None),
            Some(Publish::Ports(ports)) => {
                for port in &mut c.ports {
                    if let Some(host) = ports.get(&port.container) {
                        port.host = *host;
                    }
                }
            }
        }
    }
    // A published port the plugin did not plan: on the main container.
    if let (Some(Publish::Ports(ports)), Some(main)) = (&options.publish, plan.containers.first_mut()) {
        for (&container, &host) in ports {
            let planned = main.ports.iter().any(|p| p.container == container);
            if !planned && host.is_some() {
                main.ports.push(crate::desired::Port { container, host, protocol: crate::desired::Protocol::Tcp });
            }
        }
    }
    for network in options.networks.iter().filter(|n| *n != "default") {
        if !plan.networks.iter().any(|n| &n.name == network) {
            let internal = declared.get(network).is_some_and(|d| d.internal);
            plan.networks.push(Network { name: network.clone(), internal });
        }
    }

    let main_count = plan.containers.len().min(1);
    for c in plan.containers.iter_mut().take(main_count).chain(plan.tasks.iter_mut()) {
        if let Some(user) = &options.user {
            c.user = Some(user.clone());
        }
        if let Some(read_only) = options.read_only {
            c.read_only = read_only;
        }
        if let Some(no_new_privileges) = options.no_new_privileges {
            c.no_new_privileges = no_new_privileges;
        }
        let r = &mut c.resources;
        r.memory_bytes = options.memory_bytes.or(r.memory_bytes);
        r.milli_cpus = options.milli_cpus.or(r.milli_cpus);
        r.pids = options.pids.or(r.pids);
        for mount in &options.mounts {
            // The user's mount replaces the plugin's at the same place, in
            // its place (a database's data on tmpfs in the test profile).
            match c.mounts.iter().position(|m| m.target == mount.target) {
                Some(i) => c.mounts[i] = mount.clone(),
                None => c.mounts.push(mount.clone()),
            }
        }
    }
    for mount in &options.mounts {
        // SERVICE/VOLUME is that service's to declare.
        if let crate::desired::MountSource::Volume(name) = &mount.source
            && !name.contains('/')
            && !plan.volumes.contains(name)
        {
            plan.volumes.push(name.clone());
        }
    }

    // The user's rule for a path replaces the plugin's for it.
    for rule in &options.watch {
        plan.watch.retain(|r| r.path.trim_end_matches('/') != rule.path.trim_end_matches('/'));
        plan.watch.push(rule.clone());
    }

    if options.snapshot == Some(false) {
        plan.containers.iter_mut().for_each(|c| c.snapshot = None);
    }

    let Some(main) = plan.containers.first_mut() else { return Ok(()) };
    if let Some(restart) = options.restart {
        main.restart = restart;
    }
    main.hooks.extend(options.hooks.iter().cloned());
    main.aliases = options.aliases.clone();
    (main.stdin_open, main.tty) = (options.stdin_open, options.tty);
    // A count: the copies are made at the hop to the engine (`desired::instances`).
    main.replicas = options.replicas;
    let main_name = main.name.clone();
    let copies = main.copy_names();
    if let Some(clash) = copies.iter().skip(1).find(|copy| plan.containers.iter().any(|c| &c.name == *copy)) {
        return Err(("replicas".into(), format!("replica `{clash}` of `{main_name}` would have the name of another container of the plan")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Container, Image, Mount, MountSource, Port, Protocol, RestartPolicy};

    fn plan() -> ServicePlan {
        let mut server = Container::new("server", Image::Pull("postgres:16".into()));
        server.ports.push(Port { container: 5432, host: Some(5432), protocol: Protocol::Tcp });
        server.mounts.push(Mount { source: MountSource::Volume("data".into()), target: "/var/lib/postgresql/data".into(), read_only: false });
        let exporter = Container::new("exporter", Image::Pull("exporter".into()));
        ServicePlan { containers: vec![server, exporter], volumes: vec!["data".into()], ..ServicePlan::default() }
    }

    #[test]
    fn options_reach_the_containers_they_name() {
        let mut p = plan();
        let options = ServiceOptions {
            replicas: 3,
            restart: Some(RestartPolicy::Always),
            publish: Some(Publish::Ports(BTreeMap::from([(5432, Some(5433))]))),
            env: BTreeMap::from([("A".into(), "1".into())]),
            networks: vec!["backend".into()],
            mounts: vec![Mount {
                source: MountSource::Tmpfs { size_bytes: None, mode: None },
                target: "/var/lib/postgresql/data".into(),
                read_only: false,
            }],
            user: Some("999".into()),
            stdin_open: true,
            tty: true,
            ..ServiceOptions::default()
        };
        let declared = BTreeMap::from([("backend".to_string(), NetworkDecl { internal: true, external: None })]);
        apply(&mut p, &options, &declared, false).unwrap();
        let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["server", "exporter"], "replicas are a count, not copies in the plan");
        let (main, exporter) = (&p.containers[0], &p.containers[1]);
        assert_eq!(main.ports[0].host, Some(5433));
        assert_eq!((main.replicas, exporter.replicas), (3, 1));
        assert!(matches!(main.mounts[..], [Mount { source: MountSource::Tmpfs { .. }, .. }]), "the user's tmpfs replaces the volume");
        assert_eq!((main.restart, exporter.restart), (RestartPolicy::Always, RestartPolicy::No));
        assert_eq!((main.user.as_deref(), exporter.user.as_deref()), (Some("999"), None));
        assert_eq!(exporter.env["A"], "1");
        assert_eq!(exporter.networks, ["backend"]);
        assert_eq!((main.stdin_open, main.tty, exporter.stdin_open, exporter.tty), (true, true, false, false), "attach reaches the main process");
        assert_eq!(p.networks, [Network { name: "backend".into(), internal: true }]);
    }

    #[test]
    fn a_replica_may_not_take_another_containers_name() {
        let mut p = plan();
        p.containers[1].name = "server-2".into();
        let err = apply(&mut p, &ServiceOptions { replicas: 2, ..ServiceOptions::default() }, &BTreeMap::new(), false).unwrap_err();
        assert_eq!(err.0, "replicas");
    }

    #[test]
    fn publish_false_unpublishes_and_tasks_only_services_have_no_replicas() {
        let mut p = plan();
        apply(&mut p, &ServiceOptions { replicas: 1, publish: Some(Publish::All(false)), ..ServiceOptions::default() }, &BTreeMap::new(), false)
            .unwrap();
        assert_eq!(p.containers[0].ports[0].host, None);
        let mut p = plan();
        apply(&mut p, &ServiceOptions { replicas: 1, ..ServiceOptions::default() }, &BTreeMap::new(), true).unwrap();
        assert_eq!(p.containers[0].ports[0].host, Some(0), "test and ci: a free port");

        let mut tasks_only = ServicePlan { tasks: plan().containers, ..ServicePlan::default() };
        let err = apply(&mut tasks_only, &ServiceOptions { replicas: 2, ..ServiceOptions::default() }, &BTreeMap::new(), false).unwrap_err();
        assert_eq!(err.0, "replicas");
    }
}
