//! PostgreSQL, on the official image's contract (`postgres:<version>-alpine`:
//! POSTGRES_USER / PASSWORD / DB, initdb on first start,
//! /docker-entrypoint-initdb.d).

use std::collections::BTreeMap;

use provision_sdk::{export, prelude::*};

/// A PostgreSQL server.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Major version; selects the image `postgres:<version>-alpine`.
    #[serde(default = "default_version")]
    version: u32,
    /// Image to run instead of the official one (a mirror, a stand-in).
    image: Option<String>,
    /// Database created on first start.
    #[serde(default = "default_name")]
    database: String,
    /// Superuser created on first start.
    #[serde(default = "default_name")]
    user: String,
    /// Password of `user`. Absent: a generated secret, stable per project.
    password: Option<String>,
    /// Host port to publish 5432 on; 0 for any free port. Default: 5432 in
    /// the dev profile, any free port otherwise.
    port: Option<u16>,
    /// Extensions created in `database` once the server is ready.
    #[serde(default)]
    extensions: Vec<String>,
    /// Server settings, passed as `-c name=value`.
    #[serde(default)]
    tuning: Tuning,
    /// SQL or shell files (relative to stack.toml) run by initdb on first
    /// start, in the order given.
    #[serde(default)]
    init: Vec<String>,
    /// Keep data in memory with fsync off (fast, lost on stop). Default: on
    /// in the test and ci profiles.
    ephemeral: Option<bool>,
    /// Image of the Prometheus exporter run beside the server when a
    /// monitoring service collects this one.
    #[serde(default = "default_exporter_image")]
    exporter_image: String,
}

// No deny_unknown_fields: with `flatten` serde would refuse every key.
#[derive(Deserialize, JsonSchema, Default)]
struct Tuning {
    /// e.g. "256MB"
    shared_buffers: Option<String>,
    /// e.g. "1GB"
    effective_cache_size: Option<String>,
    max_connections: Option<u32>,
    /// Any other server setting, e.g. `work_mem = "8MB"`.
    #[serde(flatten)]
    other: BTreeMap<String, Setting>,
}

fn default_version() -> u32 {
    16
}

fn default_exporter_image() -> String {
    "prometheuscommunity/postgres-exporter:v0.15.0".into()
}

fn default_name() -> String {
    "app".into()
}

/// The image's PGDATA.
const DATA: &str = "/var/lib/postgresql/data";

/// Extensions that only load when preloaded at server start.
const PRELOADED: &[&str] = &["pg_stat_statements", "auto_explain", "pg_cron"];

struct Postgres;

impl Plugin for Postgres {
    type Config = Config;

    fn info() -> Info {
        Info::new("postgres", env!("CARGO_PKG_VERSION"), "PostgreSQL server (official postgres image contract)")
            .output("host", "Host name on the project network")
            .output("port", "Port on the project network")
            .output("user", "Superuser name")
            .secret_output("password", "Superuser password")
            .output("database", "Database name")
            .secret_output("url", "postgres:// connection URL for clients on the project network")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let ephemeral = config.ephemeral.unwrap_or(matches!(request.profile.as_str(), "test" | "ci"));
        let settings = server_settings(&config, ephemeral)?;
        let password = config.password.clone().unwrap_or_else(|| host::secret("password"));
        let image = config.image.clone().unwrap_or_else(|| format!("postgres:{}-alpine", config.version));
        let host_port = config.port.unwrap_or(if request.profile == "dev" { 5432 } else { 0 });

        let mut command = vec!["postgres".to_string()];
        for (name, value) in &settings {
            command.push("-c".into());
            command.push(format!("{name}={value}"));
        }

        let mut server = Container::new("server", image)
            .command(command)
            .env("POSTGRES_USER", &config.user)
            .env("POSTGRES_PASSWORD", &password)
            .env("POSTGRES_DB", &config.database)
            .port(5432, Some(host_port))
            // The host asks as pg_isready does, over TCP: the entrypoint's
            // initdb server listens on the socket only, so this cannot report
            // ready before initdb is done.
            .health(HealthCheck::postgres(5432));

        // From 18 the image keeps PGDATA in /var/lib/postgresql/18/docker
        // (docker-library/postgres#1259); named, it stays where the data
        // volume, the tmpfs and the snapshot are, whatever the version.
        if config.version >= 18 {
            server = server.env("PGDATA", DATA);
        }
        let mut plan = ServicePlan::default();
        if ephemeral {
            let tmpfs = MountSource::Tmpfs(Tmpfs { size_bytes: None, mode: Some(0o700) });
            server = server.mount(tmpfs, DATA, false);
        } else {
            plan.volume("data");
            server = server.mount(MountSource::Volume("data".into()), DATA, false);
        }
        for (i, path) in config.init.iter().enumerate() {
            let file = path.rsplit('/').next().unwrap_or(path);
            let target = format!("/docker-entrypoint-initdb.d/{:02}-{file}", i + 1);
            server = server.mount(MountSource::Bind(path.clone()), target, true);
        }
        // A snapshot's data, or a password changed in stack.toml, keeps the
        // password initdb set: set this project's on every start, with the
        // extensions in the same psql session (one exec, not two). The SQL
        // reaches psql as an argument and the password as a psql variable
        // from the container's env, so neither is parsed by a shell.
        let mut sql = format!("ALTER ROLE {} PASSWORD :'password';", quote_ident(&config.user));
        for extension in &config.extensions {
            sql.push_str(&format!("\nCREATE EXTENSION IF NOT EXISTS \"{extension}\";"));
        }
        let name = if config.extensions.is_empty() { "set password" } else { "set password, create extensions" };
        let psql_stdin = r#"printf '%s\n' "$0" | psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v password="$POSTGRES_PASSWORD""#;
        server = server.hook(name, ["sh", "-c", psql_stdin, &sql]);
        // initdb, init scripts and extensions take seconds; a copy of their
        // result starts in a fraction. pg_basebackup copies consistently
        // while the server runs (trust on the local socket is the image's).
        let key = format!("initdb database={:?} user={:?}", config.database, config.user);
        let backup = ["pg_basebackup", "-U", &config.user, "-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast", "--no-manifest"];
        server = server.snapshot(DATA, key, backup);
        plan.containers.push(server);

        let service = &request.service;
        if request.collected {
            // Scrapes retry on their own, so it needs no wait for the server.
            let source = format!("postgresql://{}:{}@{service}:5432/{}?sslmode=disable", config.user, password, config.database);
            let exporter =
                Container::new("exporter", &config.exporter_image).env("DATA_SOURCE_NAME", source).health(HealthCheck::http(9187, "/metrics"));
            plan.containers.push(exporter);
            plan.metrics("exporter", 9187, "/metrics");
        }
        plan.output("host", service);
        plan.output("port", "5432");
        plan.output("user", &config.user);
        plan.output("password", &password);
        plan.output("database", &config.database);
        plan.output("url", format!("postgres://{}:{}@{service}:5432/{}", config.user, password, config.database));
        Ok(plan)
    }
}

/// The `-c` settings, checked so that a typo fails in `plan`, not at start.
fn server_settings(config: &Config, ephemeral: bool) -> Result<BTreeMap<String, String>, PlanError> {
    let tuning = &config.tuning;
    let mut settings = BTreeMap::new();
    for (key, value) in [("shared_buffers", &tuning.shared_buffers), ("effective_cache_size", &tuning.effective_cache_size)] {
        if let Some(value) = value {
            check_size(value).map_err(|m| config_error(format!("tuning.{key}"), m))?;
            settings.insert(key.to_string(), value.clone());
        }
    }
    if let Some(n) = tuning.max_connections {
        if !(1..=262_143).contains(&n) {
            return Err(config_error("tuning.max_connections", format!("must be between 1 and 262143, found {n}")));
        }
        settings.insert("max_connections".into(), n.to_string());
    }
    for (key, value) in &tuning.other {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(config_error(format!("tuning.{key}"), "is not a PostgreSQL setting name"));
        }
        let value = value.render(("on", "off"));
        settings.insert(key.clone(), value);
    }
    for (i, name) in config.extensions.iter().enumerate() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(config_error(format!("extensions.{i}"), format!("{name:?} is not an extension name")));
        }
    }
    let preload: Vec<&str> = config.extensions.iter().map(String::as_str).filter(|e| PRELOADED.contains(e)).collect();
    if !preload.is_empty() && !settings.contains_key("shared_preload_libraries") {
        settings.insert("shared_preload_libraries".into(), preload.join(","));
    }
    if ephemeral {
        for (key, value) in [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")] {
            settings.entry(key.into()).or_insert_with(|| value.into());
        }
    }
    Ok(settings)
}

/// A PostgreSQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL memory units: a number with kB, MB, GB or TB.
fn check_size(value: &str) -> Result<(), String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || !["", "kB", "MB", "GB", "TB"].contains(&unit) {
        return Err(format!("expected a size such as \"256MB\" (units kB, MB, GB, TB), found {value:?}"));
    }
    Ok(())
}

export!(Postgres);
