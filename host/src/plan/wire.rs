//! Wiring: which service fills which role of each plugin (named in `uses`,
//! inferred when only one service fits, every other service for `collect`
//! roles), and the order that puts each service after what it uses. Must
//! not call plugins: it reads their info.

use std::collections::{HashMap, HashSet};

use super::{Loaded, options::referenced_services};
use crate::{
    desired::{self as d, Dependency, WaitFor},
    stack::{Stack, StackError, Uses},
};

/// For each service, the services that fill its plugin's roles; and the
/// services that fill collect roles.
pub(super) type Wiring<'s> = (HashMap<&'s str, Vec<Dependency>>, HashSet<&'s str>);

/// Each service's (host-level options, plugin config, host paths the user's binds resolved to).
pub(super) type Configs<'s> = HashMap<&'s str, super::service::Config>;

pub(super) fn wire<'s>(stack: &'s Stack, plugins: &HashMap<String, Loaded>, configs: &Configs<'s>) -> Result<Wiring<'s>, StackError> {
    let mut all = HashMap::new();
    for service in &stack.services {
        let roles = &plugins[&service.plugin].plugin.info.uses;
        let name = &service.name;
        let uses_key = format!("services.{name}.uses");
        let fits = |role: &d::RoleInfo, used: &str| -> bool {
            stack.service(used).is_some_and(|s| role.plugins.is_empty() || role.plugins.contains(&s.plugin))
        };
        let known = |used: &str, key: &str| -> Result<(), StackError> {
            if let Some(profiles) = stack.not_active.get(used) {
                let mut add = stack.profiles.clone();
                add.push(profiles[0].clone());
                return Err(stack.error_at(
                    key,
                    format!("service `{name}` uses `{used}`, which exists only in profile `{}`, not active", profiles.join("`, `")),
                    "in a profile not active",
                    Some(format!("add its profile: --profile {} (or list it in [stack] profile)", add.join(","))),
                ));
            }
            if stack.service(used).is_none() || used == name {
                let others: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).filter(|s| s != name).collect();
                let help = if others.is_empty() {
                    "the stack has no other service".to_string()
                } else {
                    format!("services it can use: {}", others.join(", "))
                };
                return Err(stack.error_at(
                    key,
                    format!("service `{name}` uses `{used}`, which is not another service of this stack"),
                    "unknown service",
                    Some(help),
                ));
            }
            Ok(())
        };

        let mut deps: Vec<Dependency> = Vec::new();
        // Secrets follow what the user wrote; a third-party plugin does not
        // get them by declaring a role that happens to fit.
        let builtin = matches!(plugins[&service.plugin].resolved.source, provision_registry::Source::Builtin);
        let bind = |deps: &mut Vec<Dependency>, role: &d::RoleInfo, used: &str, named: bool| {
            deps.push(Dependency { role: role.name.clone(), service: used.to_string(), wait: role.wait, secrets: named || builtin });
        };
        // Roles named in the service's own config (`routes = { "/" = "web" }`).
        let (options, config, _) = &configs[name.as_str()];
        for role in roles.iter().filter(|r| r.from_config.is_some()) {
            let key = role.from_config.as_deref().unwrap_or_default();
            for (path, used) in named_in(config.get(key), key) {
                let path = format!("services.{name}.{path}");
                known(used, &path)?;
                if !fits(role, used) {
                    return Err(stack.error_at(
                        &path,
                        format!("role `{}` needs a service of plugin {}", role.name, role.plugins.join(" or ")),
                        "cannot fill this role",
                        None,
                    ));
                }
                if !deps.iter().any(|d| d.role == role.name && d.service == used) {
                    bind(&mut deps, role, used, true);
                }
            }
        }
        match &service.uses {
            Uses::Infer => {}
            Uses::Roles(pairs) => {
                for (role_name, used) in pairs {
                    known(used, &format!("{uses_key}.{role_name}"))?;
                    let Some(role) = roles.iter().find(|r| &r.name == role_name) else {
                        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
                        return Err(stack.error_at(
                            &format!("{uses_key}.{role_name}"),
                            format!("plugin `{}` has no role `{role_name}`", service.plugin),
                            "unknown role",
                            Some(format!("its roles are: {}", if names.is_empty() { "none".into() } else { names.join(", ") })),
                        ));
                    };
                    if !fits(role, used) {
                        let plugin = &stack.service(used).expect("known").plugin;
                        return Err(stack.error_at(
                            &format!("{uses_key}.{role_name}"),
                            format!(
                                "role `{role_name}` of service `{name}` needs a service of plugin {}; `{used}` is `{plugin}`",
                                role.plugins.join(" or ")
                            ),
                            "cannot fill this role",
                            None,
                        ));
                    }
                    if let Some(key) = &role.from_config {
                        return Err(stack.error_at(
                            &format!("{uses_key}.{role_name}"),
                            format!("role `{role_name}` of service `{name}` is filled by the services named in its `{key}`"),
                            "not named in uses",
                            Some(format!("name the service in `{key}` and remove this entry")),
                        ));
                    }
                    if role.collect {
                        return Err(stack.error_at(
                            &format!("{uses_key}.{role_name}"),
                            format!("role `{role_name}` of service `{name}` is filled by the stack itself: every other service, with its metrics"),
                            "not named in uses",
                            Some("remove this entry".into()),
                        ));
                    }
                    bind(&mut deps, role, used, true);
                }
            }
            Uses::Services(list) => {
                for (i, used) in list.iter().enumerate() {
                    known(used, &format!("{uses_key}.{i}"))?;
                    let open: Vec<&d::RoleInfo> = roles
                        .iter()
                        .filter(|r| !r.collect && r.from_config.is_none() && (r.many || !deps.iter().any(|d| d.role == r.name)) && fits(r, used))
                        .collect();
                    match open[..] {
                        [role] => bind(&mut deps, role, used, true),
                        [] => {
                            let plugin = &stack.service(used).expect("known").plugin;
                            return Err(stack.error_at(
                                &format!("{uses_key}.{i}"),
                                format!(
                                    "plugin `{}` of service `{name}` has no open role that `{used}` (plugin `{plugin}`) can fill",
                                    service.plugin
                                ),
                                "cannot be used",
                                Some(format!(
                                    "to wait for it, write after = [\"{used}\"]; to pass it its address, reference its outputs, e.g. env = {{ URL = \"${{{used}.url}}\" }}"
                                )),
                            ));
                        }
                        ref several => {
                            let names: Vec<&str> = several.iter().map(|r| r.name.as_str()).collect();
                            return Err(stack.error_at(
                                &format!("{uses_key}.{i}"),
                                format!("`{used}` could fill roles {} of service `{name}`", names.join(", ")),
                                "ambiguous",
                                Some(format!("name the role: uses = {{ {} = \"{used}\" }}", names[0])),
                            ));
                        }
                    }
                }
            }
        }
        // Roles still open are filled by the one service that fits.
        let open: Vec<&d::RoleInfo> =
            roles.iter().filter(|r| !r.collect && r.from_config.is_none() && !deps.iter().any(|d| d.role == r.name)).collect();
        for role in open {
            if role.plugins.is_empty() {
                // Any plugin could fill it, so only the user can say which.
                if role.optional {
                    continue;
                }
                return Err(stack.error_at(
                    &format!("services.{name}"),
                    format!("service `{name}` needs a `{}` ({}), which any service can be", role.name, role.description),
                    "role unfilled",
                    Some(format!("name it: uses = {{ {} = \"SERVICE\" }}", role.name)),
                ));
            }
            let candidates: Vec<&str> = stack.services.iter().filter(|s| &s.name != name && fits(role, &s.name)).map(|s| s.name.as_str()).collect();
            match candidates.as_slice() {
                [used] => bind(&mut deps, role, used, false),
                [] if role.optional => {}
                [] => {
                    return Err(stack.error_at(
                        &format!("services.{name}"),
                        format!("service `{name}` needs a `{}` ({}), and no service of the stack can be one", role.name, role.description),
                        "role unfilled",
                        Some(format!("add a service with plugin {}", role.plugins.join(" or "))),
                    ));
                }
                several => {
                    return Err(stack.error_at(
                        &format!("services.{name}"),
                        format!("service `{name}` needs one `{}`, and {} could be it", role.name, several.join(", ")),
                        "ambiguous",
                        Some(format!("choose one: uses = {{ {} = \"{}\" }}", role.name, several[0])),
                    ));
                }
            }
        }
        // What the user declared beyond roles (role ""): `after`, and the
        // services whose outputs the config references, ready first.
        for (used, wait) in &options.after {
            known(used, &format!("services.{name}.after.{used}"))?;
            deps.push(Dependency { role: String::new(), service: used.clone(), wait: *wait, secrets: false });
        }
        for used in referenced_services(options, config) {
            if !options.after.iter().any(|(s, _)| s == used) {
                known(used, &format!("services.{name}"))?;
                deps.push(Dependency { role: String::new(), service: used.to_string(), wait: WaitFor::Ready, secrets: false });
            }
        }
        all.insert(name.as_str(), deps);
    }
    let collected = collect(stack, plugins, &mut all);
    Ok((all, collected))
}

/// The services a config value names, with their keys: a string, a list of
/// strings, or a table whose values are strings (contract 0.2.0).
fn named_in<'c>(value: Option<&'c serde_json::Value>, key: &str) -> Vec<(String, &'c str)> {
    use serde_json::Value;
    match value {
        Some(Value::String(s)) => vec![(key.to_string(), s.as_str())],
        Some(Value::Array(items)) => items.iter().enumerate().filter_map(|(i, v)| Some((format!("{key}.{i}"), v.as_str()?))).collect(),
        Some(Value::Object(map)) => map.iter().filter_map(|(k, v)| Some((format!("{key}.{k}"), v.as_str()?))).collect(),
        _ => Vec::new(),
    }
}

/// Fill `collect` roles: each collector uses every other service except
/// those that use it (directly or not) and other collectors, so no cycle.
/// Returns the services collected.
fn collect<'s>(stack: &'s Stack, plugins: &HashMap<String, Loaded>, all: &mut HashMap<&'s str, Vec<Dependency>>) -> HashSet<&'s str> {
    let mut collected = HashSet::new();
    let collect_roles = |plugin: &str| -> Vec<d::RoleInfo> { plugins[plugin].plugin.info.uses.iter().filter(|r| r.collect).cloned().collect() };
    let collectors: HashSet<&str> = stack.services.iter().filter(|s| !collect_roles(&s.plugin).is_empty()).map(|s| s.name.as_str()).collect();
    for service in stack.services.iter().filter(|s| collectors.contains(s.name.as_str())) {
        let collector = service.name.as_str();
        let users = users_of(all, collector);
        for role in collect_roles(&service.plugin) {
            let used: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).filter(|s| !collectors.contains(s) && !users.contains(s)).collect();
            let deps = all.get_mut(collector).expect("wired");
            deps.extend(used.iter().map(|s| Dependency { role: role.name.clone(), service: s.to_string(), wait: role.wait, secrets: false }));
            collected.extend(used);
        }
    }
    collected
}

/// The services that use `to`, directly or through others: one walk of the
/// reversed graph, so collecting stays linear in the stack's size.
fn users_of<'s>(all: &HashMap<&'s str, Vec<Dependency>>, to: &str) -> HashSet<&'s str> {
    let mut used_by: HashMap<&str, Vec<&'s str>> = HashMap::new();
    for (service, deps) in all {
        for dep in deps {
            used_by.entry(dep.service.as_str()).or_default().push(service);
        }
    }
    let mut seen = HashSet::new();
    let mut next = vec![to];
    while let Some(at) = next.pop() {
        for user in used_by.get(at).into_iter().flatten() {
            if seen.insert(*user) {
                next.push(user);
            }
        }
    }
    seen
}

/// Services ordered so each comes after what it uses; ties keep file order
/// (Kahn's algorithm over file order: linear in services and uses).
pub(super) fn start_order<'s>(stack: &'s Stack, deps: &HashMap<&'s str, Vec<Dependency>>) -> Result<Vec<&'s str>, StackError> {
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    let position: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut waiting: Vec<usize> = names.iter().map(|n| deps[n].len()).collect();
    let mut used_by: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (i, name) in names.iter().enumerate() {
        for dep in &deps[name] {
            used_by[position[dep.service.as_str()]].push(i);
        }
    }
    // The ready set, smallest file position first.
    let mut ready: std::collections::BTreeSet<usize> = (0..names.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(names.len());
    while let Some(i) = ready.pop_first() {
        order.push(names[i]);
        for &user in &used_by[i] {
            waiting[user] -= 1;
            if waiting[user] == 0 {
                ready.insert(user);
            }
        }
    }
    if order.len() < names.len() {
        let placed: HashSet<&str> = order.iter().copied().collect();
        let cycle = find_cycle(stack, deps, &placed);
        return Err(stack.error_at(
            &format!("services.{}.uses", cycle[0]),
            format!("services use each other in a cycle: {}", cycle.join(" → ")),
            "part of the cycle",
            Some("a service can only use or wait for services that do not use it back; remove one `uses` or `after` entry".into()),
        ));
    }
    Ok(order)
}

fn find_cycle<'s>(stack: &'s Stack, deps: &HashMap<&'s str, Vec<Dependency>>, done: &HashSet<&str>) -> Vec<&'s str> {
    // Every unplaced service has an unplaced dependency: walk them until one repeats.
    let mut path: Vec<&str> = Vec::new();
    let mut at = stack.services.iter().map(|s| s.name.as_str()).find(|s| !done.contains(s)).expect("some service is unplaced");
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at);
            return cycle;
        }
        path.push(at);
        let next = deps[at].iter().find(|d| !done.contains(&d.service.as_str())).expect("blocked by an unplaced service");
        at = stack.service(&next.service).map(|s| s.name.as_str()).expect("known service");
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::planned;

    #[test]
    fn a_role_given_to_a_service_the_stack_lacks_names_those_it_can_use() {
        let stack = "[stack]\nname = \"p\"\n[services.proxy]\nplugin = \"nginx\"\nuses = { upstream = \"nowhere\" }\n[services.web]\nplugin = \"container\"\nimage = \"web:1\"\n";
        let err = planned(stack).err().expect("refused");
        let debug = format!("{err:?}");
        assert!(debug.contains("services it can use: web"), "{debug}");
    }

    #[test]
    fn services_waiting_for_each_other_are_a_cycle_named_in_order() {
        let stack = "[stack]\nname = \"p\"\n[services.a]\nplugin = \"container\"\nimage = \"x:1\"\nafter = { b = \"started\" }\n[services.b]\nplugin = \"container\"\nimage = \"x:1\"\nafter = { a = \"started\" }\n";
        let err = planned(stack).err().expect("refused");
        assert!(err.to_string().contains("services use each other in a cycle: a → b → a"), "{err}");
    }

    #[test]
    fn a_service_starts_after_the_one_it_waits_for_whatever_the_file_order() {
        let stack = "[stack]\nname = \"p\"\n[services.late]\nplugin = \"container\"\nimage = \"x:1\"\nafter = { early = \"ready\" }\n[services.early]\nplugin = \"container\"\nimage = \"x:1\"\n";
        let planned = planned(stack).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<&str> = planned.state.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["early", "late"]);
        assert_eq!(planned.state.services[1].depends_on[0].wait, crate::desired::WaitFor::Ready);
    }
}
