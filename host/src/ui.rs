//! What the user sees: the plan as a readable summary or as JSON.

use std::fmt::Write as _;

use crate::{
    desired::{Container, DesiredState, Image, MountSource, Probe},
    plan::Timings,
    secrets::Secrets,
};

/// Hides secrets in everything printed, unless the user asked to see them.
pub struct Masker<'a> {
    values: Vec<String>,
    secrets: Option<&'a Secrets>,
}

impl<'a> Masker<'a> {
    pub fn new(state: &DesiredState, secrets: &'a Secrets, show: bool) -> Self {
        if show {
            return Masker { values: Vec::new(), secrets: None };
        }
        // Secret outputs the user wrote themselves (not generated) too.
        let values = state
            .services
            .iter()
            .flat_map(|s| &s.plan.outputs)
            .filter(|o| o.secret && o.value.len() >= 4)
            .map(|o| o.value.clone())
            .collect();
        Masker { values, secrets: Some(secrets) }
    }

    pub fn mask(&self, text: &str) -> String {
        let Some(secrets) = self.secrets else { return text.to_string() };
        let text = secrets.mask(text);
        self.values.iter().fold(text, |t, v| t.replace(v.as_str(), "••••••"))
    }
}

pub fn plan_json(state: &DesiredState, masker: &Masker) -> String {
    let mut value = serde_json::to_value(state).expect("the desired state serializes");
    // Each container's spec hash is part of the desired state's contract.
    for (service, json) in state.services.iter().zip(value["services"].as_array_mut().expect("services")) {
        for (kind, list) in [("containers", &service.plan.containers), ("tasks", &service.plan.tasks)] {
            for (container, cjson) in list.iter().zip(json["plan"][kind].as_array_mut().expect("list")) {
                cjson["spec_hash"] = container.spec_hash().into();
            }
        }
    }
    masker.mask(&serde_json::to_string_pretty(&value).expect("JSON"))
}

pub fn plan_summary(state: &DesiredState, stack_name: &str, masker: &Masker) -> String {
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
            let deps: Vec<String> = service.depends_on.iter().map(|d| format!("{}={} ({:?})", d.role, d.service, d.wait).to_lowercase()).collect();
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
    masker.mask(&out)
}

fn container(w: &mut String, kind: &str, c: &Container) {
    let image = match &c.image {
        Image::Pull(reference) => reference.clone(),
        Image::Build(b) => format!("built from {}", b.context),
    };
    let _ = writeln!(w, "    {kind} {}: {image}  [spec {}]", c.name, c.spec_hash());
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
            MountSource::Tmpfs { .. } => "tmpfs".into(),
            MountSource::Anonymous => "anonymous volume".into(),
        };
        let ro = if m.read_only { " (read-only)" } else { "" };
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
        };
        let _ = writeln!(w, "      ready    {probe}");
    }
    for hook in &c.hooks {
        let _ = writeln!(w, "      hook     {}: {}", hook.name, shell_words(&hook.command));
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

pub fn timings_report(timings: &Timings) -> String {
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
