//! Each service's short forms as long ones (ports, volumes, depends_on,
//! build, env lists), and relative paths absolute against the folder of
//! the file that wrote them, so files from different folders merge.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::yaml::{scalar, sequence};

/// Short forms as long ones, and relative paths absolute. The error starts
/// with the key, after `services.NAME.`.
pub(super) fn normalise(service: &mut Mapping, project_dir: &Path) -> Result<(), String> {
    for key in ["environment", "labels"] {
        // `!reset` / `!override` stay for the merge.
        if let Some(value) = service.get_mut(key)
            && !matches!(value, Value::Tagged(_))
        {
            *value = Value::Mapping(key_values(value).map_err(|e| format!("{key}`: {e}"))?);
        }
    }
    if let Some(build) = service.get_mut("build") {
        if let Value::String(context) = build {
            let mut long = Mapping::new();
            long.insert("context".into(), Value::String(context.clone()));
            *build = Value::Mapping(long);
        }
        if let Value::Mapping(build) = build {
            let context = build.get("context").and_then(Value::as_str).unwrap_or(".").to_string();
            // A git URL stays as it is.
            let context = if context.contains("://") || context.starts_with("git@") { context } else { absolute(project_dir, &context) };
            build.insert("context".into(), Value::String(context));
            if let Some(args) = build.get_mut("args") {
                *args = Value::Mapping(key_values(args).map_err(|e| format!("build.args`: {e}"))?);
            }
        }
    }
    if let Some(depends) = service.get_mut("depends_on")
        && let Value::Sequence(names) = depends
    {
        let mut long = Mapping::new();
        for name in names.iter() {
            let mut condition = Mapping::new();
            condition.insert("condition".into(), "service_started".into());
            long.insert(name.clone(), Value::Mapping(condition));
        }
        *depends = Value::Mapping(long);
    }
    if let Some(networks) = service.get_mut("networks")
        && let Value::Sequence(names) = networks
    {
        *networks = Value::Mapping(names.iter().map(|n| (n.clone(), Value::Null)).collect());
    }
    if let Some(Value::Sequence(volumes)) = service.get_mut("volumes") {
        for (i, volume) in volumes.iter_mut().enumerate() {
            *volume = long_volume(volume, project_dir).map_err(|e| format!("volumes.{i}`: {e}"))?;
        }
    }
    if let Some(env_files) = service.get_mut("env_file") {
        let mut long = Vec::new();
        for item in sequence(Some(env_files.clone())) {
            let (path, required) = match &item {
                Value::String(p) => (p.clone(), true),
                Value::Mapping(m) => (
                    m.get("path").and_then(Value::as_str).unwrap_or_default().to_string(),
                    m.get("required").and_then(Value::as_bool).unwrap_or(true),
                ),
                _ => return Err("env_file`: expected a path or { path, required }".into()),
            };
            let mut entry = Mapping::new();
            entry.insert("path".into(), Value::String(absolute(project_dir, &path)));
            entry.insert("required".into(), Value::Bool(required));
            long.push(Value::Mapping(entry));
        }
        *env_files = Value::Sequence(long);
    }
    if let Some(extends) = service.get_mut("extends") {
        if let Value::String(name) = extends {
            let mut long = Mapping::new();
            long.insert("service".into(), Value::String(name.clone()));
            *extends = Value::Mapping(long);
        }
        if let Some(Value::String(file)) = extends.get_mut("file") {
            *file = absolute(project_dir, file);
        }
    }
    Ok(())
}

/// `["A=1", "B"]` or `{A: 1, B: null}` as a mapping of strings (null: take
/// the value from the environment, as compose does).
fn key_values(value: &Value) -> Result<Mapping, String> {
    match value {
        Value::Mapping(map) => Ok(map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    // `!reset` and `!override` act when files merge.
                    Value::Tagged(_) => v.clone(),
                    v => scalar(v).map(Value::String).unwrap_or(Value::Null),
                };
                (Value::String(scalar(k).unwrap_or_default()), value)
            })
            .collect()),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                let text = item.as_str().ok_or("expected KEY=value strings")?;
                Ok(match text.split_once('=') {
                    Some((k, v)) => (Value::String(k.to_string()), Value::String(v.to_string())),
                    None => (Value::String(text.to_string()), Value::Null),
                })
            })
            .collect(),
        Value::Null => Ok(Mapping::new()),
        _ => Err("expected a mapping or a list of KEY=value".into()),
    }
}

/// "SRC:DST[:MODE]" or "DST" as { type, source, target, read_only }.
fn long_volume(volume: &Value, project_dir: &Path) -> Result<Value, String> {
    let mut long = match volume {
        Value::Mapping(map) => map.clone(),
        Value::String(text) => {
            let mut long = Mapping::new();
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts[..] {
                [target] => (None, target, ""),
                [source, target] => (Some(source), target, ""),
                [source, target, mode] => (Some(source), target, mode),
                _ => return Err(format!("{text:?}: expected SOURCE:TARGET[:MODE]")),
            };
            // `${SOCK}:/run/x.sock` with SOCK unset: compose refuses it, it
            // is not an anonymous volume.
            if source == Some("") || target.is_empty() {
                return Err(format!("{text:?}: an empty part between the colons (a variable not set?); compose refuses it too"));
            }
            let kind = match source {
                None => "volume",
                Some(s) if s.starts_with(['.', '/', '~']) => "bind",
                Some(_) => "volume",
            };
            long.insert("type".into(), kind.into());
            if let Some(source) = source {
                long.insert("source".into(), source.into());
            }
            long.insert("target".into(), target.into());
            let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
            if modes.contains(&"ro") {
                long.insert("read_only".into(), true.into());
            }
            let other: Vec<&str> = modes.into_iter().filter(|m| !matches!(*m, "ro" | "rw")).collect();
            if !other.is_empty() {
                long.insert("mode".into(), other.join(",").into());
            }
            long
        }
        _ => return Err("expected \"SOURCE:TARGET\" or { type, source, target }".into()),
    };
    if long.get("type").and_then(Value::as_str) == Some("bind")
        && let Some(Value::String(source)) = long.get_mut("source")
    {
        *source = absolute(project_dir, source);
    }
    Ok(Value::Mapping(long))
}

/// `path` against `dir`, with `.` and `..` folded; `~` stays for the user's
/// home, resolved by whoever mounts it.
pub(super) fn absolute(dir: &Path, path: &str) -> String {
    if path.starts_with('~') || Path::new(path).is_absolute() {
        return path.to_string();
    }
    let mut out = dir.to_path_buf();
    for part in Path::new(path).components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A service as the reader leaves it: short forms long, paths under /p.
    pub fn service(yaml: &str) -> Mapping {
        let mut value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let Value::Mapping(map) = &mut value else { panic!() };
        normalise(map, Path::new("/p")).unwrap();
        map.clone()
    }

    #[test]
    fn short_forms_become_long() {
        let s = service(
            "build: ./app\ndepends_on: [db]\nnetworks: [front]\nvolumes: ['/var/run/docker.sock:/var/run/docker.sock:ro', '/scratch']\nextends: base",
        );
        assert_eq!(s["build"]["context"], Value::from("/p/app"));
        assert_eq!(s["depends_on"]["db"]["condition"], Value::from("service_started"));
        assert!(s["networks"].as_mapping().unwrap().contains_key("front"));
        assert_eq!(s["volumes"][0]["type"], Value::from("bind"));
        assert_eq!(s["volumes"][1]["type"], Value::from("volume"));
        assert!(s["volumes"][1].get("source").is_none());
        let err = long_volume(&Value::from(":/var/run/docker.sock:ro"), Path::new("/p")).unwrap_err();
        assert!(err.contains("empty part"), "{err}");
        assert_eq!(s["extends"]["service"], Value::from("base"));
        assert_eq!(absolute(Path::new("/p/q"), "../r/./s"), "/p/r/s");
        assert_eq!(absolute(Path::new("/p"), "~/x"), "~/x");
    }

    #[test]
    fn environment_lists_become_mappings_and_unset_stays_unset() {
        let s = service("environment: [A=1, 'B=two=2', C]");
        assert_eq!(s["environment"]["A"], Value::from("1"));
        assert_eq!(s["environment"]["B"], Value::from("two=2"));
        assert_eq!(s["environment"]["C"], Value::Null);
    }
}
