//! Redis, on the official image's contract (`redis:<version>-alpine`, running
//! `redis-server` with arguments).

use std::collections::BTreeMap;

use provision_sdk::{export, prelude::*};

/// A Redis server.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Major version; selects the image `redis:<version>-alpine`.
    #[serde(default = "default_version")]
    version: u32,
    /// Image to run instead of the official one (a mirror, a stand-in).
    image: Option<String>,
    /// Host port to publish 6379 on; 0 for any free port. Default: 6379 in
    /// the dev profile, any free port otherwise.
    port: Option<u16>,
    /// Memory cap, e.g. "256mb".
    maxmemory: Option<String>,
    /// What to evict at the cap, e.g. "allkeys-lru".
    maxmemory_policy: Option<String>,
    /// "rdb" (snapshots by `save` rules), "aof" (append-only file) or "none".
    /// Default: "rdb" in dev and prod, "none" in test and ci.
    persistence: Option<Persistence>,
    /// Snapshot rules "SECONDS CHANGES", e.g. ["900 1", "300 10"]. Applied
    /// with rdb persistence (so not in the test and ci profiles unless
    /// `persistence = "rdb"`); Redis's own defaults when absent.
    #[serde(default)]
    save: Vec<String>,
    /// Any other redis.conf setting, passed as `--name value`, so it holds
    /// across restarts (one set by hand with CONFIG SET does not), e.g.
    /// { activedefrag = "yes", "lazyfree-lazy-eviction" = true }.
    #[serde(default)]
    settings: BTreeMap<String, Setting>,
    /// Image of the Prometheus exporter run beside the server when a
    /// monitoring service collects this one.
    #[serde(default = "default_exporter_image")]
    exporter_image: String,
}

/// Settings that have keys of their own here.
const OWN_KEYS: &[(&str, &str)] =
    &[("maxmemory", "maxmemory"), ("maxmemory-policy", "maxmemory_policy"), ("save", "save"), ("appendonly", "persistence"), ("port", "port")];

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Persistence {
    Rdb,
    Aof,
    None,
}

fn default_exporter_image() -> String {
    "oliver006/redis_exporter:v1.55.0".into()
}

fn default_version() -> u32 {
    7
}

const POLICIES: &[&str] =
    &["noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"];

struct Redis;

impl Plugin for Redis {
    type Config = Config;

    fn info() -> Info {
        Info::new("redis", env!("CARGO_PKG_VERSION"), "Redis server (official redis image contract)")
            .output("host", "Host name on the project network")
            .output("port", "Port on the project network")
            .output("url", "redis:// URL for clients on the project network")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let durable = !matches!(request.profile.as_str(), "test" | "ci");
        let persistence = config.persistence.unwrap_or(if durable { Persistence::Rdb } else { Persistence::None });
        let image = config.image.clone().unwrap_or_else(|| format!("redis:{}-alpine", config.version));
        let host_port = config.port.unwrap_or(if request.profile == "dev" { 6379 } else { 0 });

        let mut args: Vec<String> = vec!["redis-server".into()];
        if let Some(size) = &config.maxmemory {
            check_size(size).map_err(|m| config_error("maxmemory", m))?;
            args.extend(["--maxmemory".into(), size.clone()]);
        }
        if let Some(policy) = &config.maxmemory_policy {
            if !POLICIES.contains(&policy.as_str()) {
                let known = POLICIES.join(", ");
                return Err(config_error("maxmemory_policy", format!("unknown policy {policy:?}; use one of {known}")));
            }
            args.extend(["--maxmemory-policy".into(), policy.clone()]);
        }
        if !config.save.is_empty() && config.persistence.is_some_and(|p| p != Persistence::Rdb) {
            return Err(config_error("save", "save rules need persistence = \"rdb\""));
        }
        match persistence {
            Persistence::Rdb => {
                for (i, rule) in config.save.iter().enumerate() {
                    let parts: Vec<&str> = rule.split_whitespace().collect();
                    if parts.len() != 2 || !parts.iter().all(|p| p.parse::<u64>().is_ok()) {
                        let message = format!("expected \"SECONDS CHANGES\" such as \"900 1\", found {rule:?}");
                        return Err(config_error(format!("save.{i}"), message));
                    }
                    args.extend(["--save".into(), parts[0].into(), parts[1].into()]);
                }
                args.extend(["--appendonly".into(), "no".into()]);
            }
            Persistence::Aof => args.extend(["--appendonly".into(), "yes".into(), "--save".into(), String::new()]),
            Persistence::None => args.extend(["--appendonly".into(), "no".into(), "--save".into(), String::new()]),
        }

        for (name, value) in &config.settings {
            let key = format!("settings.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(config_error(key, "is not a redis.conf setting name (lower-case letters, digits and `-`)"));
            }
            if let Some((_, own)) = OWN_KEYS.iter().find(|(setting, _)| setting == name) {
                return Err(config_error(key, format!("has a key of its own here: use `{own}`")));
            }
            let value = value.render(("yes", "no"));
            args.extend([format!("--{name}"), value]);
        }

        let mut server = Container::new("server", image).command(args).port(6379, Some(host_port)).health(HealthCheck::redis(6379));
        let mut plan = ServicePlan::default();
        if persistence != Persistence::None {
            plan.volume("data");
            server = server.mount(MountSource::Volume("data".into()), "/data", false);
        }
        plan.containers.push(server);

        let service = &request.service;
        if request.collected {
            let exporter = Container::new("exporter", &config.exporter_image)
                .env("REDIS_ADDR", format!("redis://{service}:6379"))
                .health(HealthCheck::http(9121, "/metrics"));
            plan.containers.push(exporter);
            plan.metrics("exporter", 9121, "/metrics");
        }
        plan.output("host", service);
        plan.output("port", "6379");
        plan.output("url", format!("redis://{service}:6379/0"));
        Ok(plan)
    }
}

/// Redis memory units: a number with an optional b, k, kb, m, mb, g or gb.
fn check_size(value: &str) -> Result<(), String> {
    let lower = value.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || !["", "b", "k", "kb", "m", "mb", "g", "gb"].contains(&unit) {
        return Err(format!("expected a size such as \"256mb\", found {value:?}"));
    }
    Ok(())
}

export!(Redis);
