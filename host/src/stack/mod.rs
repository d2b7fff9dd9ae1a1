//! stack.toml: the typed model of a stack, with the source spans that let
//! every error point at a file, line and key (`diagnostic`). Must not know
//! what a plugin's config means: that is the plugin's to check.
//!
//! ```toml
//! [stack]
//! name = "shop"              # project name (default: the folder's name)
//! profile = "dev"            # default profile (dev, test, ci, prod, or your own);
//!                            # several: ["dev", "debug"] (the first is the plugins')
//! engine = "swarm"           # optional: where it runs (docker, the default, or swarm)
//!
//! [engine.swarm]             # optional: the registry every node pulls images from
//! registry = "registry.example.com:5000"
//!
//! [plugins]                  # optional: versions and plugins of your own
//! postgres = "^0.1"
//! mine = { path = "plugins/mine.wasm", sha256 = "…" }
//! theirs = { registry = "ghcr.io/acme/theirs", version = "^1.2" }   # or "ghcr.io/acme/theirs@^1.2"
//!
//! [images]                   # optional: image substitutes (mirrors, stand-ins)
//! "postgres:16-alpine" = "registry.local/postgres:16-alpine"
//!
//! [networks.backend]         # optional: networks services can join
//! internal = true            # no route out, no other network
//! [networks.proxy]           # or one made outside the stack (a shared
//! external = true            # proxy's), joined, never created or removed
//!
//! [services.db]              # a service; its plugin defaults to its name
//! plugin = "postgres"
//! uses = ["cache"]           # or { database = "db" }; inferred when unambiguous
//! allow = ["privileged"]     # powers the plugin may ask for (refused otherwise)
//! profiles = ["dev"]         # only in these profiles (or tables of overrides:)
//! networks = ["backend"]     # … host-level options (`options`), then
//! version = 16               # … every other key is the plugin's config
//! [services.db.profiles.test]  # merged over the service when `test` is active
//! tmpfs = ["/var/lib/postgresql/data"]
//! ```
//!
//! Every string may use `${VAR}` and its Compose forms (`interpolate`).

use std::{
    collections::{BTreeMap, HashMap},
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use provision_registry::Requirement;

use crate::engine::{EngineKind, EngineSettings};
use semver::VersionReq;
use toml::Value;

mod diagnostic;
pub mod interpolate;
mod networks;
pub mod options;
mod permission;
mod plugins;
mod services;
mod watch;

use diagnostic::index_spans;
pub use diagnostic::{ReadError, StackError};
pub use interpolate::Variables;
pub use permission::Permission;

#[derive(Debug)]
pub struct Stack {
    /// The file as the user named it, for messages.
    pub path: PathBuf,
    /// Absolute folder of the file: relative paths in the stack start here.
    pub dir: PathBuf,
    pub name: String,
    /// The profile plugins are told (dev, test, ci, prod…): the first of
    /// `profiles`.
    pub profile: String,
    /// Every active profile, in order: asked for (`--profile a,b`), else
    /// `[stack] profile`, else dev. A service exists if it names any of
    /// them; their overrides are merged in this order.
    pub profiles: Vec<String>,
    /// Services that exist only in profiles not active, with those
    /// profiles: so a service that uses one is told which to add.
    pub not_active: BTreeMap<String, Vec<String>>,
    pub services: Vec<Service>,
    /// `[networks.NAME]`: networks services may join, and whether internal.
    pub networks: BTreeMap<String, NetworkDecl>,
    /// Index into `services`, by name: stacks of thousands of services.
    by_name: HashMap<String, usize>,
    /// `[plugins]`, by plugin name.
    pub plugins: BTreeMap<String, Requirement>,
    /// `[images]`: reference → substitute.
    pub images: BTreeMap<String, String>,
    /// `[stack] engine`: where the stack runs unless --engine says.
    pub engine: Option<EngineKind>,
    /// `[engine.*]`: how each engine is set up.
    pub engine_settings: EngineSettings,
    /// What is read but likely not meant (an unset variable), for the
    /// user to see: `file:line: key: what`.
    pub warnings: Vec<String>,
    source: Arc<String>,
    /// Dotted key path → span of `key = value` (or of the key, for tables).
    spans: HashMap<String, Range<usize>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkDecl {
    pub internal: bool,
    /// `external = true`: a network made outside the stack, joined by this
    /// engine name (the key, or `name`); never created or removed.
    pub external: Option<String>,
}

#[derive(Clone, Copy)]
enum Contents<'a> {
    /// `need_services`: a profile with no service is an error (not for
    /// commands that only need the project's name).
    Stack {
        profile: Option<&'a str>,
        variables: &'a Variables,
        need_services: bool,
    },
    ImagesOnly,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub plugin: String,
    pub uses: Uses,
    pub allow: Vec<Permission>,
    /// The service table (the active profile's overrides merged in) minus
    /// `plugin`, `uses`, `allow` and `profiles`, as JSON. The planner takes
    /// the host-level options (`options`) out; the rest is the plugin's.
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Uses {
    /// Not written: fill each role with the one service that fits.
    Infer,
    /// `uses = ["db", "cache"]`: roles found from each service's plugin.
    Services(Vec<String>),
    /// `uses = { database = "db" }`.
    Roles(Vec<(String, String)>),
}

impl Stack {
    /// Read stack.toml for `profile` (None: its `[stack] profile`, else dev),
    /// with variables from the environment and `.env` beside it.
    pub fn load(path: &Path, profile: Option<&str>) -> miette::Result<Stack> {
        Stack::load_with(path, profile, true)
    }

    /// Read stack.toml for what names its project (name, folder, engine),
    /// whether or not its default profile has services: `ps`, `logs`,
    /// `exec`, `port` and `down` work on the project whatever profile runs.
    pub fn load_for_project(path: &Path) -> miette::Result<Stack> {
        Stack::load_with(path, None, false)
    }

    fn load_with(path: &Path, profile: Option<&str>, need_services: bool) -> miette::Result<Stack> {
        let text = read_text(path)?;
        let dir = std::path::absolute(path).ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
        let variables = Variables::for_dir(&dir).map_err(|e| miette::miette!(help = "fix the line, or quote the value", "{e}"))?;
        Ok(Stack::parse_file(path, dir, text, Contents::Stack { profile, variables: &variables, need_services })?)
    }

    /// Parse `text` as the stack file at `path` (in folder `dir`).
    pub fn parse(path: &Path, dir: PathBuf, text: String, profile: Option<&str>, variables: &Variables) -> Result<Stack, StackError> {
        Stack::parse_file(path, dir, text, Contents::Stack { profile, variables, need_services: true })
    }

    fn parse_file(path: &Path, dir: PathBuf, text: String, contents: Contents) -> Result<Stack, StackError> {
        let source = Arc::new(text);
        let mut stack = Stack {
            path: path.into(),
            dir,
            name: String::new(),
            profile: String::new(),
            profiles: Vec::new(),
            not_active: BTreeMap::new(),
            warnings: Vec::new(),
            services: Vec::new(),
            networks: BTreeMap::new(),
            by_name: HashMap::new(),
            plugins: BTreeMap::new(),
            images: BTreeMap::new(),
            engine: None,
            engine_settings: EngineSettings::default(),
            source: source.clone(),
            spans: HashMap::new(),
        };
        let doc = match toml::de::DeTable::parse(&source) {
            Ok(doc) => doc,
            Err(e) => {
                // A key nested too deep ("recursion limit") comes with no
                // place: it is the line whose key has the most dots.
                let help = e.span().is_none().then(|| "no stack.toml key is nested this deep; check the dotted key".to_string());
                let span = e.span().unwrap_or_else(|| deepest_key_line(&source));
                return Err(stack.error_at_span(span, "not valid TOML", e.message(), help));
            }
        };
        index_spans(&mut stack.spans, "", doc.get_ref());
        // The parsed document, turned into values without parsing the text again.
        let table = <toml::Table as serde::Deserialize>::deserialize(toml::de::Deserializer::from(doc))
            .map_err(|e| stack.error_at_span(e.span().unwrap_or(0..0), "not valid TOML", e.message(), None))?;
        stack.read(table, contents)?;
        Ok(stack)
    }

    fn read(&mut self, mut table: toml::Table, contents: Contents) -> Result<(), StackError> {
        let Contents::Stack { profile, variables, need_services } = contents else {
            for (key, value) in table {
                if key != "images" {
                    return Err(self.error_at(
                        &key,
                        format!("unknown top-level key `{key}`"),
                        "not expected here",
                        Some("an images file has one [images] table".into()),
                    ));
                }
                self.read_images(value)?;
            }
            return Ok(());
        };
        self.interpolate(&mut table, "", variables)?;
        // [stack] first: it names the default profile, which [services] need.
        if let Some(value) = table.remove("stack") {
            self.read_stack(value)?;
        }
        if let Some(asked) = profile {
            self.profiles = split_profiles(asked);
        }
        if self.profiles.is_empty() {
            self.profiles = vec!["dev".into()];
        }
        self.profile = self.profiles[0].clone();
        for (key, value) in table {
            match key.as_str() {
                "services" => self.read_services(value)?,
                "plugins" => self.read_plugins(value)?,
                "images" => self.read_images(value)?,
                "networks" => self.read_networks(value)?,
                "engine" => self.read_engine(value)?,
                _ => {
                    return Err(self.error_at(
                        &key,
                        format!("unknown top-level table `{key}`"),
                        "not a stack.toml key",
                        Some("the top level has [stack], [services.NAME], [networks.NAME], [plugins], [images] and [engine.swarm]".into()),
                    ));
                }
            }
        }
        if self.name.is_empty() {
            let folder = self.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            self.name = sanitize_name(&folder);
        }
        if self.services.is_empty() && need_services {
            return Err(self.error_at_span(
                0..0,
                match self.profiles.as_slice() {
                    [one] => format!("the stack has no services in profile `{one}`"),
                    all => format!("the stack has no services in profiles `{}`", all.join("`, `")),
                },
                "expected [services.NAME] tables",
                Some("add a service, e.g.\n[services.db]\nplugin = \"postgres\"\n(a service with `profiles = [...]` exists only in those)".into()),
            ));
        }
        Ok(())
    }

    fn read_stack(&mut self, value: Value) -> Result<(), StackError> {
        let table = self.expect_table("stack", value)?;
        for (key, value) in table {
            let path = format!("stack.{key}");
            match key.as_str() {
                "name" => {
                    let name = self.expect_str(&path, value)?;
                    if !valid_name(&name) {
                        return Err(self.error_at(
                            &path,
                            format!("stack name {name:?} is not usable as a project name"),
                            "invalid name",
                            Some("use lower-case letters, digits and `-` (not `_`), starting with a letter or digit, at most 63".into()),
                        ));
                    }
                    self.name = name;
                }
                "profile" => {
                    self.profiles = match value {
                        Value::Array(items) => {
                            let mut names = Vec::new();
                            for (i, item) in items.into_iter().enumerate() {
                                names.push(self.expect_str(&format!("{path}.{i}"), item)?);
                            }
                            names
                        }
                        value => split_profiles(&self.expect_str(&path, value)?),
                    }
                }
                "engine" => {
                    use clap::ValueEnum;
                    let name = self.expect_str(&path, value)?;
                    let kind = EngineKind::from_str(&name, false).map_err(|_| {
                        self.error_at(&path, format!("unknown engine {name:?}"), "not an engine", Some("use \"docker\" or \"swarm\"".into()))
                    })?;
                    self.engine = Some(kind);
                }
                _ => return Err(self.unknown_key(&path, "[stack] has `name`, `profile` and `engine`")),
            }
        }
        Ok(())
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.by_name.get(name).map(|&i| &self.services[i])
    }

    fn unknown_key(&self, path: &str, help: &str) -> StackError {
        let key = path.rsplit('.').next().unwrap_or(path);
        self.error_at(path, format!("unknown key `{key}`"), "not expected here", Some(help.into()))
    }

    fn expect_table(&self, path: &str, value: Value) -> Result<toml::Table, StackError> {
        match value {
            Value::Table(t) => Ok(t),
            other => Err(self.error_at(path, format!("`{path}` must be a table, found {}", other.type_str()), "expected a table", None)),
        }
    }

    fn expect_str(&self, path: &str, value: Value) -> Result<String, StackError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(self.error_at(path, format!("`{path}` must be a string, found {}", other.type_str()), "expected a string", None)),
        }
    }

    fn version_req(&self, path: &str, req: &str) -> Result<VersionReq, StackError> {
        VersionReq::parse(req).map_err(|e| {
            self.error_at(
                path,
                format!("{req:?} is not a version requirement: {e}"),
                "invalid requirement",
                Some("e.g. \"^0.1\", \"~1.2.3\", \">=1, <3\"".into()),
            )
        })
    }
}

fn toml_to_json(value: Value) -> serde_json::Value {
    match value {
        Value::String(s) => s.into(),
        Value::Integer(i) => i.into(),
        Value::Float(f) => serde_json::Number::from_f64(f).map(Into::into).unwrap_or(serde_json::Value::Null),
        Value::Boolean(b) => b.into(),
        Value::Datetime(d) => d.to_string().into(),
        Value::Array(items) => items.into_iter().map(toml_to_json).collect(),
        Value::Table(t) => t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect::<serde_json::Map<_, _>>().into(),
    }
}

/// The span of the line whose key (before `=`, or in a `[table]` header)
/// has the most dots.
fn deepest_key_line(source: &str) -> Range<usize> {
    let mut best = (0, 0..0);
    let mut start = 0;
    for line in source.split_inclusive('\n') {
        let key = line.split('=').next().unwrap_or_default();
        let dots = key.matches('.').count();
        if dots > best.0 {
            best = (dots, start..start + line.trim_end().len());
        }
        start += line.len();
    }
    best.1
}

/// A stack or images file: a regular file a person could have written (
/// FIFO or device in its place is refused, not read for ever).
fn read_text(path: &Path) -> Result<String, ReadError> {
    provision_registry::files::read_regular_text(path, provision_registry::files::MAX_TEXT_BYTES)
        .map_err(|error| ReadError { path: path.into(), error })
}

fn permissions_help() -> String {
    format!("permissions are: {}", Permission::ALL.map(Permission::name).join(", "))
}

/// A project name: part of every engine name, joined to the rest with `_`,
/// so it never contains `_` (project `a` could otherwise reach `a_b`'s).
/// `test,debug` (or one name) as profiles, blanks and repeats left out.
fn split_profiles(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub(crate) fn valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A folder name made into a project name.
fn sanitize_name(folder: &str) -> String {
    let name: String = folder.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(63).collect();
    let name = name.trim_start_matches('-').to_string();
    if name.is_empty() { "stack".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Stack, StackError> {
        parse_for(text, None, &[])
    }

    fn parse_for(text: &str, profile: Option<&str>, vars: &[(&str, &str)]) -> Result<Stack, StackError> {
        Stack::parse(Path::new("stack.toml"), PathBuf::from("/work/shop"), text.into(), profile, &Variables::fixed(vars))
    }

    #[test]
    fn profiles_select_services_and_merge_overrides() {
        let text = "[stack]\nprofile = \"test\"\n[services.db]\nplugin = \"postgres\"\nport = 5432\ntuning = { fsync = \"on\", work_mem = \"4MB\" }\n\
                    [services.db.profiles.test]\nport = 5433\ntuning = { fsync = \"off\" }\n[services.adminer]\nprofiles = [\"dev\"]\n";
        let test = parse_for(text, None, &[]).unwrap();
        assert_eq!(test.profile, "test");
        assert!(test.service("adminer").is_none());
        let db = test.service("db").unwrap();
        assert_eq!(db.config, serde_json::json!({"port": 5433, "tuning": {"fsync": "off", "work_mem": "4MB"}}));
        // An error about the merged key points at the override's line.
        let err = test.error_at("services.db.port", "m", "l", None);
        assert_eq!(err.span.offset(), text.find("port = 5433").unwrap());

        let dev = parse_for(text, Some("dev"), &[]).unwrap();
        assert_eq!(dev.service("db").unwrap().config["port"], 5432);
        assert!(dev.service("adminer").is_some());
    }

    #[test]
    fn an_unset_variable_without_a_default_is_warned_about_at_its_line() {
        let text = "[services.cache]\nplugin = \"redis\"\ncommand = \"redis-server --requirepass $REDIS_PASSWORD\"\n\
                    password = \"${PW:-}${SET}\"\n";
        let stack = parse_for(text, None, &[("SET", "x")]).unwrap();
        assert_eq!(stack.service("cache").unwrap().config["command"], "redis-server --requirepass ");
        assert_eq!(stack.warnings.len(), 1, "{:?}", stack.warnings);
        assert!(stack.warnings[0].starts_with("stack.toml:3: `services.cache.command`: variable REDIS_PASSWORD is not set"), "{:?}", stack.warnings);
    }

    #[test]
    fn several_profiles_are_active_at_once_and_the_first_is_the_plugins() {
        // compose's profiles: app in frontend uses db in backend.
        let text = "[stack]\nprofile = [\"dev\", \"frontend\", \"backend\"]\n[services.app]\nprofiles = [\"frontend\"]\n\
                    [services.db]\nplugin = \"postgres\"\nprofiles = [\"backend\"]\n[services.tools]\nprofiles = [\"debug\"]\n\
                    [services.cache]\nplugin = \"redis\"\nmaxmemory = \"64mb\"\n[services.cache.profiles.test]\nmaxmemory = \"8mb\"\n\
                    [services.cache.profiles.debug]\nmaxmemory = \"16mb\"\n";
        let default = parse_for(text, None, &[]).unwrap();
        assert_eq!((default.profile.as_str(), default.profiles.len()), ("dev", 3));
        let names = |s: &Stack| s.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(" ");
        assert_eq!(names(&default), "app db cache");
        // Asked for: instead of the stack's; overrides merge in that order.
        let asked = parse_for(text, Some("test, debug,test"), &[]).unwrap();
        assert_eq!((asked.profile.as_str(), asked.profiles.clone()), ("test", vec!["test".to_string(), "debug".into()]));
        assert_eq!(names(&asked), "tools cache");
        assert_eq!(asked.service("cache").unwrap().config["maxmemory"], "16mb");
        let err = parse_for("[services.app]\nprofiles = [\"frontend\"]\n", Some("a,b"), &[]).unwrap_err();
        assert!(err.message.contains("no services in profiles `a`, `b`"), "{}", err.message);
    }

    #[test]
    fn variables_fill_strings_and_a_missing_one_names_its_key() {
        let text = "[services.db]\nplugin = \"postgres\"\nimage = \"${IMAGE:-postgres:16}\"\npassword = \"${TOKEN:?set TOKEN}\"\n";
        let stack = parse_for(text, None, &[("TOKEN", "t0k")]).unwrap();
        assert_eq!(stack.service("db").unwrap().config, serde_json::json!({"image": "postgres:16", "password": "t0k"}));
        let err = parse_for(text, None, &[]).unwrap_err();
        assert_eq!(err.message, "variable TOKEN is required: set TOKEN");
        assert_eq!(err.span.offset(), text.find("password").unwrap());
    }

    #[test]
    fn service_config_excludes_host_keys_and_keeps_the_rest() {
        let stack = parse("[services.db]\nplugin = \"postgres\"\nuses = []\nversion = 16\n[services.db.tuning]\nmax_connections = 50\n").unwrap();
        assert_eq!(stack.name, "shop");
        let db = stack.service("db").unwrap();
        assert_eq!(db.plugin, "postgres");
        assert_eq!(db.config, serde_json::json!({"version": 16, "tuning": {"max_connections": 50}}));
    }

    #[test]
    fn errors_point_at_the_key() {
        let err = parse("[stack]\nname = \"x\"\nnmae = 1\n[services.db]\n").unwrap_err();
        assert_eq!(err.message, "unknown key `nmae`");
        assert_eq!(err.span.offset(), "[stack]\nname = \"x\"\n".len());
    }

    #[test]
    fn nested_keys_fall_back_to_their_parent() {
        let stack = parse("[services.db]\ntuning = { max_connections = 5 }\n").unwrap();
        let err = stack.error_at("services.db.tuning.shared_buffers", "m", "l", None);
        assert_eq!(err.span.offset(), "[services.db]\n".len());
    }
}
