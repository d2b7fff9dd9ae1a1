//! nginx as a reverse proxy: the config is generated and placed in the
//! container (routes by path prefix to services, proxy headers, WebSocket
//! upgrade, body size, `/health`, static folders, optional TLS), with
//! security headers, headers of the user's, and per-path rate limits.
//! Upstreams are resolved through the engine's DNS every second, so every
//! replica of a service gets requests, also after it is scaled.

use std::{collections::BTreeMap, fmt::Write as _};

use provision_sdk::{export, prelude::*, types::LogLevel};

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
    /// Path prefix → service (with a `url` output) it is proxied to:
    /// `routes = { "/" = "frontend", "/api" = "backend" }`. The longest
    /// prefix wins. Default: `/` to the `upstream` named in `uses`.
    #[serde(default)]
    routes: BTreeMap<String, String>,
    /// Response headers added to every answer, replacing the app's own and
    /// the security defaults of the same name:
    /// `headers = { "Content-Security-Policy" = "default-src 'self'" }`.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Path prefix → project folder served as static files (read-only):
    /// `locations = { "/static" = "public" }`.
    #[serde(default)]
    locations: BTreeMap<String, String>,
    /// Path prefix → how long browsers may keep what it serves (nginx
    /// `expires`): `expires = { "/static/" = "30d", "/uploads/" = "7d" }`.
    #[serde(default)]
    expires: BTreeMap<String, String>,
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
    /// Answer plain HTTP (all but /health) with a redirect to HTTPS on that
    /// port. Left out, with a warning, where the port is any free one: the
    /// redirect has to name it.
    #[serde(default)]
    redirect: bool,
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

/// What every proxied location does (after `proxy_pass`). A replica that
/// is gone (scaled down, recreated) may stay in the resolver's answer for
/// its second: connecting to its address would hang until the kernel gives
/// up (seconds), so a connect that takes longer than a live container on
/// the engine's network ever does moves on to the next replica instead
/// (`proxy_next_upstream error timeout` is nginx's default).
const PROXY: &str = "\
proxy_connect_timeout 300ms;
proxy_http_version 1.1;
proxy_set_header Host $host;
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
";

/// What the host probes: answered by nginx itself, on every server.
const HEALTH: &str = "    location = /health {\n        access_log off;\n        default_type text/plain;\n        return 200 \"ok\\n\";\n    }\n";

/// stub_status for the exporter, on a port that is not published.
const STATUS_PORT: u16 = 8081;

struct Nginx;

impl Plugin for Nginx {
    type Config = Config;

    fn info() -> Info {
        Info::new("nginx", env!("CARGO_PKG_VERSION"), "nginx reverse proxy with security headers and rate limits")
            // Ready: starting beside a booting app only takes CPU from it.
            .uses("upstream", "The HTTP service to proxy `/` to (its `url` output)", &[], WaitFor::Ready, Need::Optional)
            .uses_named_in("route", "The services `routes` proxies to (their `url` outputs)", "routes", WaitFor::Ready)
            .output("url", "http:// URL of the proxy on the project network")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let routes = routes(request, &config)?;
        for (prefix, limit) in &config.rate_limits {
            check_prefix(prefix).map_err(|m| config_error(format!("rate_limits.{prefix}"), m))?;
            check_rate(&limit.rate).map_err(|m| config_error(format!("rate_limits.{prefix}.rate"), m))?;
        }
        for (name, value) in &config.headers {
            check_header(name, value).map_err(|m| config_error(format!("headers.{name}"), m))?;
        }
        for prefix in config.locations.keys() {
            check_prefix(prefix).map_err(|m| config_error(format!("locations.{prefix}"), m))?;
        }
        for (prefix, time) in &config.expires {
            check_prefix(prefix).map_err(|m| config_error(format!("expires.{prefix}"), m))?;
            check_time(time).map_err(|m| config_error(format!("expires.{prefix}"), m))?;
        }
        check_size(&config.client_max_body_size).map_err(|m| config_error("client_max_body_size", m))?;

        let dev = request.profile == "dev";
        let https_port = config.tls.as_ref().map(|tls| tls.port.unwrap_or(if dev { 8443 } else { 0 }));
        let redirect_to = match (&config.tls, https_port) {
            (Some(tls), Some(0)) if tls.redirect => {
                host::log(LogLevel::Warn, "tls.redirect is left out: HTTPS is on any free port here, which a redirect cannot name");
                None
            }
            (Some(tls), port) if tls.redirect => port,
            _ => None,
        };
        let mut server = Container::new("server", &config.image)
            .port(80, Some(config.port.unwrap_or(if dev { 8080 } else { 0 })))
            .file("/etc/nginx/conf.d/default.conf", site(&config, &routes, request.collected, redirect_to), 0o644)
            .file("/etc/nginx/conf.d/proxy.inc", PROXY, 0o644)
            .health(HealthCheck::http(80, "/health"));
        for (i, folder) in config.locations.values().enumerate() {
            server = server.mount(MountSource::Bind(folder.clone()), format!("/srv/locations/{i}"), true);
        }
        if let Some(tls) = &config.tls {
            server = server
                .mount(MountSource::Bind(tls.cert.clone()), "/etc/nginx/tls/cert.pem", true)
                .mount(MountSource::Bind(tls.key.clone()), "/etc/nginx/tls/key.pem", true)
                .port(443, https_port);
        }
        let mut plan = ServicePlan { containers: vec![server], ..ServicePlan::default() };
        // A new certificate is read on reload; static folders are served
        // as they are, and the config is the plan's (a change is an `up`).
        if let Some(tls) = &config.tls {
            for file in [&tls.cert, &tls.key] {
                plan.watch(file, [WatchAction::Exec(["nginx", "-s", "reload"].map(String::from).to_vec())]);
            }
        }
        for folder in config.locations.values() {
            plan.watch(project_path(folder, ""), []);
        }
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

/// Path prefix → `HOST:PORT` of the service it goes to: `routes`, and the
/// `upstream` at `/` unless a route takes `/`.
fn routes(request: &Request, config: &Config) -> Result<BTreeMap<String, String>, PlanError> {
    let mut routes = BTreeMap::new();
    for (prefix, service) in &config.routes {
        check_prefix(prefix).map_err(|m| config_error(format!("routes.{prefix}"), m))?;
        let bound = request.bindings.iter().find(|b| b.role == "route" && &b.service == service);
        let bound = bound.ok_or_else(|| config_error(format!("routes.{prefix}"), format!("`{service}` is not bound to this proxy")))?;
        routes.insert(prefix.clone(), address(bound)?);
    }
    if let Some(upstream) = binding(request, "upstream")
        && !routes.contains_key("/")
    {
        routes.insert("/".into(), address(upstream)?);
    }
    if routes.is_empty() && config.locations.is_empty() {
        return Err(config_error("routes", "nothing to serve: add routes = { \"/\" = \"SERVICE\" }, or uses = [\"SERVICE\"], or locations"));
    }
    Ok(routes)
}

/// The `HOST:PORT` of a bound service's `url`. It goes into nginx.conf: only
/// a plain HOST:PORT, so an upstream's output cannot add directives.
fn address(upstream: &Binding) -> Result<String, PlanError> {
    let service = &upstream.service;
    let url = upstream.output("url").ok_or_else(|| PlanError::UnusableBinding(format!("`{service}` has no `url` output to proxy to")))?;
    let address = url.strip_prefix("http://").map(|a| a.trim_end_matches('/')).filter(|a| host_port(a));
    let address = address.ok_or_else(|| PlanError::UnusableBinding(format!("`{service}` has url {url:?}; nginx proxies to http://HOST:PORT")))?;
    Ok(address.to_string())
}

/// `HOST:PORT` with a DNS host name and a port number, nothing else.
fn host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else { return false };
    let host_ok = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// The server blocks, in /etc/nginx/conf.d (inside nginx's `http` block).
/// `redirect_to`: the host port plain HTTP is sent to HTTPS on.
fn site(config: &Config, routes: &BTreeMap<String, String>, status: bool, redirect_to: Option<u16>) -> String {
    let mut conf = String::from("# Generated by provision's nginx plugin.\n");
    conf.push_str("map $http_upgrade $connection_upgrade {\n    default upgrade;\n    '' '';\n}\n\n");
    // The engine's DNS, asked again every second: a scaled or recreated
    // upstream's replicas are all found, and none is kept after it is gone.
    conf.push_str("resolver 127.0.0.11 valid=1s ipv6=off;\nresolver_timeout 2s;\n\n");
    let mut zones: Vec<(String, &String, &RateLimit)> = Vec::new();
    for (prefix, limit) in &config.rate_limits {
        let zone = zone_name(prefix, &|name| zones.iter().any(|(z, _, _)| z == name));
        zones.push((zone, prefix, limit));
    }
    for (zone, _, limit) in &zones {
        writeln!(conf, "limit_req_zone $binary_remote_addr zone={zone}:10m rate={};", limit.rate).unwrap();
    }
    if !zones.is_empty() {
        conf.push_str("limit_req_status 429;\n\n");
    }

    let mut common = String::new();
    writeln!(common, "    client_max_body_size {};", config.client_max_body_size).unwrap();
    let mut headers: BTreeMap<&str, &str> = BTreeMap::new();
    if config.security_headers {
        for (name, value) in
            [("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "strict-origin-when-cross-origin")]
        {
            headers.insert(name, value);
        }
    }
    for (name, value) in &config.headers {
        headers.retain(|known, _| !known.eq_ignore_ascii_case(name));
        headers.insert(name, value);
    }
    for (name, value) in &headers {
        // Ours replace the app's own, so a client never sees two.
        writeln!(common, "    add_header {name} \"{value}\" always;\n    proxy_hide_header {name};").unwrap();
    }
    common.push_str(HEALTH);
    // Every prefix gets a location: routes, rate limits (proxied to the
    // route they fall under) and static folders.
    let mut prefixes: BTreeMap<&str, String> = BTreeMap::new();
    for (i, prefix) in config.locations.keys().enumerate() {
        // `alias` swaps the prefix for the folder: both end in `/` or neither.
        let slash = if prefix.ends_with('/') { "/" } else { "" };
        prefixes.insert(prefix, format!("        alias /srv/locations/{i}{slash};\n"));
    }
    let proxied = |prefix: &str| {
        let target = routes.iter().filter(|(route, _)| prefix.starts_with(route.as_str())).max_by_key(|(route, _)| route.len());
        target.map(|(_, address)| {
            format!("        set $upstream http://{address};\n        proxy_pass $upstream;\n        include /etc/nginx/conf.d/proxy.inc;\n")
        })
    };
    for prefix in routes.keys().chain(config.rate_limits.keys()).chain(config.expires.keys()) {
        if !prefixes.contains_key(prefix.as_str())
            && let Some(body) = proxied(prefix)
        {
            prefixes.insert(prefix, body);
        }
    }
    for (prefix, body) in &prefixes {
        let limit = zones.iter().find(|(_, p, _)| p.as_str() == *prefix).map(|(zone, _, limit)| {
            let burst = if limit.burst > 0 { format!(" burst={} nodelay", limit.burst) } else { String::new() };
            format!("        limit_req zone={zone}{burst};\n")
        });
        let expires = config.expires.get(*prefix).map(|time| format!("        expires {time};\n")).unwrap_or_default();
        writeln!(common, "    location {prefix} {{\n{}{expires}{body}    }}", limit.unwrap_or_default()).unwrap();
    }

    conf.push_str("server {\n    listen 80;\n");
    match redirect_to {
        // The host's health probe stays on plain HTTP.
        Some(port) => {
            let port = if port == 443 { String::new() } else { format!(":{port}") };
            writeln!(conf, "{HEALTH}    location / {{\n        return 301 https://$host{port}$request_uri;\n    }}").unwrap();
        }
        None => conf.push_str(&common),
    }
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

/// A location prefix: starts with `/`, no spaces, quotes, braces or `;`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let plain = prefix.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c));
    if prefix.starts_with('/') && plain { Ok(()) } else { Err("a path prefix starts with `/`, e.g. \"/api\"".into()) }
}

/// A header name and a value nginx keeps as written (no `$` variables).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("{name:?} is not a header name"));
    }
    if value.chars().any(|c| c.is_control() || c == '"' || c == '\\' || c == '$') {
        return Err("a header value cannot hold quotes, backslashes, `$` or control characters".into());
    }
    Ok(())
}

/// `/api/v1` → `api_v1`, `/` → `root`; a name `taken` already (`/login`
/// and `/login/` both read `login`) gets the first free `_2`, `_3`…, since
/// nginx refuses a zone declared twice.
fn zone_name(prefix: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let name: String = prefix.trim_matches('/').chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let name = if name.is_empty() { "root".to_string() } else { name };
    (1..).map(|n| if n == 1 { name.clone() } else { format!("{name}_{n}") }).find(|candidate| !taken(candidate)).expect("a free name")
}

fn check_rate(rate: &str) -> Result<(), String> {
    let ok = rate
        .strip_suffix("r/s")
        .or_else(|| rate.strip_suffix("r/m"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && n != "0");
    if ok { Ok(()) } else { Err(format!("expected requests per second or minute such as \"100r/m\" or \"10r/s\", found {rate:?}")) }
}

/// An nginx time for `expires`: "30d", "12h", "90s", "1y", or max, off, epoch.
fn check_time(time: &str) -> Result<(), String> {
    let digits = time.trim_end_matches(['s', 'm', 'h', 'd', 'w', 'M', 'y']);
    let number = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && time.len() - digits.len() <= 1;
    if number || ["max", "off", "epoch"].contains(&time) {
        Ok(())
    } else {
        Err(format!("expected a time such as \"30d\" or \"12h\" (or max, off, epoch), found {time:?}"))
    }
}

fn check_size(size: &str) -> Result<(), String> {
    let digits = size.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    let ok = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && size.len() - digits.len() <= 1;
    if ok { Ok(()) } else { Err(format!("expected a size such as \"10m\", found {size:?}")) }
}

export!(Nginx);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rate_limit_has_a_zone_of_its_own() {
        let config: Config =
            serde_json::from_str(r#"{"rate_limits": {"/login": {"rate": "5r/m"}, "/login/": {"rate": "1r/s"}, "/login_2": {"rate": "2r/s"}}}"#)
                .unwrap();
        let conf = site(&config, &BTreeMap::from([("/".to_string(), "web:3000".to_string())]), false, None);
        let mut zones: Vec<&str> =
            conf.lines().filter_map(|l| l.strip_prefix("limit_req_zone $binary_remote_addr zone=")).map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(zones.len(), 3, "{conf}");
        zones.sort_unstable();
        zones.dedup();
        assert_eq!(zones.len(), 3, "two prefixes share a zone: {conf}");
    }

    #[test]
    fn expires_is_per_location_and_the_redirect_keeps_health_on_http() {
        let config: Config = serde_json::from_str(
            r#"{"locations": {"/static/": "public"}, "expires": {"/static/": "30d", "/uploads/": "7d"}, "tls": {"cert": "c", "key": "k", "redirect": true}}"#,
        )
        .unwrap();
        let conf = site(&config, &BTreeMap::from([("/".to_string(), "web:3000".to_string())]), false, Some(8443));
        assert!(conf.contains("    location /static/ {\n        expires 30d;\n        alias /srv/locations/0/;"), "{conf}");
        assert!(conf.contains("    location /uploads/ {\n        expires 7d;\n        set $upstream http://web:3000;"), "proxied: {conf}");
        let http = conf.split("\nserver {\n    listen 443 ssl;").next().unwrap();
        assert!(http.contains("location = /health") && http.contains("return 301 https://$host:8443$request_uri;"), "{http}");
        assert!(!http.contains("proxy_pass"), "plain HTTP only redirects: {http}");
        assert!(check_time("1y").is_ok() && check_time("max").is_ok() && check_time("30 days").is_err());
    }
}
