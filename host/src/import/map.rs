//! From a compose service to a stack.toml service: a built-in where the
//! image is one and its config says everything (postgres, redis), else the
//! generic `container`; host-level options for what every service has. Every
//! key the compose file set is accounted for in the report: mapped,
//! approximated (how) or dropped (why).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde_yaml_ng::{Mapping, Value};
use toml::{Table, Value as Toml};

use crate::stack::Permission;

use super::{
    Entry, Status,
    load::{Compose, other_keys, scalar, sequence, strings},
};

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
}

/// Which plugin a service goes to.
enum Kind {
    /// postgres or redis: the version from the tag, the image when it is
    /// not the one the plugin picks, and the keys read from the command.
    Builtin {
        plugin: &'static str,
        version: Option<u32>,
        image: Option<String>,
        settings: Table,
    },
    Container,
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
        let mut table = Table::new();
        let mut allow = BTreeSet::new();
        let mut env = environment(svc);
        let kind = self.kind(&at, svc, &env);
        let (plugin, container) = match &kind {
            Kind::Builtin { plugin, .. } => (*plugin, false),
            Kind::Container => ("container", true),
        };
        table.insert("plugin".into(), plugin.into());
        let mut handled: BTreeSet<&str> = BTreeSet::new();
        let once = self.run_once.contains(name);

        match kind {
            Kind::Builtin { plugin, version, image, settings } => {
                handled.extend(["image", "command", "healthcheck"]);
                if let Some(v) = version {
                    table.insert("version".into(), Toml::Integer(v.into()));
                }
                if let Some(image) = image {
                    table.insert("image".into(), image.into());
                }
                self.mapped(format!("{at}.image"), format!("plugin = \"{plugin}\" (version from the tag)"));
                let (settings_keys, probe) = match plugin {
                    "postgres" => ("tuning (its -c settings)", "the PostgreSQL protocol"),
                    _ => ("maxmemory, maxmemory_policy, save, persistence", "Redis PING"),
                };
                if plugin == "postgres" {
                    handled.insert("user");
                    self.postgres(&at, svc, &mut env, &mut table);
                }
                table.extend(settings);
                if svc.contains_key("command") {
                    self.mapped(format!("{at}.command"), settings_keys);
                }
                if svc.contains_key("healthcheck") {
                    self.approximated(format!("{at}.healthcheck"), format!("the plugin's own readiness check: {probe}, probed by the host"));
                }
            }
            Kind::Container => {
                handled.extend(["image", "build", "command", "entrypoint", "working_dir", "healthcheck"]);
                self.container(&at, svc, &mut table, once)?;
            }
        }

        // Ports: the plugin's own for a built-in, `ports` for a container.
        handled.extend(["ports", "expose"]);
        self.ports(&at, svc, &mut table, container, once)?;

        // Host-level options, whatever the plugin.
        if let Some(Value::Mapping(depends)) = svc.get("depends_on") {
            handled.insert("depends_on");
            let mut after = Table::new();
            for (other, how) in depends {
                let other = other.as_str().unwrap_or_default();
                let path = format!("{at}.depends_on.{other}");
                let Some(target) = self.names.get(other) else {
                    self.dropped(path, format!("`{other}` is not a service of the imported project (not in the chosen profiles?)"));
                    continue;
                };
                let condition = how.get("condition").and_then(Value::as_str).unwrap_or("service_started");
                let wait = match condition {
                    "service_healthy" => "ready",
                    "service_completed_successfully" => "completed",
                    _ => "started",
                };
                after.insert(target.clone(), wait.into());
                if how.get("required").and_then(Value::as_bool) == Some(false) {
                    self.approximated(path, format!("after.{target} = \"{wait}\"; required: false has no equivalent, so `up` fails if it does"));
                } else {
                    self.mapped(path, format!("after.{target} = \"{wait}\""));
                }
                if how.get("restart").and_then(Value::as_bool) == Some(true) {
                    self.dropped(
                        format!("{at}.depends_on.{other}.restart"),
                        "restarting dependents is compose's; provision recreates a service when its plan changes",
                    );
                }
            }
            if !after.is_empty() {
                table.insert("after".into(), Toml::Table(after));
            }
        }
        if let Some(links) = svc.get("links") {
            handled.insert("links");
            let aliased = strings(Some(links)).iter().any(|l| l.contains(':'));
            if aliased {
                self.approximated(format!("{at}.links"), "services reach each other by service name; link aliases are not kept");
            } else {
                self.mapped(format!("{at}.links"), "nothing needed: services reach each other by name");
            }
        }
        if let Some(Value::Mapping(networks)) = svc.get("networks") {
            handled.insert("networks");
            let mut list = Vec::new();
            for (network, how) in networks {
                let network = network.as_str().unwrap_or_default();
                let path = format!("{at}.networks.{network}");
                list.push(Toml::String(network.to_string()));
                let extra = other_keys(how, &[]);
                if extra.is_empty() {
                    self.mapped(path, "networks");
                } else {
                    self.approximated(path, format!("networks; {} not kept (containers answer to the service name)", extra.join(", ")));
                }
            }
            // Only the default network: what a service without `networks` joins.
            if list != [Toml::String("default".into())] {
                table.insert("networks".into(), Toml::Array(list));
            }
        }
        if let Some(mode) = svc.get("network_mode").and_then(Value::as_str) {
            handled.insert("network_mode");
            let path = format!("{at}.network_mode");
            match mode {
                "host" if container => {
                    table.insert("network_mode".into(), "host".into());
                    allow.insert(Permission::HostNetwork);
                    self.mapped(path, format!("network_mode = \"host\", {}", self.power(Permission::HostNetwork)));
                }
                "bridge" => self.mapped(path, "the project's network"),
                other => self.dropped(path, format!("network_mode {other:?} has no equivalent; the service joins the project's network")),
            }
        }
        if let Some(restart) = svc.get("restart").and_then(scalar) {
            handled.insert("restart");
            let path = format!("{at}.restart");
            let (policy, exact) = match restart.as_str() {
                "no" | "always" | "on-failure" | "unless-stopped" => (restart.clone(), true),
                r if r.starts_with("on-failure:") => ("on-failure".to_string(), false),
                _ => (String::new(), false),
            };
            if policy.is_empty() {
                self.dropped(path, format!("{restart:?} is not a restart policy"));
            } else if !once {
                table.insert("restart".into(), policy.clone().into());
                if exact {
                    self.mapped(path, "restart");
                } else {
                    self.approximated(path, format!("restart = \"{policy}\" (no retry limit)"));
                }
            } else {
                self.approximated(path, "a service others wait to complete runs once; no restart policy");
            }
        }
        if let Some(user) = svc.get("user").and_then(scalar)
            && !handled.contains("user")
        {
            handled.insert("user");
            table.insert("user".into(), escape(&user).into());
            self.mapped(format!("{at}.user"), "user");
        }
        if let Some(read_only) = svc.get("read_only").and_then(Value::as_bool) {
            handled.insert("read_only");
            table.insert("read_only".into(), read_only.into());
            self.mapped(format!("{at}.read_only"), "read_only");
        }
        if let Some(options) = svc.get("security_opt") {
            handled.insert("security_opt");
            for (i, option) in strings(Some(options)).iter().enumerate() {
                let path = format!("{at}.security_opt.{i}");
                if matches!(option.as_str(), "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true") {
                    table.insert("no_new_privileges".into(), true.into());
                    self.mapped(path, "no_new_privileges = true");
                } else {
                    self.dropped(
                        path,
                        format!("{option:?}: provision keeps Docker's default seccomp and AppArmor profiles and has no key to loosen them"),
                    );
                }
            }
        }
        for (key, permission, what) in [
            ("privileged", Permission::Privileged, "privileged mode"),
            ("cap_add", Permission::CapAdd, "added capabilities"),
            ("devices", Permission::Devices, "host devices"),
        ] {
            let Some(value) = svc.get(key) else { continue };
            handled.insert(key);
            let path = format!("{at}.{key}");
            if value.as_bool() == Some(false) || sequence(Some(value.clone())).is_empty() && !value.is_bool() {
                self.mapped(path, "nothing (not asked)");
                continue;
            }
            if !container {
                self.dropped(path, format!("the {} plugin never asks for {what}", table["plugin"].as_str().unwrap_or_default()));
                continue;
            }
            let toml_value = match key {
                "privileged" => Toml::Boolean(true),
                _ => Toml::Array(
                    sequence(Some(value.clone()))
                        .iter()
                        .map(|d| Toml::String(scalar(d).or_else(|| d.get("source").and_then(scalar)).unwrap_or_default()))
                        .collect(),
                ),
            };
            table.insert(key.into(), toml_value);
            allow.insert(permission);
            self.mapped(path, format!("{key}, {}", self.power(permission)));
        }
        if let Some(pid) = svc.get("pid").and_then(Value::as_str) {
            handled.insert("pid");
            if pid == "host" && container {
                table.insert("pid".into(), "host".into());
                allow.insert(Permission::HostPid);
                self.mapped(format!("{at}.pid"), format!("pid = \"host\", {}", self.power(Permission::HostPid)));
            } else {
                self.dropped(format!("{at}.pid"), format!("pid {pid:?} has no equivalent"));
            }
        }

        // Environment: host-level env, after what a built-in took.
        handled.extend(["environment", "env_file"]);
        self.env_files(&at, svc, &mut env)?;
        if !env.is_empty() {
            let mut table_env = Table::new();
            for (key, value) in &env {
                // Unset (`- KEY`): from the environment or .env, as compose does.
                let value = value.clone().unwrap_or_else(|| format!("${{{key}}}"));
                table_env.insert(key.clone(), value.into());
                let path = format!("{at}.environment.{key}");
                if svc.get("environment").and_then(|e| e.get(key.as_str())).is_some() && !self.report.iter().any(|e| e.path == path) {
                    self.mapped(path, format!("env.{key}"));
                }
            }
            table.insert("env".into(), Toml::Table(table_env));
        }

        handled.extend(["volumes", "tmpfs", "secrets", "configs"]);
        let own_mounts = plugin_mounts(&table);
        self.mounts(&at, name, svc, &mut table, &mut allow, &own_mounts)?;

        // Replicas and resources: deploy first, the old keys as compose reads them.
        if let Some(Value::Mapping(deploy)) = svc.get("deploy") {
            handled.insert("deploy");
            self.deploy(&at, deploy, &mut table, once);
        }
        if let Some(scale) = svc.get("scale").and_then(Value::as_u64) {
            handled.insert("scale");
            table.insert("replicas".into(), Toml::Integer(scale as i64));
            self.mapped(format!("{at}.scale"), "replicas");
        }
        for (key, field) in [("mem_limit", "memory"), ("cpus", "cpus"), ("pids_limit", "pids")] {
            let Some(value) = svc.get(key) else { continue };
            handled.insert(key);
            let resources = table.entry("resources").or_insert_with(|| Toml::Table(Table::new()));
            if let Some(resources) = resources.as_table_mut() {
                resources.insert(field.into(), resource_value(field, value));
            }
            self.mapped(format!("{at}.{key}"), format!("resources.{field}"));
        }
        if let Some(hooks) = svc.get("post_start") {
            handled.insert("post_start");
            let mut table_hooks = Table::new();
            for (i, hook) in sequence(Some(hooks.clone())).iter().enumerate() {
                let path = format!("{at}.post_start.{i}");
                let Some(command) = hook.get("command").map(unwrap_wait) else {
                    self.dropped(path, "no command");
                    continue;
                };
                if table.get("plugin").and_then(Toml::as_str) == Some("postgres")
                    && let Some(extensions) = postgres_extensions(&strings(Some(&command)))
                {
                    if !extensions.is_empty() {
                        table.insert("extensions".into(), Toml::Array(extensions.into_iter().map(Toml::String).collect()));
                    }
                    self.mapped(path, "extensions: the postgres plugin's own hook sets the password and creates them");
                    continue;
                }
                let command = command_value(&command);
                table_hooks.insert(format!("post-start-{}", i + 1), command);
                let extra = other_keys(hook, &["command"]);
                let mut how = format!("hooks.post-start-{}: runs once the container is ready (compose runs it as soon as it starts)", i + 1);
                if !extra.is_empty() {
                    how.push_str(&format!("; {} not kept: hooks run as the container's user", extra.join(", ")));
                }
                self.approximated(path, how);
            }
            if !table_hooks.is_empty() {
                table.insert("hooks".into(), Toml::Table(table_hooks));
            }
        }
        if let Some(profiles) = svc.get("profiles") {
            handled.insert("profiles");
            let list = strings(Some(profiles));
            let how = if list.len() > 1 {
                "profiles: a stack runs one profile at a time (`--profile NAME`); the service is in each of these"
            } else {
                "profiles"
            };
            table.insert("profiles".into(), Toml::Array(list.into_iter().map(Toml::String).collect()));
            self.mapped(format!("{at}.profiles"), how);
        }

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
        Ok(StackService { name: stack_name, table, notes, asked: allow.into_iter().collect() })
    }

    /// Postgres or redis when the image is one and the built-in can say
    /// everything the service sets; else the generic container, with the
    /// reason in the report.
    fn kind(&mut self, at: &str, svc: &Mapping, env: &BTreeMap<String, Option<String>>) -> Kind {
        let Some(image) = svc.get("image").and_then(Value::as_str) else { return Kind::Container };
        if svc.contains_key("build") {
            return Kind::Container;
        }
        let (repo, tag) = split_image(image);
        let common = |svc: &Mapping| -> Option<&'static str> {
            if svc.contains_key("entrypoint") {
                return Some("it sets an entrypoint");
            }
            if svc.get("configs").is_some() {
                return Some("it mounts configs");
            }
            if svc.get("network_mode").is_some() || svc.get("privileged").and_then(Value::as_bool) == Some(true) {
                return Some("it asks for host networking or privileges");
            }
            None
        };
        let command = svc.get("command").map(argv);
        let (plugin, reason, settings) = match repo {
            "postgres" => {
                let reason = common(svc)
                    .map(str::to_string)
                    .or_else(|| {
                        env.keys()
                            .find(|k| {
                                k.ends_with("_FILE") && k.starts_with("POSTGRES_")
                                    || *k == "POSTGRES_HOST_AUTH_METHOD"
                                    || *k == "POSTGRES_INITDB_ARGS"
                            })
                            .map(|k| format!("it sets {k}, which the postgres plugin has no key for"))
                    })
                    .or_else(|| svc.get("user").and_then(scalar).filter(|u| u != "postgres").map(|u| format!("it runs as user {u:?}")));
                let settings = command.map(|argv| postgres_settings(&argv)).transpose().map(|tuning| match tuning {
                    Some(tuning) if !tuning.is_empty() => Table::from_iter([("tuning".to_string(), Toml::Table(tuning))]),
                    _ => Table::new(),
                });
                ("postgres", reason, settings)
            }
            "redis" => {
                ("redis", common(svc).map(str::to_string), command.map(|argv| redis_settings(&argv)).transpose().map(Option::unwrap_or_default))
            }
            _ => return Kind::Container,
        };
        match (reason, settings) {
            (None, Ok(settings)) => {
                let version = tag.and_then(major);
                let own = version.map(|v| format!("{plugin}:{v}-alpine"));
                let image = (own.as_deref() != Some(image)).then(|| image.to_string());
                Kind::Builtin { plugin, version, image, settings }
            }
            (Some(reason), _) | (None, Err(reason)) => {
                self.mapped(format!("{at}.image"), format!("kept as a `container` (image {image}): {reason}"));
                Kind::Container
            }
        }
    }

    /// A postgres service's database, role, password and init scripts,
    /// from the image's variables and mounts (its defaults where unset).
    fn postgres(&mut self, at: &str, svc: &Mapping, env: &mut BTreeMap<String, Option<String>>, table: &mut Table) {
        // `- POSTGRES_PASSWORD` (no value) is taken from the environment: a variable.
        let mut take = |key: &str| env.remove(key).map(|value| value.unwrap_or_else(|| format!("${{{key}}}")));
        let user = take("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
        let database = take("POSTGRES_DB").unwrap_or_else(|| user.clone());
        let password = take("POSTGRES_PASSWORD");
        table.insert("database".into(), database.into());
        table.insert("user".into(), user.into());
        for (key, to) in [("POSTGRES_USER", "user"), ("POSTGRES_DB", "database")] {
            if svc.get("environment").and_then(|e| e.get(key)).is_some() {
                self.mapped(format!("{at}.environment.{key}"), to);
            }
        }
        match password {
            Some(password) => {
                table.insert("password".into(), password.into());
                self.mapped(format!("{at}.environment.POSTGRES_PASSWORD"), "password");
            }
            None => self.approximated(
                format!("{at}.environment"),
                "no POSTGRES_PASSWORD: the plugin generates one, stable per project (`provision env` prints it)",
            ),
        }
        if svc.contains_key("user") {
            self.approximated(
                format!("{at}.user"),
                "the server runs as `postgres`, as the image's entrypoint does (the plugin's `user` is the database role)",
            );
        }
        let init = self.init_scripts(at, svc);
        if !init.is_empty() {
            table.insert("init".into(), Toml::Array(init.into_iter().map(Toml::String).collect()));
        }
    }

    /// image/build, command, entrypoint, workdir, health (a container).
    fn container(&mut self, at: &str, svc: &Mapping, table: &mut Table, once: bool) -> Result<(), String> {
        match (svc.get("image").and_then(scalar), svc.get("build")) {
            (image, Some(Value::Mapping(build))) => {
                let mut out = Table::new();
                let context = build.get("context").and_then(Value::as_str).unwrap_or(".");
                let context = self.path(context);
                out.insert("context".into(), context.strip_prefix("./").unwrap_or(&context).into());
                for key in ["dockerfile", "target"] {
                    if let Some(value) = build.get(key).and_then(scalar) {
                        out.insert(key.into(), value.into());
                    }
                }
                if let Some(Value::Mapping(args)) = build.get("args") {
                    let mut table_args = Table::new();
                    for (k, v) in args {
                        let key = k.as_str().unwrap_or_default();
                        match v.as_str() {
                            Some(v) => {
                                table_args.insert(key.into(), escape(v).into());
                            }
                            None => self.dropped(
                                format!("{at}.build.args.{key}"),
                                "a build argument without a value (taken from the environment by compose)",
                            ),
                        }
                    }
                    if !table_args.is_empty() {
                        out.insert("args".into(), Toml::Table(table_args));
                    }
                }
                for (key, _) in build {
                    let key = key.as_str().unwrap_or_default();
                    let path = format!("{at}.build.{key}");
                    match key {
                        "context" | "dockerfile" | "target" | "args" => self.mapped(path, format!("build.{key}")),
                        "dockerfile_inline" => self.dropped(path, "an inline Dockerfile: write it to a file and name it in `build.dockerfile`"),
                        _ => self.dropped(path, "provision's builds take context, dockerfile, target and args"),
                    }
                }
                table.insert("build".into(), Toml::Table(out));
                if let Some(image) = image {
                    self.approximated(
                        format!("{at}.image"),
                        format!("built, not tagged {image}: provision tags what it builds by a hash of its inputs"),
                    );
                }
            }
            (Some(image), _) => {
                table.insert("image".into(), image.into());
                self.mapped(format!("{at}.image"), "image");
            }
            (None, _) => return Err(format!("`{at}` has neither `image` nor `build`; compose needs one too")),
        }
        for key in ["entrypoint", "command"] {
            if let Some(value) = svc.get(key)
                && !value.is_null()
            {
                table.insert(key.into(), command_value(value));
                self.mapped(format!("{at}.{key}"), key);
            }
        }
        if let Some(dir) = svc.get("working_dir").and_then(scalar) {
            table.insert("workdir".into(), escape(&dir).into());
            self.mapped(format!("{at}.working_dir"), "workdir");
        }
        if let Some(healthcheck @ Value::Mapping(check)) = svc.get("healthcheck") {
            let path = format!("{at}.healthcheck");
            let test = check.get("test").cloned().unwrap_or(Value::Null);
            let disabled = check.get("disable").and_then(Value::as_bool) == Some(true) || strings(Some(&test)).first().is_some_and(|t| t == "NONE");
            if disabled {
                self.mapped(path, "no health check");
            } else if once {
                self.approximated(path, "a service others wait to complete has no health check: it exits");
            } else {
                let exec = match &test {
                    Value::String(line) => Toml::String(escape(line)),
                    Value::Sequence(_) => {
                        let words = strings(Some(&test));
                        match words.split_first() {
                            Some((kind, rest)) if kind == "CMD-SHELL" => Toml::String(escape(&rest.join(" "))),
                            Some((kind, rest)) if kind == "CMD" => Toml::Array(rest.iter().map(|w| Toml::String(escape(w))).collect()),
                            _ => Toml::Array(words.iter().map(|w| Toml::String(escape(w))).collect()),
                        }
                    }
                    _ => return Err(format!("`{path}.test` is neither a string nor a list")),
                };
                let mut health = Table::new();
                let argv = strings(Some(&test));
                match argv.split_first().and_then(|(kind, rest)| if kind == "CMD" { host_probe(rest) } else { None }) {
                    Some((kind, value, port)) => {
                        health.insert(kind.into(), value);
                        if let Some(port) = port {
                            health.insert("port".into(), Toml::Integer(port.into()));
                        }
                    }
                    None => {
                        health.insert("exec".into(), exec);
                    }
                }
                for key in ["interval", "timeout", "start_period", "retries"] {
                    if let Some(value) = check.get(key) {
                        let value = match key {
                            "retries" => Toml::Integer(value.as_i64().unwrap_or(3)),
                            _ => Toml::String(scalar(value).unwrap_or_default()),
                        };
                        health.insert(key.into(), value);
                    }
                }
                let extra = other_keys(healthcheck, &["test", "interval", "timeout", "start_period", "retries"]);
                let how = match health.keys().next().map(String::as_str) {
                    Some("exec") | None => "health.exec, run in the container as compose runs it".to_string(),
                    Some(kind) => format!("health.{kind}: the command provision runs for this probe, which it makes from the host"),
                };
                table.insert("health".into(), Toml::Table(health));
                if extra.is_empty() {
                    self.mapped(path, how);
                } else {
                    self.approximated(path, format!("{how}; {} not kept", extra.join(", ")));
                }
            }
        }
        if once {
            table.insert("once".into(), true.into());
        }
        Ok(())
    }

    fn ports(&mut self, at: &str, svc: &Mapping, table: &mut Table, container: bool, once: bool) -> Result<(), String> {
        let mut specs: Vec<(String, Toml)> = Vec::new();
        let mut published = BTreeMap::new();
        for (i, port) in sequence(svc.get("ports").cloned()).iter().enumerate() {
            let path = format!("{at}.ports.{i}");
            let Some(ports) = parse_ports(port) else {
                self.dropped(path, format!("{:?}: a port form provision does not take; list the ports one by one", scalar(port).unwrap_or_default()));
                continue;
            };
            if once {
                self.dropped(path, "a service others wait to complete listens on nothing");
                continue;
            }
            let mut how = match (&ports[0].host_ip, ports[0].host) {
                (Some(ip), _) if ip == "127.0.0.1" => None,
                (_, None) => Some("published on any free port of 127.0.0.1 (compose: of every interface)".to_string()),
                _ => Some("published on 127.0.0.1 only (compose: every interface); reach it from another machine through a proxy".to_string()),
            };
            for parsed in &ports {
                let text = format!("{}:{}", parsed.host.unwrap_or(0), parsed.container);
                let text = if parsed.udp { format!("{text}/udp") } else { text };
                published.insert(parsed.container, parsed.host.unwrap_or(0));
                specs.push((text, Toml::Integer(parsed.container.into())));
            }
            let target = if container { "ports" } else { "port (the plugin publishes it)" };
            if ports.len() > 1 {
                how = Some(format!("{}: the range as {} ports", how.as_deref().unwrap_or(target), ports.len()));
            }
            match how {
                None => self.mapped(path, target),
                Some(how) => self.approximated(path, how),
            }
        }
        let mut exposed = Vec::new();
        for (i, port) in sequence(svc.get("expose").cloned()).iter().enumerate() {
            let path = format!("{at}.expose.{i}");
            match scalar(port).and_then(|p| p.split('/').next().and_then(|p| p.parse::<u16>().ok())) {
                Some(p) if container && !once && !published.contains_key(&p) => {
                    exposed.push(p);
                    self.mapped(path, "ports (on the project network only)");
                }
                Some(_) => self.mapped(path, "nothing needed: containers reach each other's ports on the project network"),
                None => self.dropped(path, "not a port number"),
            }
        }
        if container {
            // Published, so something connects to it: `up` waits until it can.
            let first_tcp = specs.iter().find(|(text, _)| !text.ends_with("/udp")).map(|(_, port)| port.clone());
            if let Some(port) = first_tcp.filter(|_| !table.contains_key("health") && !svc.contains_key("healthcheck")) {
                let mut health = Table::new();
                health.insert("tcp".into(), port.clone());
                table.insert("health".into(), Toml::Table(health));
                self.approximated(
                    format!("{at}.ports"),
                    format!("`up` also waits until port {port} accepts connections (health = {{ tcp = {port} }}); compose waits only for the container to run"),
                );
            }
            let mut list: Vec<Toml> = specs.into_iter().map(|(text, _)| Toml::String(text)).collect();
            list.extend(exposed.into_iter().map(|p| Toml::Integer(p.into())));
            if !list.is_empty() {
                table.insert("ports".into(), Toml::Array(list));
            }
        } else {
            // A built-in publishes its own port in dev; say where, or that it is not.
            let own = if table["plugin"].as_str() == Some("postgres") { 5432 } else { 6379 };
            match published.get(&own) {
                Some(host) => {
                    table.insert("port".into(), Toml::Integer((*host).into()));
                }
                None => {
                    table.insert("publish".into(), false.into());
                }
            }
        }
        Ok(())
    }

    fn init_scripts(&mut self, at: &str, svc: &Mapping) -> Vec<String> {
        let mut init = Vec::new();
        for (i, volume) in sequence(svc.get("volumes").cloned()).iter().enumerate() {
            let (Some(source), Some(target)) = (volume.get("source").and_then(Value::as_str), volume.get("target").and_then(Value::as_str)) else {
                continue;
            };
            if volume.get("type").and_then(Value::as_str) != Some("bind") || !target.starts_with("/docker-entrypoint-initdb.d") {
                continue;
            }
            let path = format!("{at}.volumes.{i}");
            let source_path = PathBuf::from(source);
            if source_path.is_dir() {
                let mut files: Vec<PathBuf> =
                    std::fs::read_dir(&source_path).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
                files.retain(|f| f.extension().is_some_and(|e| e == "sql" || e == "sh" || e == "gz"));
                files.sort();
                init.extend(files.iter().map(|f| self.path(&f.display().to_string()).trim_start_matches("./").to_string()));
                self.approximated(path, "init: the folder's scripts as they are now (a script added later needs a new import)");
            } else {
                init.push(self.path(source).trim_start_matches("./").to_string());
                self.mapped(path, "init");
            }
        }
        init
    }

    fn env_files(&mut self, at: &str, svc: &Mapping, env: &mut BTreeMap<String, Option<String>>) -> Result<(), String> {
        for (i, file) in sequence(svc.get("env_file").cloned()).iter().enumerate() {
            let path = format!("{at}.env_file.{i}");
            let source = file.get("path").and_then(Value::as_str).unwrap_or_default();
            let required = file.get("required").and_then(Value::as_bool).unwrap_or(true);
            // Its values are copied into stack.toml: only a file of the
            // project's is (`/proc/self/environ` would copy CI's tokens).
            if let Ok(real) = Path::new(source).canonicalize()
                && !real.starts_with(&self.compose.dir)
            {
                return Err(format!(
                    "`{path}`: {source} is outside the project folder {}; import copies no file from outside it into stack.toml. \
                     Copy it into the project (or put its variables in .env beside stack.toml) and import again",
                    self.compose.dir.display()
                ));
            }
            let text = match provision_registry::files::read_regular_text(Path::new(source), provision_registry::files::MAX_TEXT_BYTES) {
                Ok(text) => text,
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    self.mapped(path, "nothing (an optional file that is not there)");
                    continue;
                }
                Err(e) => return Err(format!("`{path}`: cannot read {source}: {e}")),
            };
            let vars = crate::stack::interpolate::parse_dotenv(&text).map_err(|e| format!("`{path}`: {source}: {e}"))?;
            // The .env beside stack.toml is read when the stack runs: refer to it.
            let beside = Path::new(source) == self.out_dir.join(".env");
            let mut keys: Vec<_> = vars.into_iter().collect();
            keys.sort();
            for (key, value) in keys {
                let value = if beside { format!("${{{key}}}") } else { escape(&value) };
                env.entry(key).or_insert(Some(value));
            }
            if beside {
                self.mapped(path, "env, each variable as ${NAME}: read from .env beside stack.toml when the stack runs");
            } else {
                self.approximated(
                    path,
                    format!(
                        "env: the values in {} copied in (stack.toml has no env_file; keep secrets in .env and write ${{NAME}})",
                        self.path(source)
                    ),
                );
            }
        }
        Ok(())
    }

    /// volumes, tmpfs, secrets and file configs as host-level mounts;
    /// inline configs as the container's files.
    fn mounts(
        &mut self,
        at: &str,
        name: &str,
        svc: &Mapping,
        table: &mut Table,
        allow: &mut BTreeSet<Permission>,
        plugin_mounts: &[&str],
    ) -> Result<(), String> {
        let mut volumes: Vec<String> = Vec::new();
        let mut tmpfs: Vec<String> = Vec::new();
        let postgres = table.get("plugin").and_then(Toml::as_str) == Some("postgres");
        for (i, volume) in sequence(svc.get("volumes").cloned()).iter().enumerate() {
            let path = format!("{at}.volumes.{i}");
            let kind = volume.get("type").and_then(Value::as_str).unwrap_or("volume");
            let target = volume.get("target").and_then(Value::as_str).unwrap_or_default();
            let ro = if volume.get("read_only").and_then(Value::as_bool) == Some(true) { ":ro" } else { "" };
            let source = volume.get("source").and_then(Value::as_str);
            if postgres && kind == "bind" && target.starts_with("/docker-entrypoint-initdb.d") {
                continue; // init, above
            }
            let mut extra: Vec<String> = other_keys(volume, &["type", "source", "target", "read_only"])
                .into_iter()
                .map(|k| match volume.get("mode").and_then(Value::as_str) {
                    // The short form's options other than ro/rw (":z", ":cached").
                    Some(mode) if k == "mode" => format!("option {mode:?}"),
                    _ => k,
                })
                .collect();
            match (kind, source) {
                ("bind", Some(source)) => {
                    let engine_socket = Path::new(source).file_name().is_some_and(|n| n == "docker.sock" || n == "podman.sock");
                    volumes.push(format!("{}:{target}{ro}", self.path(source)));
                    let outside = !self.inside(source) && !source.starts_with('~');
                    if outside {
                        allow.insert(Permission::BindOutsideProject);
                    }
                    let mut detail = "volumes".to_string();
                    if engine_socket {
                        allow.insert(Permission::DockerSocket);
                        detail.push_str(&format!(", {} (the container controls the engine)", self.power(Permission::DockerSocket)));
                    } else if outside {
                        detail.push_str(&format!(", {}", self.power(Permission::BindOutsideProject)));
                    }
                    let mut notes = Vec::new();
                    if !Path::new(source).exists() && !source.starts_with('~') {
                        notes.push(format!(
                            "{} does not exist yet: create it before `provision up` (compose would create an empty folder)",
                            self.path(source)
                        ));
                    }
                    if !extra.is_empty() {
                        notes.push(format!("{} not kept", extra.join(", ")));
                    }
                    if notes.is_empty() {
                        self.mapped(path, detail);
                    } else {
                        self.approximated(path, format!("{detail}; {}", notes.join("; ")));
                    }
                }
                ("volume", None) => {
                    volumes.push(target.to_string());
                    self.mapped(path, "volumes (anonymous)");
                }
                ("volume", Some(source)) => {
                    let users = self.volume_users.get(source).cloned().unwrap_or_default();
                    // A volume several services mount is the first one's (one in every
                    // profile, if any is), the others mount it as OWNER/VOLUME.
                    let owner = users
                        .iter()
                        .find(|u| self.compose.services.get(u.as_str()).is_some_and(|s| s.get("profiles").is_none()))
                        .or(users.first())
                        .cloned()
                        .unwrap_or_else(|| name.to_string());
                    // provision names volumes by service already: `db_data` of `db` is its `data`.
                    let unprefixed = [format!("{owner}_"), format!("{owner}-")].iter().find_map(|p| source.strip_prefix(p.as_str()));
                    let volume_name = volume_name(unprefixed.unwrap_or(source));
                    if owner == name {
                        volumes.push(format!("{volume_name}:{target}{ro}"));
                    } else {
                        volumes.push(format!("{}/{volume_name}:{target}{ro}", self.names[&owner]));
                    }
                    let declared = self.compose.volumes.get(source).and_then(Value::as_mapping).cloned().unwrap_or_default();
                    if declared.get("external").and_then(Value::as_bool) == Some(true) || declared.get("name").is_some() {
                        extra.push(format!("the volume's own name (provision names it PROJECT_{}_{volume_name})", self.names[&owner]));
                    }
                    if users.len() > 1 && extra.is_empty() {
                        let how = if owner == name {
                            format!(
                                "volumes; shared with {}, which mount it as `{}/{volume_name}`",
                                users.iter().filter(|u| **u != owner).cloned().collect::<Vec<_>>().join(", "),
                                self.names[&owner]
                            )
                        } else {
                            format!("volumes: `{}/{volume_name}`, service {owner}'s volume, shared as compose shares it", self.names[&owner])
                        };
                        self.mapped(path, how);
                    } else if plugin_mounts.contains(&target) {
                        self.mapped(path, "volumes (in place of the plugin's own data volume)");
                    } else if extra.is_empty() && (volume_name == source || unprefixed.is_some()) {
                        self.mapped(
                            path,
                            if unprefixed.is_some() { format!("volumes: `{volume_name}` of service {name}") } else { "volumes".into() },
                        );
                    } else {
                        let mut how = vec![];
                        if volume_name != source && unprefixed.is_none() {
                            how.push(format!("named `{volume_name}`"));
                        }
                        how.extend(
                            extra.iter().map(|e| if e.contains(' ') { format!("{e} not kept") } else { format!("its `{e}` options not kept") }),
                        );
                        self.approximated(path, format!("volumes; {}", how.join("; ")));
                    }
                }
                ("tmpfs", _) => {
                    tmpfs.push(target.to_string());
                    extra.retain(|k| k != "tmpfs");
                    if volume.get("tmpfs").is_some() {
                        self.approximated(path, "tmpfs (its size and mode are Docker's defaults)");
                    } else {
                        self.mapped(path, "tmpfs");
                    }
                }
                (other, _) => self.dropped(path, format!("a {other} mount has no equivalent")),
            }
        }
        for (i, entry) in strings(svc.get("tmpfs")).iter().enumerate() {
            let path = format!("{at}.tmpfs.{i}");
            let (target, options) = entry.split_once(':').unwrap_or((entry, ""));
            tmpfs.push(target.to_string());
            if options.is_empty() {
                self.mapped(path, "tmpfs");
            } else {
                self.approximated(path, format!("tmpfs; options {options:?} not kept"));
            }
        }
        // Secrets and file configs are bind mounts in compose too.
        let mut files = Table::new();
        for (kind, default_dir) in [("secrets", "/run/secrets/"), ("configs", "/")] {
            for (i, entry) in sequence(svc.get(kind).cloned()).iter().enumerate() {
                let path = format!("{at}.{kind}.{i}");
                let source = scalar(entry).or_else(|| entry.get("source").and_then(scalar)).unwrap_or_default();
                let target = entry.get("target").and_then(scalar).unwrap_or_else(|| source.clone());
                let target = if target.starts_with('/') { target } else { format!("{default_dir}{target}") };
                let top = if kind == "secrets" { &self.compose.secrets } else { &self.compose.configs };
                let declared = top.get(source.as_str()).cloned().unwrap_or(Value::Null);
                if let Some(file) = declared.get("file").and_then(Value::as_str) {
                    volumes.push(format!("{}:{target}:ro", self.path(file)));
                    if !self.inside(file) {
                        allow.insert(Permission::BindOutsideProject);
                    }
                    let extra = ["uid", "gid", "mode"].iter().any(|k| entry.get(*k).is_some());
                    if extra {
                        self.approximated(path, format!("volumes: {} bound read-only at {target}; uid, gid and mode not kept", self.path(file)));
                    } else {
                        self.mapped(path, format!("volumes: bound read-only at {target}, as compose does"));
                    }
                } else if let Some(content) = declared.get("content").and_then(Value::as_str)
                    && table.get("plugin").and_then(Toml::as_str) == Some("container")
                {
                    files.insert(target.clone(), escape(content).into());
                    self.mapped(path, format!("files.\"{target}\""));
                } else {
                    self.dropped(path, format!("{kind} `{source}` is not a file the project holds (external, from the environment, or undeclared)"));
                }
            }
        }
        if !files.is_empty() {
            table.insert("files".into(), Toml::Table(files));
        }
        if !volumes.is_empty() {
            table.insert("volumes".into(), Toml::Array(volumes.into_iter().map(Toml::String).collect()));
        }
        if !tmpfs.is_empty() {
            table.insert("tmpfs".into(), Toml::Array(tmpfs.into_iter().map(Toml::String).collect()));
        }
        Ok(())
    }

    fn deploy(&mut self, at: &str, deploy: &Mapping, table: &mut Table, once: bool) {
        for (key, value) in deploy {
            let key = key.as_str().unwrap_or_default();
            let path = format!("{at}.deploy.{key}");
            match key {
                "replicas" => {
                    let n = value.as_i64().or_else(|| scalar(value).and_then(|s| s.parse().ok())).unwrap_or(1);
                    table.insert("replicas".into(), Toml::Integer(n));
                    self.mapped(path, "replicas");
                }
                "resources" => {
                    let mut resources = Table::new();
                    for (part, limits) in value.as_mapping().into_iter().flatten() {
                        let part = part.as_str().unwrap_or_default();
                        for (field, limit) in limits.as_mapping().into_iter().flatten() {
                            let field = field.as_str().unwrap_or_default();
                            let path = format!("{path}.{part}.{field}");
                            match (part, field) {
                                ("limits", "cpus" | "memory" | "pids") => {
                                    resources.insert(field.into(), resource_value(field, limit));
                                    self.mapped(path, format!("resources.{field}"));
                                }
                                ("reservations", _) => self.dropped(path, "provision sets limits; it reserves nothing"),
                                _ => self.dropped(path, "no equivalent (devices and generic resources are not passed)"),
                            }
                        }
                    }
                    if !resources.is_empty() {
                        table.insert("resources".into(), Toml::Table(resources));
                    }
                }
                "restart_policy" if !table.contains_key("restart") && !once => {
                    let condition = value.get("condition").and_then(Value::as_str).unwrap_or("any");
                    let policy = match condition {
                        "none" => "no",
                        "on-failure" => "on-failure",
                        _ => "always",
                    };
                    table.insert("restart".into(), policy.into());
                    self.approximated(path, format!("restart = \"{policy}\" (delay, attempts and window are Swarm's)"));
                }
                "restart_policy" => self.mapped(path, "restart (from the service's own `restart`)"),
                _ => self.dropped(path, "a Swarm setting; one engine has no placement, update or rollback"),
            }
        }
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
                "container_name" => self.approximated(path, "containers are named PROJECT_SERVICE_CONTAINER and answer to the service's name"),
                "init" => self.mapped(path, "nothing needed: every container runs with an init"),
                "stop_grace_period" => self.approximated(path, "containers get 3 s to stop (then are killed)"),
                "pull_policy" => self.approximated(path, "images are pulled when missing (`provision up` pulls them first)"),
                "labels" => self.dropped(path, "provision labels containers itself (dev.provision.*)"),
                "logging" => self.dropped(path, "the engine's default log driver is used (`provision logs` reads it)"),
                "tty" | "stdin_open" => self.dropped(path, "services run detached; `provision exec -t` and `provision run SERVICE` give a terminal"),
                "hostname" | "domainname" => self.dropped(path, "containers answer to the service's name"),
                "healthcheck" | "image" | "build" | "command" | "entrypoint" | "working_dir" => {}
                "develop" => self.dropped(path, "file watching is compose's; in dev, mount the code (volumes) instead"),
                "pre_stop" => self.dropped(path, "no stop hooks: containers get 3 s to stop"),
                "cap_drop" => self.dropped(path, "no key to drop capabilities; the container keeps Docker's default set"),
                _ => self.dropped(path, "no equivalent in provision"),
            }
        }
    }
}

/// The compose service's environment, values as written (variables
/// unexpanded); None: unset, taken from the environment.
fn environment(svc: &Mapping) -> BTreeMap<String, Option<String>> {
    let mut env = BTreeMap::new();
    if let Some(Value::Mapping(map)) = svc.get("environment") {
        for (key, value) in map {
            env.insert(key.as_str().unwrap_or_default().to_string(), value.as_str().map(str::to_string));
        }
    }
    env
}

/// The paths a built-in mounts its data at (a compose volume there takes
/// its place).
fn plugin_mounts(table: &Table) -> Vec<&'static str> {
    match table.get("plugin").and_then(Toml::as_str) {
        Some("postgres") => vec!["/var/lib/postgresql/data"],
        Some("redis") => vec!["/data"],
        _ => vec![],
    }
}

/// `$` written as `$$`: the value was interpolated already, and stack.toml
/// would interpolate it again.
pub(super) fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// A command as the container plugin takes it: a list as it is, a string
/// as it is (split as a shell would, without a shell, as compose does).
fn command_value(value: &Value) -> Toml {
    match value {
        Value::Sequence(items) => Toml::Array(items.iter().map(|w| Toml::String(escape(&scalar(w).unwrap_or_default()))).collect()),
        other => Toml::String(escape(&scalar(other).unwrap_or_default())),
    }
}

/// The probe a health check runs, when it is exactly the command
/// provision runs in a container for a probe it makes from the host (what
/// `provision export` writes): (key, value, http port).
fn host_probe(argv: &[String]) -> Option<(&'static str, Toml, Option<u16>)> {
    use crate::desired::Probe;
    let ports = argv.iter().flat_map(|a| a.split(|c: char| !c.is_ascii_digit())).filter_map(|n| n.parse::<u16>().ok());
    for port in ports {
        let path = argv.last().cloned().unwrap_or_default();
        let candidates = [
            (Probe::Postgres(port), "postgres", Toml::Integer(port.into()), None),
            (Probe::Redis(port), "redis", Toml::Integer(port.into()), None),
            (Probe::Tcp(port), "tcp", Toml::Integer(port.into()), None),
            (Probe::Http { port, path: path.clone() }, "http", Toml::String(path), Some(port)),
        ];
        for (probe, key, value, http_port) in candidates {
            if probe.in_container() == argv {
                return Some((key, value, http_port));
            }
        }
    }
    None
}

/// A `post_start` command that waits for the container's health check and
/// then runs the hook (what `provision export` writes), as the hook alone:
/// provision runs hooks once the container is ready.
fn unwrap_wait(command: &Value) -> Value {
    let words = strings(Some(command));
    match words.as_slice() {
        [sh, c, script, name, hook @ ..]
            if sh == "sh"
                && c == "-c"
                && name == "sh"
                && !hook.is_empty()
                && script.starts_with("i=0; until ")
                && script.ends_with("exec \"$@\"") =>
        {
            Value::Sequence(hook.iter().map(|w| Value::String(w.clone())).collect())
        }
        _ => command.clone(),
    }
}

/// The extensions of a hook that is the postgres plugin's own (a psql
/// session setting the role's password and creating extensions), else None.
fn postgres_extensions(words: &[String]) -> Option<Vec<String>> {
    let [sh, c, script, sql] = words else { return None };
    if sh != "sh" || c != "-c" || !script.contains("| psql ") || !script.contains("-v password=") {
        return None;
    }
    let mut extensions = Vec::new();
    for line in sql.lines() {
        if line.starts_with("ALTER ROLE ") && line.ends_with(" PASSWORD :'password';") {
            continue;
        }
        let name = line.strip_prefix("CREATE EXTENSION IF NOT EXISTS \"")?.strip_suffix("\";")?;
        extensions.push(name.to_string());
    }
    Some(extensions)
}

/// A command's words, for reading a server's settings from it: list items
/// split too, as `redis-server` and `postgres` read "--save 60 1" as one
/// setting either way.
fn argv(value: &Value) -> Vec<String> {
    let items = match value {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect::<Vec<_>>(),
    };
    items.iter().flat_map(|item| item.split_whitespace().map(|w| w.trim_matches(['"', '\'']).to_string())).collect()
}

/// `postgres -c a=b -c c=d` → { a = "b", c = "d" }.
fn postgres_settings(argv: &[String]) -> Result<Table, String> {
    let mut words = argv.iter().map(String::as_str).peekable();
    if words.peek() == Some(&"postgres") {
        words.next();
    }
    let mut tuning = Table::new();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next().ok_or("its command ends in -c")?,
            w if w.starts_with("-c") => &w[2..],
            w if w.starts_with("--") && w.contains('=') => &w[2..],
            other => return Err(format!("its command has {other:?}, which the postgres plugin has no key for")),
        };
        let (k, v) = setting.split_once('=').ok_or_else(|| format!("-c {setting:?} is not name=value"))?;
        // Numbers as numbers: the plugin types some settings (max_connections).
        let value = match v.parse::<i64>() {
            Ok(n) => Toml::Integer(n),
            Err(_) => Toml::String(escape(v)),
        };
        tuning.insert(k.to_string(), value);
    }
    Ok(tuning)
}

/// `redis-server --maxmemory 256mb --save 60 1 --appendonly yes` → the
/// redis plugin's keys.
fn redis_settings(argv: &[String]) -> Result<Table, String> {
    let mut words = argv.iter().map(String::as_str).peekable();
    if words.peek() == Some(&"redis-server") {
        words.next();
    }
    let mut config = Table::new();
    let mut saves = Vec::new();
    while let Some(flag) = words.next() {
        let mut values = Vec::new();
        while let Some(v) = words.peek().filter(|w| !w.starts_with("--")) {
            values.push(*v);
            words.next();
        }
        match (flag, values.as_slice()) {
            ("--maxmemory", [v]) => {
                config.insert("maxmemory".into(), (*v).into());
            }
            ("--maxmemory-policy", [v]) => {
                config.insert("maxmemory_policy".into(), (*v).into());
            }
            ("--save", []) | ("--save", [""]) => {
                config.insert("persistence".into(), "none".into());
            }
            ("--save", rules) if rules.len() % 2 == 0 => saves.extend(rules.chunks(2).map(|c| format!("{} {}", c[0], c[1]))),
            ("--appendonly", ["yes"]) => {
                config.insert("persistence".into(), "aof".into());
            }
            ("--appendonly", ["no"]) => {}
            (flag, _) => return Err(format!("its command sets {flag}, which the redis plugin has no key for")),
        }
    }
    if !saves.is_empty() {
        config.insert("save".into(), Toml::Array(saves.into_iter().map(Toml::String).collect()));
    }
    Ok(config)
}

fn resource_value(field: &str, value: &Value) -> Toml {
    let text = scalar(value).unwrap_or_default();
    match field {
        "cpus" => Toml::Float(text.parse().unwrap_or(1.0)),
        "pids" => Toml::Integer(text.parse().unwrap_or(0)),
        _ => Toml::String(memory(&text).unwrap_or(text)),
    }
}

/// Compose's sizes ("1.3GB", "512M", "268435456") as stack.toml's ("1331m").
fn memory(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let number: f64 = lower[..split].parse().ok()?;
    let scale = match &lower[split..] {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    Some(if bytes % (1024.0 * 1024.0) == 0.0 { format!("{}m", bytes as u64 >> 20) } else { format!("{}k", (bytes / 1024.0).round() as u64) })
}

/// A volume name as provision takes it: [a-z0-9_-].
fn volume_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// "docker.io/library/postgres:16-alpine" → ("postgres", Some("16-alpine")).
fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    let (repo, tag) = match image.rfind(':').filter(|i| !image[*i..].contains('/')) {
        Some(i) => (&image[..i], Some(&image[i + 1..])),
        None => (image, None),
    };
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    (repo.strip_prefix("library/").unwrap_or(repo), tag)
}

/// "16-alpine", "15.4", "13" → the major version.
fn major(tag: &str) -> Option<u32> {
    tag.split(['.', '-']).next()?.parse().ok()
}

struct ParsedPort {
    container: u16,
    host: Option<u16>,
    host_ip: Option<String>,
    udp: bool,
}

/// "80", "8080:80", "127.0.0.1:8080:80", "53:53/udp", "3000-3002:3000-3002"
/// (one per port of the range), or the long form.
fn parse_ports(port: &Value) -> Option<Vec<ParsedPort>> {
    if let Value::Mapping(long) = port {
        let container = long.get("target").and_then(scalar)?.parse().ok()?;
        let host = match long.get("published").and_then(scalar) {
            None => None,
            Some(p) => Some(p.parse().ok()?),
        };
        let host_ip = long.get("host_ip").and_then(scalar);
        let udp = long.get("protocol").and_then(Value::as_str) == Some("udp");
        return Some(vec![ParsedPort { container, host, host_ip, udp }]);
    }
    let text = scalar(port)?;
    let (text, udp) = match text.rsplit_once('/') {
        Some((t, "udp")) => (t.to_string(), true),
        Some((t, _)) => (t.to_string(), false),
        None => (text, false),
    };
    let parts: Vec<&str> = text.rsplitn(3, ':').collect();
    let (container, host, host_ip) = match parts[..] {
        [c] => (c, None, None),
        [c, h] => (c, Some(h).filter(|h| !h.is_empty()), None),
        [c, h, ip] => (c, Some(h).filter(|h| !h.is_empty()), Some(ip.trim_matches(['[', ']']).to_string())),
        _ => return None,
    };
    let range = |text: &str| -> Option<(u16, u16)> {
        match text.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)).filter(|(a, b)| a <= b),
            None => text.parse().ok().map(|p| (p, p)),
        }
    };
    let (first, last) = range(container)?;
    let hosts = match host {
        None => None,
        Some(h) => Some(range(h)?),
    };
    // A host range of another length than the container's: compose picks one of it; we cannot.
    if hosts.is_some_and(|(a, b)| b - a != last - first) {
        return None;
    }
    Some((first..=last).map(|c| ParsedPort { container: c, host: hosts.map(|(a, _)| a + (c - first)), host_ip: host_ip.clone(), udp }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_commands() {
        assert_eq!(split_image("docker.io/library/postgres:16-alpine"), ("postgres", Some("16-alpine")));
        assert_eq!(split_image("localhost:5000/redis"), ("localhost:5000/redis", None));
        assert_eq!(major("15.4"), Some(15));
        assert_eq!(major("latest"), None);
        let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let tuning = postgres_settings(&words("postgres -c shared_buffers=256MB -c max_connections=200")).unwrap();
        assert_eq!(tuning["max_connections"].as_integer(), Some(200));
        assert!(postgres_settings(&words("postgres -N 10")).is_err());
        let redis = redis_settings(&words("redis-server --save 60 1 --save 300 10 --maxmemory 256mb --appendonly yes")).unwrap();
        assert_eq!(redis["save"].as_array().unwrap().len(), 2);
        assert_eq!(redis["persistence"].as_str(), Some("aof"));
        assert!(redis_settings(&words("redis-server --requirepass x")).unwrap_err().contains("--requirepass"));
        let listed = argv(&serde_yaml_ng::from_str("['redis-server', '--save 900 1', '--save 60 10000']").unwrap());
        assert_eq!(redis_settings(&listed).unwrap()["save"].as_array().unwrap().len(), 2);
        assert_eq!(memory("1.3GB").as_deref(), Some("1363149k"));
        assert_eq!(memory("512M").as_deref(), Some("512m"));
    }

    #[test]
    fn ports() {
        let p = |s: &str| parse_ports(&Value::from(s)).map(|p| (p[0].container, p[0].host, p[0].host_ip.clone(), p[0].udp));
        assert_eq!(p("80"), Some((80, None, None, false)));
        assert_eq!(p("8080:80"), Some((80, Some(8080), None, false)));
        assert_eq!(p("127.0.0.1:5433:5432"), Some((5432, Some(5433), Some("127.0.0.1".into()), false)));
        assert_eq!(p("53:53/udp"), Some((53, Some(53), None, true)));
        let range = parse_ports(&Value::from("8000-8002:3000-3002")).unwrap();
        assert_eq!(range.iter().map(|p| (p.host, p.container)).collect::<Vec<_>>(), [(Some(8000), 3000), (Some(8001), 3001), (Some(8002), 3002)]);
        assert!(parse_ports(&Value::from("3000-3005:3000-3002")).is_none());
    }
}
