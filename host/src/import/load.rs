//! Reading a Compose project the way `docker compose config` does: every
//! `-f` file merged over the one before, YAML anchors and `<<` merge keys,
//! `${VAR}` interpolation (the environment, then `--env-file` or the
//! project's `.env`), `include`, `extends` (same file or another), `!reset`
//! and `!override`, and `--profile` selection.
//!
//! No compose crate reads real files whole (merge keys, `develop:`,
//! `dockerfile_inline`, short `extends` and unset variables trip them), so
//! this works on the YAML tree itself. Short forms are normalised to long
//! ones as each file is read and relative paths made absolute against the
//! file's own project folder, so files from different folders merge
//! without losing where their paths point.

use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value, value::TaggedValue};

use crate::stack::Variables;

/// A compose project, merged and normalised.
pub struct Compose {
    /// The top-level `name`, if any file gave one.
    pub name: Option<String>,
    /// The project folder: that of the first file.
    pub dir: PathBuf,
    pub services: Mapping,
    pub networks: Mapping,
    pub volumes: Mapping,
    pub configs: Mapping,
    pub secrets: Mapping,
    /// Services left out because none of their profiles was chosen.
    pub unselected: Vec<String>,
}

/// The files compose reads when none is named, in its order of preference.
const DEFAULT_FILES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
const OVERRIDE_FILES: &[&str] = &["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"];

/// The files to read: those named, else compose's default file in `dir`
/// and its override file beside it.
pub fn default_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let first = DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no compose file in {}: looked for {}; name one with -f", dir.display(), DEFAULT_FILES.join(", ")))?;
    let mut files = vec![first];
    files.extend(OVERRIDE_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()));
    Ok(files)
}

/// Reads and merges `files` (at least one), choosing services by
/// `profiles` when any is given (else every service is kept).
pub fn load(files: &[PathBuf], env_file: Option<&Path>, profiles: &[String]) -> Result<Compose, String> {
    let first = files.first().ok_or("no compose file given")?;
    let dir = first.canonicalize().map_err(|e| format!("{}: {e}", first.display()))?.parent().map(Path::to_path_buf).unwrap_or_default();
    let variables = match env_file {
        Some(path) => Variables::with_file(path, true)?,
        None => Variables::with_file(&dir.join(".env"), false)?,
    };
    let reader = Reader { variables: &variables };
    let mut project = Mapping::new();
    for file in files {
        // Paths in every -f file are relative to the project folder.
        let top = reader.file(file, &dir, &mut Vec::new())?;
        merge_top(&mut project, top, file)?;
    }
    untag(&mut project);
    let mut compose = Compose {
        name: project.get("name").and_then(Value::as_str).map(str::to_string),
        dir,
        services: take_mapping(&mut project, "services"),
        networks: take_mapping(&mut project, "networks"),
        volumes: take_mapping(&mut project, "volumes"),
        configs: take_mapping(&mut project, "configs"),
        secrets: take_mapping(&mut project, "secrets"),
        unselected: Vec::new(),
    };
    if !profiles.is_empty() {
        compose.services.retain(|name, service| {
            let theirs = strings(service.get("profiles"));
            let keep = theirs.is_empty() || theirs.iter().any(|p| profiles.contains(p));
            if !keep {
                compose.unselected.push(name.as_str().unwrap_or_default().to_string());
            }
            keep
        });
    }
    Ok(compose)
}

struct Reader<'a> {
    variables: &'a Variables,
}

impl Reader<'_> {
    /// One file with its includes and extends resolved, paths absolute
    /// against `project_dir`. `chain` holds the files being read (cycles).
    fn file(&self, path: &Path, project_dir: &Path, chain: &mut Vec<PathBuf>) -> Result<Mapping, String> {
        let path = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
        if chain.contains(&path) {
            let cycle: Vec<String> = chain.iter().chain([&path]).map(|p| p.display().to_string()).collect();
            return Err(format!("compose files include or extend each other in a cycle: {}", cycle.join(" → ")));
        }
        chain.push(path.clone());
        let mut top = self.raw(&path, project_dir)?;
        let own_dir = path.parent().unwrap_or(project_dir).to_path_buf();

        // `include`: each entry is a project of its own, from its own folder.
        for (i, entry) in sequence(top.remove("include")).into_iter().enumerate() {
            let (paths, dir) = match &entry {
                Value::String(p) => (vec![p.clone()], None),
                Value::Mapping(m) => (strings(m.get("path")), m.get("project_directory").and_then(Value::as_str).map(str::to_string)),
                _ => return Err(format!("{}: include.{i}: expected a path or {{ path, project_directory }}", path.display())),
            };
            let mut included = Mapping::new();
            for p in paths {
                let file = own_dir.join(&p);
                let dir = dir.as_ref().map(|d| own_dir.join(d)).unwrap_or_else(|| file.parent().unwrap_or(&own_dir).to_path_buf());
                let part = self.file(&file, &dir, chain)?;
                merge_top(&mut included, part, &file)?;
            }
            // An included service may not be redefined: compose refuses it too.
            for key in ["services", "networks", "volumes", "configs", "secrets"] {
                let Some(Value::Mapping(theirs)) = included.remove(key) else { continue };
                let ours = top.entry(key.into()).or_insert_with(|| Value::Mapping(Mapping::new()));
                let Value::Mapping(ours) = ours else { continue };
                for (name, value) in theirs {
                    if key == "services" && ours.contains_key(&name) {
                        return Err(format!(
                            "{}: service `{}` is defined here and in the file it includes (include.{i}); compose refuses that too",
                            path.display(),
                            name.as_str().unwrap_or_default()
                        ));
                    }
                    ours.entry(name).or_insert(value);
                }
            }
        }

        // `extends`: each service over the one it names, resolved in turn.
        if let Some(Value::Mapping(services)) = top.get("services").cloned() {
            let mut resolved = Mapping::new();
            for (name, _) in &services {
                let service = self.extended(&path, &services, name.as_str().unwrap_or_default(), project_dir, &mut Vec::new())?;
                resolved.insert(name.clone(), Value::Mapping(service));
            }
            top.insert("services".into(), Value::Mapping(resolved));
        }
        chain.pop();
        Ok(top)
    }

    /// A file as a tree: anchors and merge keys applied, interpolated,
    /// services normalised. Its `include` is left for `file`.
    fn raw(&self, path: &Path, project_dir: &Path) -> Result<Mapping, String> {
        let text = provision_registry::files::read_regular_text(path, provision_registry::files::MAX_TEXT_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        nesting(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut value: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        value.apply_merge().map_err(|e| format!("{}: {e}", path.display()))?;
        let Value::Mapping(mut top) = value else {
            return Err(format!("{}: not a compose file (expected a mapping with `services`)", path.display()));
        };
        top.retain(|key, _| !key.as_str().is_some_and(|k| k.starts_with("x-")));
        interpolate(&mut top, self.variables, &mut Vec::new()).map_err(|(at, e)| format!("{}: `{at}`: {e}", path.display()))?;
        if let Some(Value::Mapping(services)) = top.get_mut("services") {
            for (name, service) in services.iter_mut() {
                let name = name.as_str().unwrap_or_default().to_string();
                let Value::Mapping(service) = service else {
                    if service.is_null() {
                        *service = Value::Mapping(Mapping::new());
                        continue;
                    }
                    return Err(format!("{}: `services.{name}` is not a mapping", path.display()));
                };
                normalise(service, project_dir).map_err(|e| format!("{}: `services.{name}.{e}", path.display()))?;
            }
        }
        for kind in ["configs", "secrets"] {
            let Some(Value::Mapping(items)) = top.get_mut(kind) else { continue };
            for (_, item) in items.iter_mut() {
                if let Some(Value::String(file)) = item.get_mut("file") {
                    *file = absolute(project_dir, file);
                }
            }
        }
        Ok(top)
    }

    /// `name` of `services` (from `path`) with its `extends` chain applied.
    fn extended(&self, path: &Path, services: &Mapping, name: &str, project_dir: &Path, seen: &mut Vec<String>) -> Result<Mapping, String> {
        let Some(Value::Mapping(service)) = services.get(name) else {
            return Err(format!("{}: `extends` names service `{name}`, which the file does not define", path.display()));
        };
        let mut service = service.clone();
        let Some(extends) = service.remove("extends") else { return Ok(service) };
        let key = format!("{}#{name}", path.display());
        if seen.contains(&key) {
            return Err(format!("{}: services extend each other in a cycle: {} → {name}", path.display(), seen.join(" → ")));
        }
        seen.push(key);
        let base_name = extends
            .get("service")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: `services.{name}.extends` names no service", path.display()))?;
        let base = match extends.get("file").and_then(Value::as_str) {
            None => self.extended(path, services, base_name, project_dir, seen)?,
            Some(file) => {
                let file = PathBuf::from(file);
                let file_dir = file.parent().unwrap_or(project_dir).to_path_buf();
                let other = self.raw(&file, &file_dir)?;
                let Some(Value::Mapping(theirs)) = other.get("services") else {
                    return Err(format!("{}: extended from {} has no services", path.display(), file.display()));
                };
                self.extended(&file, theirs, base_name, &file_dir, seen)?
            }
        };
        let mut merged = base;
        merge_service(&mut merged, service);
        Ok(merged)
    }
}

/// Every string interpolated, except environment values: those are kept
/// as written (`${DB_PASSWORD}`), so a secret from `.env` is read again when
/// the stack runs instead of being written into stack.toml.
fn interpolate(map: &mut Mapping, variables: &Variables, at: &mut Vec<String>) -> Result<(), (String, String)> {
    for (key, value) in map.iter_mut() {
        at.push(key.as_str().map(str::to_string).unwrap_or_else(|| format!("{key:?}")));
        let keep = at.len() == 3 && at[0] == "services" && at[2] == "environment";
        if !keep {
            interpolate_value(value, variables, at)?;
        }
        at.pop();
    }
    Ok(())
}

fn interpolate_value(value: &mut Value, variables: &Variables, at: &mut Vec<String>) -> Result<(), (String, String)> {
    match value {
        Value::String(text) => *text = variables.interpolate(text).map_err(|e| (at.join("."), e))?,
        Value::Mapping(map) => interpolate(map, variables, at)?,
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(i.to_string());
                interpolate_value(item, variables, at)?;
                at.pop();
            }
        }
        Value::Tagged(tagged) => interpolate_value(&mut tagged.value, variables, at)?,
        _ => {}
    }
    Ok(())
}

/// Short forms as long ones, and relative paths absolute. The error starts
/// with the key, after `services.NAME.`.
fn normalise(service: &mut Mapping, project_dir: &Path) -> Result<(), String> {
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
fn absolute(dir: &Path, path: &str) -> String {
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

/// One file's top level merged over what came before it.
fn merge_top(project: &mut Mapping, top: Mapping, file: &Path) -> Result<(), String> {
    for (key, value) in top {
        let name = key.as_str().unwrap_or_default().to_string();
        match (name.as_str(), value) {
            ("version", _) => {}
            ("name", value) => {
                project.insert(key, value);
            }
            ("services" | "networks" | "volumes" | "configs" | "secrets", Value::Mapping(items)) => {
                let Value::Mapping(ours) = project.entry(key).or_insert_with(|| Value::Mapping(Mapping::new())) else { unreachable!() };
                for (item, value) in items {
                    match (ours.get_mut(&item), value) {
                        (Some(Value::Mapping(base)), Value::Mapping(over)) if name == "services" => merge_service(base, over),
                        (Some(Value::Mapping(base)), Value::Mapping(over)) => merge_mapping(base, over),
                        (_, value) => {
                            ours.insert(item, value);
                        }
                    }
                }
            }
            ("services" | "networks" | "volumes" | "configs" | "secrets", Value::Null) => {}
            (other, _) if matches!(other, "services" | "networks" | "volumes" | "configs" | "secrets") => {
                return Err(format!("{}: `{other}` is not a mapping", file.display()));
            }
            (_, value) => {
                project.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Compose's merge rules for a service: mappings merge key by key;
/// `ports`, `expose`, `dns`, `cap_add`, `security_opt`, `env_file`,
/// `profiles`, `devices`, `tmpfs`, `configs` and `secrets` append;
/// `volumes` merge by target; anything else is replaced. `!reset` removes a
/// key, `!override` replaces it whole.
pub(super) fn merge_service(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        let value = match value {
            Value::Tagged(tagged) if is_tag(&tagged, "reset") => {
                base.remove(&key);
                continue;
            }
            Value::Tagged(tagged) if is_tag(&tagged, "override") => {
                base.insert(key, tagged.value);
                continue;
            }
            value => value,
        };
        let name = key.as_str().unwrap_or_default();
        match (base.get_mut(&key), value) {
            (Some(Value::Sequence(ours)), Value::Sequence(theirs)) if name == "volumes" => {
                for volume in theirs {
                    let target = volume.get("target").cloned();
                    ours.retain(|v| target.is_none() || v.get("target") != target.as_ref());
                    ours.push(volume);
                }
            }
            (Some(Value::Sequence(ours)), Value::Sequence(theirs))
                if matches!(
                    name,
                    "ports" | "expose" | "dns" | "cap_add" | "security_opt" | "env_file" | "profiles" | "devices" | "tmpfs" | "configs" | "secrets"
                ) =>
            {
                for item in theirs {
                    if !ours.contains(&item) {
                        ours.push(item);
                    }
                }
            }
            (Some(Value::Mapping(ours)), Value::Mapping(theirs)) => merge_mapping(ours, theirs),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn merge_mapping(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (_, Value::Tagged(tagged)) if is_tag(&tagged, "reset") => {
                base.remove(&key);
            }
            (_, Value::Tagged(tagged)) if is_tag(&tagged, "override") => {
                base.insert(key, tagged.value);
            }
            (Some(Value::Mapping(ours)), Value::Mapping(theirs)) => merge_mapping(ours, theirs),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// What `!reset` and `!override` mean when there is nothing under them to
/// merge with: nothing, and the value.
fn untag(map: &mut Mapping) {
    map.retain(|_, v| !matches!(v, Value::Tagged(t) if is_tag(t, "reset")));
    for (_, value) in map.iter_mut() {
        if let Value::Tagged(tagged) = value {
            *value = std::mem::replace(&mut tagged.value, Value::Null);
        }
        match value {
            Value::Mapping(inner) => untag(inner),
            Value::Sequence(items) => {
                for item in items {
                    if let Value::Mapping(inner) = item {
                        untag(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_tag(tagged: &TaggedValue, name: &str) -> bool {
    tagged.tag == name
}

fn take_mapping(map: &mut Mapping, key: &str) -> Mapping {
    match map.remove(key) {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    }
}

/// A value that may be one item or a list, as a list.
pub(super) fn sequence(value: Option<Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(one) => vec![one],
    }
}

/// A string or a list of strings, as strings.
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    sequence(value.cloned()).iter().filter_map(scalar).collect()
}

/// The keys of a mapping other than `known`: what a mapping sets that the
/// import does not carry over.
pub(super) fn other_keys(value: &Value, known: &[&str]) -> Vec<String> {
    value.as_mapping().into_iter().flat_map(|m| m.keys().filter_map(Value::as_str)).filter(|k| !known.contains(k)).map(str::to_string).collect()
}

/// A scalar as compose reads it into a string field.
pub(super) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Flow collections (`[`, `{`) nested deeper than this are refused before
/// the YAML parser sees them: it takes time quadratic in their depth
/// (100,000 `[` took over 20 s), and no compose file nests more than a few.
const MAX_NESTING: usize = 64;

/// Refuse flow collections nested deeper than `MAX_NESTING`, counted
/// outside quotes and comments.
fn nesting(text: &str) -> Result<(), String> {
    let (mut depth, mut quote, mut comment, mut previous) = (0usize, None, false, '\n');
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            comment = false;
        }
        match (quote, c) {
            _ if comment => {}
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => {
                // `''` inside single quotes is a quote, not the end.
                if q == '\'' && chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("line {line}: collections nested more than {MAX_NESTING} deep; refusing it"));
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Mapping {
        let mut value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let Value::Mapping(map) = &mut value else { panic!() };
        normalise(map, Path::new("/p")).unwrap();
        map.clone()
    }

    #[test]
    fn overrides_merge_as_compose_does() {
        let mut base = service("image: a\nports: ['80:80']\nenvironment: [A=1, B=2]\nvolumes: ['./x:/data', 'v:/cache']\ncommand: [serve]");
        let over = service("ports: ['443:443']\nenvironment: {B: 3}\nvolumes: ['./y:/data:ro']\ncommand: [worker]\nlabels: !reset {}");
        merge_service(&mut base, over);
        let text = serde_yaml_ng::to_string(&base).unwrap();
        assert!(text.contains("- 80:80\n- 443:443"), "{text}");
        assert_eq!(base["environment"]["A"], Value::from("1"));
        assert_eq!(base["environment"]["B"], Value::from("3"));
        let volumes = base["volumes"].as_sequence().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1]["source"], Value::from("/p/y"));
        assert_eq!(volumes[1]["read_only"], Value::from(true));
        assert_eq!(base["command"][0], Value::from("worker"));
        assert!(base.get("labels").is_none());
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
        assert_eq!(s["extends"]["service"], Value::from("base"));
        assert_eq!(absolute(Path::new("/p/q"), "../r/./s"), "/p/r/s");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing_and_quotes_and_comments_do_not_count() {
        assert!(nesting(&format!("a: {}", "[".repeat(100_000))).unwrap_err().contains("nested more than 64 deep"));
        assert!(nesting(&format!("a: {}{}", "[".repeat(64), "]".repeat(64))).is_ok());
        assert!(nesting(&format!("a: \"{}\"\nb: '{}'\n# {}\n", "[".repeat(100), "[".repeat(100), "{".repeat(100))).is_ok());
        assert!(nesting(&format!("a: 'it''s {}'", "[".repeat(100))).is_ok());
    }
}
