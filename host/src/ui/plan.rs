//! `provision plan`'s output: a readable summary, the JSON desired state,
//! what `up` would change, and where the time went.

use std::fmt::Write as _;

use super::Masker;
use crate::{
    desired::{Container, DesiredState, Image, MountSource, Probe, RestartPolicy},
    plan::Timings,
    reconcile::{Change, Diff},
};

/// The desired state as JSON, with what `up` would change when known.
pub fn json(state: &DesiredState, changes: Option<&Diff>, masker: &Masker) -> String {
    let mut value = serde_json::to_value(state).expect("the desired state serializes");
    // Each container's spec hash is part of the desired state's contract.
    for (service, json) in state.services.iter().zip(value["services"].as_array_mut().expect("services")) {
        for (kind, list) in [("containers", &service.plan.containers), ("tasks", &service.plan.tasks)] {
            for (container, cjson) in list.iter().zip(json["plan"][kind].as_array_mut().expect("list")) {
                cjson["spec_hash"] = container.spec_hash().into();
            }
        }
    }
    if let Some(changes) = changes {
        value["changes"] = serde_json::to_value(changes).expect("a diff serializes");
    }
    masker.mask(&serde_json::to_string_pretty(&value).expect("JSON"))
}

pub fn summary(state: &DesiredState, stack_name: &str, masker: &Masker) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "Stack {stack_name} · project {} · profile {}\n", state.project, state.profile);
    let _ = writeln!(w, "Plugins");
    let width = state.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &state.plugins {
        let _ = writeln!(w, "  {:width$}  {:8} {:10} sha256:{}  contract {}", p.name, p.version, p.source, &p.sha256[..16], p.contract);
    }
    let _ = writeln!(w, "\nServices, in start order");
    for service in &state.services {
        let uses = if service.depends_on.is_empty() {
            String::new()
        } else {
            let deps: Vec<String> = service
                .depends_on
                .iter()
                .map(|d| {
                    let role = if d.role.is_empty() { "after" } else { &d.role };
                    format!("{role}={} ({:?}{})", d.service, d.wait, if d.secrets { ", with secrets" } else { "" }).to_lowercase()
                })
                .collect();
            format!(" uses {}", deps.join(", "))
        };
        let _ = writeln!(w, "\n  {} ({}){uses}", service.name, service.plugin);
        for task in &service.plan.tasks {
            container(w, "task", task);
        }
        for c in &service.plan.containers {
            container(w, "container", c);
        }
        if !service.plan.volumes.is_empty() {
            let _ = writeln!(w, "    volumes   {}", service.plan.volumes.join(", "));
        }
        if !service.plan.outputs.is_empty() {
            let outputs: Vec<String> = service.plan.outputs.iter().map(|o| format!("{}={}", o.name, o.value)).collect();
            let _ = writeln!(w, "    outputs   {}", outputs.join(" "));
        }
    }
    // Env values and commands come from plugins: no raw control characters.
    super::plain(&masker.mask(&out))
}

fn container(w: &mut String, kind: &str, c: &Container) {
    let image = match &c.image {
        Image::Pull(reference) => reference.clone(),
        Image::Build(b) => format!("built from {}", b.context),
    };
    let _ = writeln!(w, "    {kind} {}: {image}  [spec {}]", c.name, c.spec_hash());
    if c.replicas > 1 {
        // Copies differ from the first only in name, free host ports and no hooks.
        let _ = writeln!(w, "      replicas {} ({}, all answering to the service's name)", c.replicas, c.copy_names().join(", "));
    }
    if let Some(cmd) = &c.command {
        let _ = writeln!(w, "      command  {}", shell_words(cmd));
    }
    if !c.env.is_empty() {
        let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(w, "      env      {}", env.join(" "));
    }
    for p in &c.ports {
        let host = match p.host {
            None => "not published".to_string(),
            Some(0) => "127.0.0.1:<any>".to_string(),
            Some(port) => format!("127.0.0.1:{port}"),
        };
        let _ = writeln!(w, "      port     {}/{} ← {host}", p.container, format!("{:?}", p.protocol).to_lowercase());
    }
    for m in &c.mounts {
        let source = match &m.source {
            MountSource::Volume(v) => format!("volume {v}"),
            MountSource::Bind(p) => format!("bind {p}"),
            MountSource::Copy(p) => format!("copy of {p}"),
            MountSource::Tmpfs { .. } => "tmpfs".into(),
            MountSource::Anonymous => "anonymous volume".into(),
        };
        let ro = match (&m.source, m.read_only) {
            (MountSource::Copy(_), _) => " (copied in when created: it lies inside a folder a container can write)",
            (_, true) => " (read-only)",
            (MountSource::Bind(_), false) => " (writable: the service's table in stack.toml names this folder)",
            _ => "",
        };
        let _ = writeln!(w, "      mount    {source} → {}{ro}", m.target);
    }
    for f in &c.files {
        let _ = writeln!(w, "      file     {} ({} bytes)", f.path, f.contents.len());
    }
    if let Some(h) = &c.health {
        let probe = match &h.probe {
            Probe::Exec(cmd) => format!("exec {}", shell_words(cmd)),
            Probe::Http { port, path } => format!("http :{port}{path}"),
            Probe::Tcp(port) => format!("tcp :{port}"),
            Probe::Postgres(port) => format!("postgres :{port}"),
            Probe::Redis(port) => format!("redis :{port}"),
        };
        let _ = writeln!(w, "      ready    {probe}");
    }
    for hook in &c.hooks {
        let _ = writeln!(w, "      hook     {}: {}", hook.name, shell_words(&hook.command));
    }
    let mut runs = Vec::new();
    if let Some(user) = &c.user {
        runs.push(format!("as user {user}"));
    }
    for (set, what) in [(c.read_only, "read-only root"), (c.no_new_privileges, "no new privileges")] {
        if set {
            runs.push(what.to_string());
        }
    }
    if c.restart != RestartPolicy::No {
        runs.push(format!("restart {}", serde_json::to_value(c.restart).expect("a policy serializes").as_str().unwrap_or_default()));
    }
    let r = &c.resources;
    runs.extend(r.memory_bytes.map(|m| format!("memory {} MiB", m >> 20)));
    runs.extend(r.milli_cpus.map(|m| format!("cpus {}", f64::from(m) / 1000.0)));
    runs.extend(r.pids.map(|p| format!("pids {p}")));
    if !runs.is_empty() {
        let _ = writeln!(w, "      runs     {}", runs.join(", "));
    }
    if !c.networks.is_empty() {
        let _ = writeln!(w, "      networks {}", c.networks.join(", "));
    }
}

fn shell_words(words: &[String]) -> String {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,@".contains(c)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

pub fn timings(timings: &Timings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "resolve {:>9.3} ms", ms(timings.resolve));
    for t in &timings.plugins {
        let _ = writeln!(
            out,
            "{:10} load {:>8.3} ms ({})  instantiate+info {:>7.3} ms  plan: instantiate {:>7.3} ms call {:>7.3} ms",
            t.plugin,
            ms(t.load),
            if t.cached { "cached" } else { "compiled" },
            ms(t.instantiate),
            ms(t.plan_instantiate),
            ms(t.plan_call)
        );
    }
    let _ = writeln!(out, "total   {:>9.3} ms", ms(timings.total));
    out
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The diff section of `plan`: what `up` would do.
pub fn diff_summary(diff: &Diff) -> String {
    let mut out = String::from("\nAgainst the engine\n");
    for step in &diff.steps {
        let what = if step.task { "task" } else { "container" };
        let change = match &step.change {
            Change::Create => "create".to_string(),
            Change::Keep => "keep".to_string(),
            Change::Recreate { fields } if fields == &[crate::reconcile::INTERRUPTED] => format!("recreate {}", crate::reconcile::INTERRUPTED),
            Change::Recreate { fields } => format!("recreate (changed: {})", fields.join(", ")),
        };
        let _ = writeln!(out, "  {}/{} ({what}): {change}", step.service, step.container);
    }
    for orphan in &diff.orphans {
        let _ = writeln!(out, "  {orphan}: remove (no longer in the stack)");
    }
    out
}
