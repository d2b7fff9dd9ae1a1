//! The generic container's own keys: image or build, command, entrypoint,
//! working_dir and healthcheck (a probe `provision export` wrote read back as
//! that probe), and post_start hooks.

use std::path::Path;

use serde_yaml_ng::Value;
use toml::{Table, Value as Toml};

use super::{Draft, Mapper, builtin::postgres_extensions, escape};
use crate::import::load::{other_keys, scalar, sequence, strings};

impl Mapper<'_> {
    /// image/build, command, entrypoint, workdir, health (a container).
    pub(super) fn container(&mut self, d: &mut Draft) -> Result<(), String> {
        let (at, svc, once) = (d.at.clone(), d.svc, d.once);
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
                        "dockerfile_inline" => {
                            // stack.toml names files: the text becomes one, in the context.
                            let text = build.get(key).and_then(Value::as_str).unwrap_or_default();
                            let name = format!("{}.Dockerfile", self.names.get(d.name).map_or(d.name, String::as_str));
                            let file = Path::new(build.get("context").and_then(Value::as_str).unwrap_or(".")).join(&name);
                            self.files.push((file.clone(), text.to_string()));
                            out.insert("dockerfile".into(), name.clone().into());
                            self.mapped(
                                path,
                                format!(
                                    "build.dockerfile = \"{name}\", written beside the context's files as {}",
                                    self.path(&file.display().to_string())
                                ),
                            );
                        }
                        _ => self.dropped(path, "provision's builds take context, dockerfile, target and args"),
                    }
                }
                d.table.insert("build".into(), Toml::Table(out));
                if let Some(image) = image {
                    self.approximated(
                        format!("{at}.image"),
                        format!("built, not tagged {image}: provision tags what it builds by a hash of its inputs"),
                    );
                }
            }
            (Some(image), _) => {
                d.table.insert("image".into(), image.into());
                self.mapped(format!("{at}.image"), "image");
            }
            (None, _) => return Err(format!("`{at}` has neither `image` nor `build`; compose needs one too")),
        }
        for key in ["entrypoint", "command"] {
            if let Some(value) = svc.get(key)
                && !value.is_null()
            {
                // Kept as written by the loader: `${VAR}` is read when the stack runs.
                d.table.insert(key.into(), command_value(value, false));
                self.mapped(format!("{at}.{key}"), key);
            }
        }
        if let Some(dir) = svc.get("working_dir").and_then(scalar) {
            d.table.insert("workdir".into(), escape(&dir).into());
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
                // The test keeps its variables (the loader left them).
                let exec = match &test {
                    Value::String(line) => Toml::String(line.clone()),
                    Value::Sequence(_) => {
                        let words = strings(Some(&test));
                        match words.split_first() {
                            Some((kind, rest)) if kind == "CMD-SHELL" => Toml::String(rest.join(" ")),
                            Some((kind, rest)) if kind == "CMD" => Toml::Array(rest.iter().cloned().map(Toml::String).collect()),
                            _ => Toml::Array(words.into_iter().map(Toml::String).collect()),
                        }
                    }
                    _ => return Err(format!("`{path}.test` is neither a string nor a list")),
                };
                let mut health = Table::new();
                // As compose runs it (`$$` is one `$`): the form export writes.
                let argv: Vec<String> = strings(Some(&test)).iter().map(|w| w.replace("$$", "$")).collect();
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
                let how = match health.keys().next().map(String::as_str) {
                    Some("exec") | None => "health.exec, run in the container as compose runs it".to_string(),
                    Some(kind) => format!("health.{kind}: the command provision runs for this probe, which it makes from the host"),
                };
                // Docker's defaults where compose leaves them out: the
                // container plugin's own (3 s, 30 retries) would change them.
                for (key, docker) in [("interval", "30s"), ("timeout", "30s"), ("start_period", ""), ("retries", "3")] {
                    let value = match (key, check.get(key)) {
                        ("retries", value) => Toml::Integer(value.and_then(Value::as_i64).unwrap_or(3)),
                        (_, Some(value)) => Toml::String(scalar(value).unwrap_or_default()),
                        (_, None) if docker.is_empty() => continue,
                        (_, None) => Toml::String(docker.into()),
                    };
                    health.insert(key.into(), value);
                }
                let extra = other_keys(healthcheck, &["test", "interval", "timeout", "start_period", "retries"]);
                d.table.insert("health".into(), Toml::Table(health));
                if extra.is_empty() {
                    self.mapped(path, how);
                } else {
                    self.approximated(path, format!("{how}; {} not kept", extra.join(", ")));
                }
            }
        }
        if once {
            d.table.insert("once".into(), true.into());
        }
        Ok(())
    }

    /// post_start as hooks (the postgres plugin's own hook as its extensions).
    pub(super) fn hooks(&mut self, d: &mut Draft) {
        let (at, svc) = (d.at.clone(), d.svc);
        if let Some(hooks) = svc.get("post_start") {
            d.handled.insert("post_start");
            let mut table_hooks = Table::new();
            for (i, hook) in sequence(Some(hooks.clone())).iter().enumerate() {
                let path = format!("{at}.post_start.{i}");
                let Some(command) = hook.get("command").map(unwrap_wait) else {
                    self.dropped(path, "no command");
                    continue;
                };
                if d.table.get("plugin").and_then(Toml::as_str) == Some("postgres")
                    && let Some(extensions) = postgres_extensions(&strings(Some(&command)))
                {
                    if !extensions.is_empty() {
                        d.table.insert("extensions".into(), Toml::Array(extensions.into_iter().map(Toml::String).collect()));
                    }
                    self.mapped(path, "extensions: the postgres plugin's own hook sets the password and creates them");
                    continue;
                }
                let command = command_value(&command, true);
                table_hooks.insert(format!("post-start-{}", i + 1), command);
                let extra = other_keys(hook, &["command"]);
                let mut how = format!("hooks.post-start-{}: runs once the container is ready (compose runs it as soon as it starts)", i + 1);
                if !extra.is_empty() {
                    how.push_str(&format!("; {} not kept: hooks run as the container's user", extra.join(", ")));
                }
                self.approximated(path, how);
            }
            if !table_hooks.is_empty() {
                d.table.insert("hooks".into(), Toml::Table(table_hooks));
            }
        }
    }
}

/// A command as the container plugin takes it: a list as it is, a string
/// as it is (split as a shell would, without a shell, as compose does).
/// `interpolated`: its `$` are text, written `$$` (else it still holds
/// the compose file's variables, which stack.toml reads the same way).
pub(super) fn command_value(value: &Value, interpolated: bool) -> Toml {
    let text = |v: &Value| {
        let text = scalar(v).unwrap_or_default();
        if interpolated { escape(&text) } else { text }
    };
    match value {
        Value::Sequence(items) => Toml::Array(items.iter().map(|w| Toml::String(text(w))).collect()),
        other => Toml::String(text(other)),
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

#[cfg(test)]
mod tests {
    use super::super::{Status, tests::one};
    use super::*;
    use crate::desired::Probe;

    #[test]
    fn a_probe_export_wrote_reads_back_as_that_probe() {
        let argv = Probe::Tcp(5432).in_container();
        let (key, value, port) = host_probe(&argv).unwrap();
        assert_eq!((key, value.as_integer(), port), ("tcp", Some(5432), None));
        assert!(host_probe(&["curl".into(), "-f".into(), "http://x:80/".into()]).is_none());
    }

    #[test]
    fn a_shell_health_check_is_run_in_the_container_as_written() {
        let yaml =
            "services:\n  web:\n    image: a\n    healthcheck: {test: ['CMD-SHELL', 'curl -f localhost || exit 1'], interval: 5s, retries: 4}\n";
        let (web, entry) = one(yaml, "healthcheck");
        assert_eq!(web["health"]["exec"].as_str(), Some("curl -f localhost || exit 1"));
        assert_eq!(web["health"]["interval"].as_str(), Some("5s"));
        assert_eq!(web["health"]["retries"].as_integer(), Some(4));
        assert_eq!(entry.map(|e| e.0), Some(Status::Mapped));
    }

    #[test]
    fn an_inline_dockerfile_becomes_a_file_the_build_names() {
        let yaml = "services:\n  web:\n    build: {context: ., dockerfile_inline: 'FROM scratch'}\n";
        let (web, entry) = one(yaml, "build.dockerfile_inline");
        assert_eq!(web["build"]["context"].as_str(), Some("."));
        assert_eq!(web["build"]["dockerfile"].as_str(), Some("web.Dockerfile"));
        assert_eq!(entry.map(|e| e.0), Some(Status::Mapped));
    }

    #[test]
    fn a_wait_wrapped_post_start_is_the_hook_alone() {
        let wrapped: Value = serde_yaml_ng::from_str("[sh, -c, 'i=0; until test -f /ok; do sleep 1; done; exec \"$@\"', sh, ./seed, --all]").unwrap();
        assert_eq!(strings(Some(&unwrap_wait(&wrapped))), ["./seed", "--all"]);
        let plain: Value = serde_yaml_ng::from_str("[./seed]").unwrap();
        assert_eq!(unwrap_wait(&plain), plain);
    }
}
