//! Built-in recognition: a postgres or redis service becomes its plugin when
//! the plugin can say everything the compose service sets (version from the
//! tag, settings from the command, database and role from the image's
//! variables); else it stays a generic `container`, with the reason reported.

use std::{collections::BTreeMap, path::PathBuf};

use serde_yaml_ng::{Mapping, Value};
use toml::{Table, Value as Toml};

use super::{Draft, Kind, Mapper};
use crate::import::load::{scalar, sequence};

impl Mapper<'_> {
    /// Postgres or redis when the image is one and the built-in can say
    /// everything the service sets; else the generic container, with the
    /// reason in the report.
    pub(super) fn kind(&mut self, at: &str, svc: &Mapping, env: &BTreeMap<String, Option<String>>) -> Kind {
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
                Kind::Builtin(Builtin { plugin, version, image, settings })
            }
            (Some(reason), _) | (None, Err(reason)) => {
                self.mapped(format!("{at}.image"), format!("kept as a `container` (image {image}): {reason}"));
                Kind::Container
            }
        }
    }

    /// A built-in's version, image and settings (read from its command).
    pub(super) fn builtin(&mut self, d: &mut Draft, builtin: Builtin) {
        let (at, svc) = (d.at.clone(), d.svc);
        let Builtin { plugin, version, image, settings } = builtin;
        d.handled.extend(["image", "command", "healthcheck"]);
        if let Some(v) = version {
            d.table.insert("version".into(), Toml::Integer(v.into()));
        }
        if let Some(image) = image {
            d.table.insert("image".into(), image.into());
        }
        self.mapped(format!("{at}.image"), format!("plugin = \"{plugin}\" (version from the tag)"));
        let (settings_keys, probe) = match plugin {
            "postgres" => ("tuning (its -c settings)", "the PostgreSQL protocol"),
            _ => ("maxmemory, maxmemory_policy, save, persistence", "Redis PING"),
        };
        if plugin == "postgres" {
            d.handled.insert("user");
            self.postgres(&at, svc, &mut d.env, &mut d.table);
        }
        d.table.extend(settings);
        if svc.contains_key("command") {
            self.mapped(format!("{at}.command"), settings_keys);
        }
        if svc.contains_key("healthcheck") {
            self.approximated(format!("{at}.healthcheck"), format!("the plugin's own readiness check: {probe}, probed by the host"));
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
}

/// What a built-in takes from a compose service.
pub(super) struct Builtin {
    pub plugin: &'static str,
    pub version: Option<u32>,
    /// The image, when it is not the one the plugin picks.
    pub image: Option<String>,
    /// The keys read from the command.
    pub settings: Table,
}

/// The port a built-in's server listens on (and publishes in dev).
pub(super) fn plugin_port(table: &Table) -> u16 {
    match table.get("plugin").and_then(Toml::as_str) {
        Some("postgres") => 5432,
        _ => 6379,
    }
}

/// The paths a built-in mounts its data at (a compose volume there takes
/// its place).
pub(super) fn plugin_mounts(table: &Table) -> Vec<&'static str> {
    match table.get("plugin").and_then(Toml::as_str) {
        Some("postgres") => vec!["/var/lib/postgresql/data"],
        Some("redis") => vec!["/data"],
        _ => vec![],
    }
}

/// The extensions of a hook that is the postgres plugin's own (a psql
/// session setting the role's password and creating extensions), else None.
pub(super) fn postgres_extensions(words: &[String]) -> Option<Vec<String>> {
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
            // As written: the loader kept the command's variables.
            Err(_) => Toml::String(v.to_string()),
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

#[cfg(test)]
mod tests {
    use super::super::{Status, tests::one};
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
    }

    #[test]
    fn a_postgres_service_becomes_the_plugin_with_its_database_role_and_password() {
        let yaml = "services:\n  db:\n    image: postgres:16-alpine\n    environment: {POSTGRES_USER: app, POSTGRES_PASSWORD: '${DB_PASSWORD}'}\n";
        let (db, entry) = one(yaml, "environment.POSTGRES_PASSWORD");
        assert_eq!(db["plugin"].as_str(), Some("postgres"));
        assert_eq!(db["version"].as_integer(), Some(16));
        assert!(db.get("image").is_none(), "the plugin's own image needs no `image`");
        assert_eq!(db["user"].as_str(), Some("app"));
        assert_eq!(db["database"].as_str(), Some("app"), "POSTGRES_DB defaults to the user, as the image's does");
        assert_eq!(db["password"].as_str(), Some("${DB_PASSWORD}"), "a variable stays a variable");
        assert_eq!(entry.map(|e| e.0), Some(Status::Mapped));
    }

    #[test]
    fn a_setting_the_plugin_has_no_key_for_keeps_the_service_a_container_and_says_why() {
        let yaml = "services:\n  db:\n    image: postgres:16\n    environment: {POSTGRES_HOST_AUTH_METHOD: trust}\n";
        let (db, entry) = one(yaml, "image");
        assert_eq!(db["plugin"].as_str(), Some("container"));
        let (status, detail) = entry.unwrap();
        assert_eq!(status, Status::Mapped);
        assert!(detail.contains("POSTGRES_HOST_AUTH_METHOD"), "{detail}");
    }
}
