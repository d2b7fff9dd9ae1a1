//! From a compose service to a stack.toml service: a built-in where the
//! image is one and its config says everything (postgres, redis), else the
//! generic `container`; host-level options for what every service has. Every
//! key the compose file set is accounted for in the report: mapped,
//! approximated (how) or dropped (why).
//!
//! `Mapper::service` runs one step per concern, each in its own file, on a
//! `Draft` of the service: the plugin's own keys (builtin, container),
//! ports, host-level options (host), env, mounts, deploy, hooks (container)
//! and what is left over (`the_rest`, here).

mod builtin;
mod container;
mod deploy;
mod env;
mod host;
mod mounts;
mod ports;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde_yaml_ng::{Mapping, Value};
use toml::{Table, Value as Toml};

use crate::stack::Permission;

use super::{Entry, Status, load::Compose};
use builtin::Builtin;

/// A stack.toml service, in the order its keys are written.
pub(super) struct StackService {
    pub name: String,
    pub table: Table,
    /// Comment lines written above it: what it approximates or leaves out.
    pub notes: Vec<String>,
    /// The powers its compose service asks for (in `allow` with `--grant`).
    pub asked: Vec<Permission>,
}

pub(super) struct Mapper<'a> {
    pub compose: &'a Compose,
    /// stack.toml's folder: paths are written relative to it.
    pub out_dir: &'a Path,
    /// Compose service name → stack service name.
    pub names: BTreeMap<String, String>,
    /// Services others wait for with service_completed_successfully.
    pub run_once: BTreeSet<String>,
    /// Named volume → the services that mount it.
    pub volume_users: BTreeMap<String, Vec<String>>,
    pub report: Vec<Entry>,
    /// `--grant`: write the `allow` entries the compose file's powers need.
    /// Without it a compose file from anywhere grants nothing: the stack
    /// names what it asks for and does not plan until the user grants it.
    pub grant: bool,
    /// Files the stack needs that the compose file held inline (an inline
    /// Dockerfile), to write beside stack.toml: (path, text).
    pub files: Vec<(std::path::PathBuf, String)>,
}

/// Which plugin a service goes to.
enum Kind {
    /// postgres or redis.
    Builtin(Builtin),
    Container,
}

/// One service on its way from compose to stack.toml: what each step reads
/// and fills in.
struct Draft<'s> {
    /// `services.NAME`: where the service's report paths start.
    at: String,
    /// Its compose name.
    name: &'s str,
    svc: &'s Mapping,
    /// The stack.toml service, keys in the order they are written.
    table: Table,
    /// The powers it asks for.
    allow: BTreeSet<Permission>,
    /// The compose keys a step accounted for; `the_rest` reports the others.
    handled: BTreeSet<&'static str>,
    /// Its environment as written, less what a built-in took.
    env: BTreeMap<String, Option<String>>,
    /// The generic `container` plugin (a built-in takes fewer keys).
    container: bool,
    /// Others wait for it to complete: it runs once.
    once: bool,
}

impl Mapper<'_> {
    /// What the report says of a power: granted (`--grant`) or only asked for.
    fn power(&self, permission: Permission) -> String {
        if self.grant {
            format!("with allow = [\"{permission}\"] (granted by --grant: review it)")
        } else {
            format!("needs allow = [\"{permission}\"], not granted (import with --grant, or add it to the service's allow)")
        }
    }

    fn note(&mut self, path: String, status: Status, detail: impl Into<String>) {
        self.report.push(Entry { path, status, detail: detail.into() });
    }

    fn mapped(&mut self, path: String, to: impl Into<String>) {
        self.note(path, Status::Mapped, to);
    }

    fn approximated(&mut self, path: String, how: impl Into<String>) {
        self.note(path, Status::Approximated, how);
    }

    fn dropped(&mut self, path: String, why: impl Into<String>) {
        self.note(path, Status::Dropped, why);
    }

    /// A path as stack.toml names it: relative to its folder when inside.
    fn path(&self, absolute: &str) -> String {
        match Path::new(absolute).strip_prefix(self.out_dir) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => format!("./{}", rel.display()),
            Err(_) => absolute.to_string(),
        }
    }

    fn inside(&self, absolute: &str) -> bool {
        Path::new(absolute).starts_with(self.out_dir)
    }

    pub fn service(&mut self, name: &str, svc: &Mapping) -> Result<StackService, String> {
        let at = format!("services.{name}");
        let stack_name = self.names[name].clone();
        let first_note = self.report.len();
        if stack_name != name {
            self.approximated(
                at.clone(),
                format!("named `{stack_name}` (a service name is a host name: lower-case letters, digits, `-`); other containers reach it as `{stack_name}`, not `{name}`"),
            );
        }
        let env = env::environment(svc);
        let kind = self.kind(&at, svc, &env);
        let mut d = Draft {
            at,
            name,
            svc,
            table: Table::new(),
            allow: BTreeSet::new(),
            handled: BTreeSet::new(),
            env,
            container: matches!(kind, Kind::Container),
            once: self.run_once.contains(name),
        };
        match kind {
            Kind::Builtin(builtin) => {
                d.table.insert("plugin".into(), builtin.plugin.into());
                self.builtin(&mut d, builtin);
            }
            Kind::Container => {
                d.table.insert("plugin".into(), "container".into());
                self.container(&mut d)?;
            }
        }
        self.ports(&mut d)?;
        self.depends_on(&mut d)?;
        self.networks(&mut d)?;
        self.process(&mut d);
        self.powers(&mut d);
        self.env(&mut d)?;
        self.mounts(&mut d)?;
        self.resources(&mut d);
        self.hooks(&mut d);
        self.profiles(&mut d);
        Ok(self.finish(d, stack_name, first_note))
    }

    /// `allow` (with `--grant`), what is left over, and the notes written
    /// above the service.
    fn finish(&mut self, d: Draft, stack_name: String, first_note: usize) -> StackService {
        let Draft { at, svc, mut table, allow, handled, .. } = d;
        if !allow.is_empty() && self.grant {
            table.insert("allow".into(), Toml::Array(allow.iter().map(|p| Toml::String(p.to_string())).collect()));
        }
        self.the_rest(&at, svc, &handled);
        let notes = self.report[first_note..]
            .iter()
            .filter(|e| e.status != Status::Mapped)
            .map(|e| format!("{} {}: {}", e.status.mark(), e.path.strip_prefix(&format!("{at}.")).unwrap_or(&e.path), e.detail))
            .chain(allow.iter().map(|p| match self.grant {
                true => format!("! allow {p}: granted (--grant) because the compose file asks for it; remove it to refuse"),
                false => format!("! allow {p}: the compose file asks for it, not granted; add allow = [\"{p}\"] here to grant it"),
            }))
            .collect();
        StackService { name: stack_name, table, notes, asked: allow.into_iter().collect() }
    }

    /// Every key not handled above: known ones with the reason provision
    /// does without them, unknown ones as having no equivalent.
    fn the_rest(&mut self, at: &str, svc: &Mapping, handled: &BTreeSet<&str>) {
        for key in svc.keys().filter_map(Value::as_str) {
            if handled.contains(key) || key.starts_with("x-") {
                continue;
            }
            let path = format!("{at}.{key}");
            match key {
                "init" if svc.get("init").and_then(Value::as_bool) == Some(false) => {
                    self.approximated(path, "every container runs with an init (it reaps zombies, passes signals); init: false is not kept")
                }
                "init" => self.mapped(path, "nothing needed: every container runs with an init"),
                "stop_grace_period" => self.approximated(path, "containers get 3 s to stop (then are killed)"),
                "pull_policy" => self.approximated(path, "images are pulled when missing (`provision up` pulls them first)"),
                "labels" => self.dropped(path, "provision labels containers itself (dev.provision.*)"),
                "logging" => self.dropped(path, "the engine's default log driver is used (`provision logs` reads it)"),
                "hostname" | "domainname" => self.dropped(path, "containers answer to the service's name"),
                "healthcheck" | "image" | "build" | "command" | "entrypoint" | "working_dir" => {}
                "develop" => self.dropped(path, "file watching is compose's; in dev, mount the code (volumes) instead"),
                "pre_stop" => self.dropped(path, "no stop hooks: containers get 3 s to stop"),
                "cap_drop" => {
                    let added = super::load::strings(svc.get("cap_add"));
                    let keeps = if added.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
                        "every capability (cap_add: ALL)".to_string()
                    } else if added.is_empty() {
                        "Docker's default set".to_string()
                    } else {
                        format!("Docker's default set and {}", added.join(", "))
                    };
                    self.dropped(path, format!("no key to drop capabilities; the container keeps {keeps}"))
                }
                _ => self.dropped(path, "no equivalent in provision"),
            }
        }
    }
}

/// `$` written as `$$`: the value was interpolated already, and stack.toml
/// would interpolate it again.
pub(super) fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::import::{Options, import};

    /// `yaml` imported as a project's compose.yaml (with `--grant` or not):
    /// the stack.toml services and the report's entries.
    pub fn imported(yaml: &str, grant: bool) -> (Table, Vec<Entry>) {
        try_imported(yaml, grant).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `imported`, or why the import refused it.
    pub fn try_imported(yaml: &str, grant: bool) -> Result<(Table, Vec<Entry>), String> {
        static PROJECTS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("provision-map-{}-{}", std::process::id(), PROJECTS.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
        let files = [dir.join("compose.yaml")];
        let options = Options { files: &files, env_file: None, profiles: &[], project_name: Some("t"), out_dir: &dir, grant };
        let result = import(&options);
        std::fs::remove_dir_all(&dir).unwrap();
        let imported = result?;
        let mut stack: Table = toml::from_str(&imported.toml).unwrap();
        let Some(Toml::Table(services)) = stack.remove("services") else { panic!("no services in\n{}", imported.toml) };
        Ok((services, imported.report.entries))
    }

    /// The one service of `yaml`, and what the report says of `key` under it.
    pub fn one(yaml: &str, key: &str) -> (Table, Option<(Status, String)>) {
        let (services, entries) = imported(yaml, false);
        let (name, table) = services.into_iter().next().unwrap();
        let path = format!("services.{name}.{key}");
        let entry = entries.into_iter().find(|e| e.path == path).map(|e| (e.status, e.detail));
        (table.as_table().unwrap().clone(), entry)
    }

    #[test]
    fn every_key_left_over_is_reported_with_why() {
        let yaml = "services:\n  web:\n    image: nginx\n    container_name: front\n    x-custom: 1\n    frobnicate: yes\n";
        let (_, entries) = imported(yaml, false);
        let status = |path: &str| entries.iter().find(|e| e.path == path).map(|e| e.status);
        assert_eq!(status("services.web.container_name"), Some(Status::Approximated));
        let (web, _) = one("services:\n  web: {image: nginx, container_name: front}\n", "container_name");
        assert_eq!(web["aliases"].as_array().unwrap()[0].as_str(), Some("front"));
        assert_eq!(status("services.web.frobnicate"), Some(Status::Dropped));
        assert_eq!(status("services.web.x-custom"), None, "x- keys are extensions, not settings");
        let (_, entries) = imported("services:\n  web: {image: nginx, cap_add: [ALL], cap_drop: [NET_RAW]}\n", false);
        let cap_drop = entries.iter().find(|e| e.path == "services.web.cap_drop").unwrap();
        assert!(cap_drop.detail.contains("keeps every capability (cap_add: ALL)"), "{}", cap_drop.detail);
        let (_, entries) = imported("services:\n  web: {image: nginx, init: false}\n", false);
        assert_eq!(entries.iter().find(|e| e.path == "services.web.init").map(|e| e.status), Some(Status::Approximated));
    }

    #[test]
    fn a_name_that_is_no_host_name_is_renamed_and_said_so() {
        let (services, entries) = imported("services:\n  Web_App: {image: nginx}\n", false);
        assert!(services.contains_key("web-app"), "{services:?}");
        let entry = entries.iter().find(|e| e.path == "services.Web_App").unwrap();
        assert_eq!(entry.status, Status::Approximated);
        assert!(entry.detail.contains("named `web-app`"), "{}", entry.detail);
    }
}
