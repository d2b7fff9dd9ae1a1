//! nginx as a reverse proxy in front of one service: the config is generated
//! and placed in the container (upstream, proxy headers, WebSocket upgrade,
//! body size, `/health`, optional TLS), with security headers and per-path
//! rate limits.

use std::{collections::BTreeMap, fmt::Write as _};

use provision_sdk::{export, prelude::*};

/// A reverse proxy.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_image")]
    image: String,
    /// Host port to publish 80 on; 0 for any free port. Default: 8080 in the
    /// dev profile, any free port otherwise.
    port: Option<u16>,
    /// Largest request body, nginx syntax.
    #[serde(default = "default_body_size")]
    client_max_body_size: String,
    /// X-Frame-Options DENY, X-Content-Type-Options nosniff, Referrer-Policy
    /// strict-origin-when-cross-origin (and HSTS with TLS).
    #[serde(default = "yes")]
    security_headers: bool,
    /// Requests per client address, by path prefix:
    /// `"/api" = { rate = "100r/m", burst = 20 }`. Over the limit: 429.
    #[serde(default)]
    rate_limits: BTreeMap<String, RateLimit>,
    /// Serve HTTPS on 443 with a certificate and key from the project folder.
    tls: Option<Tls>,
    /// Image of the Prometheus exporter run beside nginx when a monitoring
    /// service collects this one.
    #[serde(default = "default_exporter_image")]
    exporter_image: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    /// nginx rate: "5r/m", "10r/s".
    rate: String,
    /// Requests allowed over the rate before refusing.
    #[serde(default)]
    burst: u32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Tls {
    /// PEM certificate, relative to stack.toml.
    cert: String,
    /// PEM private key, relative to stack.toml.
    key: String,
    /// Host port to publish 443 on. Default: 8443 in dev, any free port otherwise.
    port: Option<u16>,
}

fn default_image() -> String {
    "nginx:1.25-alpine".into()
}

fn default_exporter_image() -> String {
    "nginx/nginx-prometheus-exporter:1.0.0".into()
}

fn default_body_size() -> String {
    "10m".into()
}

fn yes() -> bool {
    true
}

/// What every proxied location does.
const PROXY: &str = "\
proxy_pass http://app;
proxy_http_version 1.1;
proxy_set_header Host $host;
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
";

/// stub_status for the exporter, on a port that is not published.
const STATUS_PORT: u16 = 8081;

struct Nginx;

impl Plugin for Nginx {
    type Config = Config;

    fn info() -> Info {
        Info::new("nginx", env!("CARGO_PKG_VERSION"), "nginx reverse proxy with security headers and rate limits")
            // Ready: starting beside a booting app only takes CPU from it.
            .uses("upstream", "The HTTP service to proxy to (its `url` output)", &[], WaitFor::Ready, false)
            .output("url", "http:// URL of the proxy on the project network")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let upstream = binding(request, "upstream").ok_or_else(|| PlanError::UnusableBinding("no upstream to proxy to".into()))?;
        let url = upstream
            .output("url")
            .ok_or_else(|| PlanError::UnusableBinding(format!("upstream `{}` has no `url` output to proxy to", upstream.service)))?;
        // The address goes into nginx.conf: only a plain HOST:PORT, so an
        // upstream's output cannot add directives or server blocks.
        let address = url.strip_prefix("http://").map(|a| a.trim_end_matches('/')).filter(|a| host_port(a)).ok_or_else(|| {
            PlanError::UnusableBinding(format!("upstream `{}` has url {url:?}; nginx proxies to http://HOST:PORT", upstream.service))
        })?;
        for (prefix, limit) in &config.rate_limits {
            if !prefix.starts_with('/') || prefix.contains(char::is_whitespace) {
                return Err(config_error(format!("rate_limits.{prefix}"), "a path prefix starts with `/`, e.g. \"/api\""));
            }
            check_rate(&limit.rate).map_err(|m| config_error(format!("rate_limits.{prefix}.rate"), m))?;
        }
        check_size(&config.client_max_body_size).map_err(|m| config_error("client_max_body_size", m))?;

        let dev = request.profile == "dev";
        let mut server = Container::new("server", &config.image)
            .port(80, Some(config.port.unwrap_or(if dev { 8080 } else { 0 })))
            .file("/etc/nginx/conf.d/default.conf", site(&config, address, request.collected), 0o644)
            .file("/etc/nginx/conf.d/proxy.inc", PROXY, 0o644)
            .health(HealthCheck::http(80, "/health"));
        if let Some(tls) = &config.tls {
            server = server
                .mount(MountSource::Bind(tls.cert.clone()), "/etc/nginx/tls/cert.pem", true)
                .mount(MountSource::Bind(tls.key.clone()), "/etc/nginx/tls/key.pem", true)
                .port(443, Some(tls.port.unwrap_or(if dev { 8443 } else { 0 })));
        }
        let mut plan = ServicePlan { containers: vec![server], ..ServicePlan::default() };
        let service = &request.service;
        if request.collected {
            let mut exporter = Container::new("exporter", &config.exporter_image)
                .command([format!("--nginx.scrape-uri=http://{service}-server:{STATUS_PORT}/stub_status")])
                .health(HealthCheck::http(9113, "/metrics"));
            // It exits when nginx does not answer yet; nginx starts beside it.
            exporter.restart = RestartPolicy::OnFailure;
            plan.containers.push(exporter);
            plan.metrics("exporter", 9113, "/metrics");
        }
        plan.output("url", format!("http://{service}:80"));
        Ok(plan)
    }
}

/// The server blocks, in /etc/nginx/conf.d (inside nginx's `http` block).
/// `HOST:PORT` with a DNS host name and a port number, nothing else.
fn host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else { return false };
    let host_ok = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn site(config: &Config, upstream: &str, status: bool) -> String {
    let mut conf = String::from("# Generated by provision's nginx plugin.\n");
    conf.push_str("map $http_upgrade $connection_upgrade {\n    default upgrade;\n    '' '';\n}\n\n");
    conf.push_str(&format!("upstream app {{\n    server {upstream};\n    keepalive 16;\n}}\n\n"));
    let zones: Vec<(String, &String, &RateLimit)> = config.rate_limits.iter().map(|(prefix, limit)| (zone_name(prefix), prefix, limit)).collect();
    for (zone, _, limit) in &zones {
        writeln!(conf, "limit_req_zone $binary_remote_addr zone={zone}:10m rate={};", limit.rate).unwrap();
    }
    if !zones.is_empty() {
        conf.push_str("limit_req_status 429;\n\n");
    }

    let mut common = String::new();
    writeln!(common, "    client_max_body_size {};", config.client_max_body_size).unwrap();
    if config.security_headers {
        for (name, value) in
            [("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "strict-origin-when-cross-origin")]
        {
            // Ours replace the app's own, so a client never sees two.
            writeln!(common, "    add_header {name} \"{value}\" always;\n    proxy_hide_header {name};").unwrap();
        }
    }
    common.push_str("    location = /health {\n        access_log off;\n        default_type text/plain;\n        return 200 \"ok\\n\";\n    }\n");
    for (zone, prefix, limit) in &zones {
        let burst = if limit.burst > 0 { format!(" burst={} nodelay", limit.burst) } else { String::new() };
        writeln!(common, "    location {prefix} {{\n        limit_req zone={zone}{burst};\n        include /etc/nginx/conf.d/proxy.inc;\n    }}")
            .unwrap();
    }
    common.push_str("    location / {\n        include /etc/nginx/conf.d/proxy.inc;\n    }\n");

    conf.push_str("server {\n    listen 80;\n");
    conf.push_str(&common);
    conf.push_str("}\n");
    if config.tls.is_some() {
        conf.push_str(
            "\nserver {\n    listen 443 ssl;\n    ssl_certificate /etc/nginx/tls/cert.pem;\n    ssl_certificate_key /etc/nginx/tls/key.pem;\n",
        );
        if config.security_headers {
            conf.push_str("    add_header Strict-Transport-Security \"max-age=31536000\" always;\n");
        }
        conf.push_str(&common);
        conf.push_str("}\n");
    }
    if status {
        writeln!(
            conf,
            "\nserver {{\n    listen {STATUS_PORT};\n    location = /stub_status {{\n        stub_status;\n        access_log off;\n    }}\n}}"
        )
        .unwrap();
    }
    conf
}

/// `/api/v1` → `api_v1`, `/` → `root`.
fn zone_name(prefix: &str) -> String {
    let name: String = prefix.trim_matches('/').chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if name.is_empty() { "root".into() } else { name }
}

fn check_rate(rate: &str) -> Result<(), String> {
    let ok = rate
        .strip_suffix("r/s")
        .or_else(|| rate.strip_suffix("r/m"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && n != "0");
    if ok { Ok(()) } else { Err(format!("expected requests per second or minute such as \"100r/m\" or \"10r/s\", found {rate:?}")) }
}

fn check_size(size: &str) -> Result<(), String> {
    let digits = size.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    let ok = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && size.len() - digits.len() <= 1;
    if ok { Ok(()) } else { Err(format!("expected a size such as \"10m\", found {size:?}")) }
}

export!(Nginx);
