//! `provision import`: a Compose project as a stack.toml, with a fidelity
//! report that accounts for every key the compose files set.
//!
//! `load` reads the project as `docker compose config` would (files merged,
//! interpolated, includes and extends resolved); `map` turns each service
//! into a stack service and records what became of each key.

mod load;
mod map;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_yaml_ng::Value;
use toml::{Table, Value as Toml};

use load::Compose;
pub use load::default_files;
use map::{Mapper, StackService};

/// What became of one compose key.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The compose key path, e.g. `services.db.environment.POSTGRES_DB`.
    pub path: String,
    pub status: Status,
    /// Mapped: where to; approximated: how; dropped: why.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Mapped,
    Approximated,
    Dropped,
}

impl Status {
    /// The mark written before a note in stack.toml and the report.
    fn mark(self) -> &'static str {
        match self {
            Status::Mapped => "=",
            Status::Approximated => "~",
            Status::Dropped => "-",
        }
    }
}

/// The report: every entry, and which plugin each service went to.
#[derive(Debug, Serialize)]
pub struct Report {
    pub files: Vec<String>,
    pub services: BTreeMap<String, String>,
    pub mapped: usize,
    pub approximated: usize,
    pub dropped: usize,
    /// Powers granted in `allow` because the compose file asked for them
    /// and `--grant` said so.
    pub granted: Vec<String>,
    /// Powers the compose file asks for that were not granted (no
    /// `--grant`): the stack does not plan until they are.
    pub not_granted: Vec<String>,
    /// `[stack] profile`, when compose profiles are active by default
    /// (`--profile`, COMPOSE_PROFILES).
    pub profiles: Vec<String>,
    /// Values read at import (the key and what it was written as): the
    /// stack keeps what they were then.
    pub frozen: Vec<String>,
    /// Variables read as "" because they are not set (`key: NAME`).
    pub unset: Vec<String>,
    pub entries: Vec<Entry>,
}

pub struct Imported {
    pub toml: String,
    pub report: Report,
    /// Files to write with stack.toml (an inline Dockerfile): path, text.
    pub files: Vec<(PathBuf, String)>,
}

pub struct Options<'a> {
    pub files: &'a [PathBuf],
    pub env_file: Option<&'a Path>,
    pub profiles: &'a [String],
    /// The stack's name instead of the compose project's.
    pub project_name: Option<&'a str>,
    /// The folder stack.toml will be written to (paths are relative to it).
    pub out_dir: &'a Path,
    /// Write the `allow` entries the compose file's powers need (`--grant`).
    pub grant: bool,
}

impl Options<'_> {
    /// keep_variables: as the import writes them, or as compose prints them.
    fn reading(&self, keep_variables: bool) -> load::Reading<'_> {
        load::Reading { env_file: self.env_file, profiles: self.profiles, project_name: self.project_name, keep_variables }
    }
}

/// The project as `load` read it (merged, interpolated, normalised), as
/// JSON: what `provision import --config` prints, to compare with
/// `docker compose config`.
pub fn config(options: &Options) -> Result<serde_json::Value, String> {
    let compose = load::load(options.files, &options.reading(false))?;
    let json = |m: &serde_yaml_ng::Mapping| serde_json::to_value(m).map_err(|e| e.to_string());
    Ok(serde_json::json!({
        "name": compose.name,
        "services": json(&compose.services)?,
        "networks": json(&compose.networks)?,
        "volumes": json(&compose.volumes)?,
        "configs": json(&compose.configs)?,
        "secrets": json(&compose.secrets)?,
    }))
}

pub fn import(options: &Options) -> Result<Imported, String> {
    let compose = load::load(options.files, &options.reading(true))?;
    let out_dir = options.out_dir.canonicalize().map_err(|e| format!("{}: {e}", options.out_dir.display()))?;
    let files: Vec<String> = options.files.iter().map(|f| f.display().to_string()).collect();
    let in_files = |e: String| format!("{}: {e}", files.join(", "));
    let mut mapper = Mapper {
        compose: &compose,
        out_dir: &out_dir,
        names: service_names(&compose).map_err(in_files)?,
        run_once: BTreeSet::new(),
        volume_users: BTreeMap::new(),
        report: Vec::new(),
        grant: options.grant,
        files: Vec::new(),
    };
    for (name, service) in &compose.services {
        let name = name.as_str().unwrap_or_default();
        if let Some(Value::Mapping(depends)) = service.get("depends_on") {
            for (other, how) in depends {
                if how.get("condition").and_then(Value::as_str) == Some("service_completed_successfully") {
                    mapper.run_once.extend(other.as_str().map(str::to_string));
                }
            }
        }
        for volume in load::sequence(service.get("volumes").cloned()) {
            if volume.get("type").and_then(Value::as_str) == Some("volume")
                && let Some(source) = volume.get("source").and_then(Value::as_str)
            {
                mapper.volume_users.entry(source.to_string()).or_default().push(name.to_string());
            }
        }
    }
    let mut services = Vec::new();
    for (name, service) in &compose.services {
        let (name, Value::Mapping(service)) = (name.as_str().unwrap_or_default(), service) else { continue };
        services.push(mapper.service(name, service).map_err(in_files)?);
    }
    let networks = networks(&compose, &mut mapper.report);
    for (kind, declared) in [("volumes", &compose.volumes), ("configs", &compose.configs), ("secrets", &compose.secrets)] {
        for (name, definition) in declared {
            let name = name.as_str().unwrap_or_default();
            let path = format!("{kind}.{name}");
            let options = load::other_keys(definition, &["file", "content"]);
            if options.is_empty() {
                mapper.report.push(Entry { path, status: Status::Mapped, detail: "where the services mount it".into() });
            } else {
                let detail = format!("{} not kept: provision creates its volumes, and reads files from the project", options.join(", "));
                mapper.report.push(Entry { path, status: Status::Approximated, detail });
            }
        }
    }

    let name = project_name(options.project_name, &compose)?;
    let sources: Vec<String> = options.files.iter().map(|f| display_path(f, &out_dir)).collect();
    // Compose's active profiles are the stack's, after dev (the profile
    // plugins are told): `docker compose up` and `provision up` run the same.
    let profiles: Vec<String> =
        if compose.profiles.is_empty() { Vec::new() } else { ["dev".to_string()].into_iter().chain(compose.profiles.clone()).collect() };
    let toml = render(&name, &profiles, &networks, &services, &sources)?;
    let (entries, files) = (mapper.report, mapper.files);
    let count = |s: Status| entries.iter().filter(|e| e.status == s).count();
    let asked: Vec<String> = services.iter().flat_map(|s| s.asked.iter().map(|p| format!("{}: {p}", s.name))).collect();
    let (granted, not_granted) = if options.grant { (asked, Vec::new()) } else { (Vec::new(), asked) };
    let report = Report {
        files: sources,
        services: services.iter().map(|s| (s.name.clone(), s.table["plugin"].as_str().unwrap_or_default().to_string())).collect(),
        mapped: count(Status::Mapped),
        approximated: count(Status::Approximated),
        dropped: count(Status::Dropped),
        granted,
        not_granted,
        profiles,
        frozen: compose.frozen.clone(),
        unset: compose.unset.clone(),
        entries,
    };
    Ok(Imported { toml, report, files })
}

/// Compose names as stack names (host names: lower-case, `-`); two that
/// would meet are refused.
fn service_names(compose: &Compose) -> Result<BTreeMap<String, String>, String> {
    let mut names = BTreeMap::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for name in compose.services.keys().filter_map(Value::as_str) {
        let mut stack: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_string();
        if !stack.starts_with(|c: char| c.is_ascii_lowercase()) {
            stack.insert_str(0, "s-");
        }
        if let Some(other) = taken.insert(stack.clone(), name.to_string()) {
            return Err(format!("services `{other}` and `{name}` would both be named `{stack}` in stack.toml; rename one in the compose file"));
        }
        names.insert(name.to_string(), stack);
    }
    Ok(names)
}

/// The name given, else the compose project's, else its folder's, as a
/// stack name.
fn project_name(given: Option<&str>, compose: &Compose) -> Result<String, String> {
    if let Some(name) = given {
        return if crate::stack::valid_name(name) {
            Ok(name.to_string())
        } else {
            Err(format!("{name:?} is not usable as a stack name: use lower-case letters, digits and `-`"))
        };
    }
    let raw = compose.name.clone().unwrap_or_else(|| compose.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let name = name.trim_matches('-').to_string();
    Ok(if crate::stack::valid_name(&name) { name } else { "imported".into() })
}

/// Top-level networks: `internal` kept, the rest reported.
fn networks(compose: &Compose, report: &mut Vec<Entry>) -> Table {
    let mut out = Table::new();
    for (name, definition) in &compose.networks {
        let name = name.as_str().unwrap_or_default();
        let path = format!("networks.{name}");
        let mut table = Table::new();
        let mut dropped = Vec::new();
        for (key, value) in definition.as_mapping().into_iter().flatten() {
            match key.as_str().unwrap_or_default() {
                "internal" => {
                    table.insert("internal".into(), Toml::Boolean(value.as_bool() == Some(true)));
                }
                // Made outside the project: joined, never created or removed.
                "external" if value.as_bool() == Some(true) => {
                    table.insert("external".into(), Toml::Boolean(true));
                }
                "external" => {}
                "name" if definition.get("external").and_then(Value::as_bool) == Some(true) => {
                    table.insert("name".into(), Toml::String(load::scalar(value).unwrap_or_default()));
                }
                "driver" if value.as_str() == Some("bridge") => {}
                other => dropped.push(other.to_string()),
            }
        }
        if name == "default" {
            let status = if table.is_empty() && dropped.is_empty() { Status::Mapped } else { Status::Approximated };
            report.push(Entry { path, status, detail: "the project's default network (its options are Docker's defaults)".into() });
            continue;
        }
        if dropped.is_empty() {
            report.push(Entry { path, status: Status::Mapped, detail: format!("[networks.{name}]") });
        } else {
            let detail = format!("[networks.{name}]; {} not kept: provision creates a bridge network per project", dropped.join(", "));
            report.push(Entry { path, status: Status::Approximated, detail });
        }
        out.insert(name.to_string(), Toml::Table(table));
    }
    out
}

fn display_path(path: &Path, dir: &Path) -> String {
    let absolute = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    absolute.strip_prefix(dir).map(|p| p.display().to_string()).unwrap_or_else(|_| absolute.display().to_string())
}

/// stack.toml's text: a header, [stack], [networks], then each service
/// with its notes above it.
fn render(name: &str, profiles: &[String], networks: &Table, services: &[StackService], sources: &[String]) -> Result<String, String> {
    let mut text = format!(
        "# Imported from {} by `provision import`.\n\
         # Notes above a service: ~ approximated, - dropped, ! a power the compose file asks for.\n\n",
        sources.join(", ")
    );
    let mut stack = Table::new();
    stack.insert("name".into(), name.into());
    if !profiles.is_empty() {
        stack.insert("profile".into(), Toml::Array(profiles.iter().map(|p| Toml::String(p.clone())).collect()));
    }
    let mut top = Table::new();
    top.insert("stack".into(), Toml::Table(stack));
    if !networks.is_empty() {
        top.insert("networks".into(), Toml::Table(networks.clone()));
    }
    text.push_str(&toml::to_string(&top).map_err(|e| e.to_string())?);
    for service in services {
        text.push('\n');
        for note in &service.notes {
            text.push_str(&format!("# {note}\n"));
        }
        let mut one = Table::new();
        one.insert(service.name.clone(), Toml::Table(service.table.clone()));
        let mut doc = Table::new();
        doc.insert("services".into(), Toml::Table(one));
        text.push_str(&toml::to_string(&doc).map_err(|e| e.to_string())?);
    }
    Ok(text)
}

impl Report {
    /// The report for people: totals, then everything not mapped as it is.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let plugins: Vec<String> = self.services.iter().map(|(s, p)| format!("{s} → {p}")).collect();
        out.push_str(&format!("imported {} service(s) from {}: {}\n", self.services.len(), self.files.join(", "), plugins.join(", ")));
        out.push_str(&format!("compose keys: {} mapped, {} approximated, {} dropped\n", self.mapped, self.approximated, self.dropped));
        let width = self.entries.iter().filter(|e| e.status != Status::Mapped).map(|e| e.path.len()).max().unwrap_or(0);
        for (status, title) in [(Status::Approximated, "approximated"), (Status::Dropped, "dropped")] {
            let entries: Vec<&Entry> = self.entries.iter().filter(|e| e.status == status).collect();
            if entries.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{title}:\n"));
            for e in entries {
                out.push_str(&format!("  {} {:width$}  {}\n", status.mark(), e.path, e.detail));
            }
        }
        if !self.profiles.is_empty() {
            out.push_str(&format!(
                "\nprofiles active as compose has them (--profile, COMPOSE_PROFILES): [stack] profile = [\"{}\"]\n",
                self.profiles.join("\", \"")
            ));
        }
        if !self.unset.is_empty() {
            out.push_str("\nvariables not set, read as \"\" (as compose does; set them in .env or the environment and import again):\n");
            for u in &self.unset {
                out.push_str(&format!("  ? {u}\n"));
            }
        }
        if !self.frozen.is_empty() {
            out.push_str(
                "\nvalues read at import, kept in stack.toml as they were (import again when their variables change;\n\
                 environment, command, entrypoint and health checks keep their variables):\n",
            );
            for f in &self.frozen {
                out.push_str(&format!("  = {f}\n"));
            }
        }
        if !self.granted.is_empty() {
            out.push_str("\npowers granted in `allow` (--grant) because the compose file asks for them (review them):\n");
            for g in &self.granted {
                out.push_str(&format!("  ! {g}\n"));
            }
        }
        if !self.not_granted.is_empty() {
            out.push_str(
                "\npowers the compose file asks for, not granted: the stack does not plan until you add each to its service's `allow`\n\
                 (or import again with --grant, if you trust the compose file with them):\n",
            );
            for g in &self.not_granted {
                out.push_str(&format!("  ! {g}\n"));
            }
        }
        out
    }
}
