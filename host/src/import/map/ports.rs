//! ports and expose: published on 127.0.0.1 (a range as one entry per port),
//! exposed ports on the project network, and for a built-in the port it
//! publishes itself.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;
use toml::{Table, Value as Toml};

use super::{Draft, Mapper, builtin::plugin_port};
use crate::import::load::{scalar, sequence};

impl Mapper<'_> {
    /// ports and expose: the plugin's own port for a built-in, `ports` for a container.
    pub(super) fn ports(&mut self, d: &mut Draft) -> Result<(), String> {
        let (at, svc, container, once) = (d.at.clone(), d.svc, d.container, d.once);
        d.handled.extend(["ports", "expose"]);
        let mut specs: Vec<(String, Toml)> = Vec::new();
        let mut published = BTreeMap::new();
        for (i, port) in sequence(svc.get("ports").cloned()).iter().enumerate() {
            let path = format!("{at}.ports.{i}");
            let Some(ports) = parse_ports(port) else {
                self.dropped(path, format!("{:?}: a port form provision does not take; list the ports one by one", scalar(port).unwrap_or_default()));
                continue;
            };
            if once {
                self.dropped(path, "a service others wait to complete listens on nothing");
                continue;
            }
            let mut how = match (&ports[0].host_ip, ports[0].host) {
                (Some(ip), _) if ip == "127.0.0.1" => None,
                (_, None) => Some("published on any free port of 127.0.0.1 (compose: of every interface)".to_string()),
                _ => Some("published on 127.0.0.1 only (compose: every interface); reach it from another machine through a proxy".to_string()),
            };
            for parsed in &ports {
                let text = format!("{}:{}", parsed.host.unwrap_or(0), parsed.container);
                let text = if parsed.udp { format!("{text}/udp") } else { text };
                published.insert(parsed.container, parsed.host.unwrap_or(0));
                specs.push((text, Toml::Integer(parsed.container.into())));
            }
            let target = if container { "ports" } else { "port (the plugin publishes it)" };
            if ports.len() > 1 {
                how = Some(format!("{}: the range as {} ports", how.as_deref().unwrap_or(target), ports.len()));
            }
            if let Some((a, b)) = ports[0].picked_from {
                how = Some(format!(
                    "{}: published on {a}, the first of {a}-{b} (compose picks any free one of them)",
                    how.as_deref().unwrap_or(target)
                ));
            }
            match how {
                None => self.mapped(path, target),
                Some(how) => self.approximated(path, how),
            }
        }
        let mut exposed = Vec::new();
        for (i, port) in sequence(svc.get("expose").cloned()).iter().enumerate() {
            let path = format!("{at}.expose.{i}");
            match scalar(port).and_then(|p| p.split('/').next().and_then(|p| p.parse::<u16>().ok())) {
                Some(p) if container && !once && !published.contains_key(&p) => {
                    exposed.push(p);
                    self.mapped(path, "ports (on the project network only)");
                }
                Some(_) => self.mapped(path, "nothing needed: containers reach each other's ports on the project network"),
                None => self.dropped(path, "not a port number"),
            }
        }
        if container {
            // Published, so something connects to it: `up` waits until it can.
            let first_tcp = specs.iter().find(|(text, _)| !text.ends_with("/udp")).map(|(_, port)| port.clone());
            if let Some(port) = first_tcp.filter(|_| !d.table.contains_key("health") && !svc.contains_key("healthcheck")) {
                let mut health = Table::new();
                health.insert("tcp".into(), port.clone());
                d.table.insert("health".into(), Toml::Table(health));
                self.approximated(
                    format!("{at}.ports"),
                    format!("`up` also waits until port {port} accepts connections (health = {{ tcp = {port} }}); compose waits only for the container to run"),
                );
            }
            let mut list: Vec<Toml> = specs.into_iter().map(|(text, _)| Toml::String(text)).collect();
            list.extend(exposed.into_iter().map(|p| Toml::Integer(p.into())));
            if !list.is_empty() {
                d.table.insert("ports".into(), Toml::Array(list));
            }
        } else {
            // A built-in publishes its own port in dev; say where, or that it is not.
            let own = plugin_port(&d.table);
            match published.get(&own) {
                Some(host) => {
                    d.table.insert("port".into(), Toml::Integer((*host).into()));
                }
                None => {
                    d.table.insert("publish".into(), false.into());
                }
            }
        }
        Ok(())
    }
}

struct ParsedPort {
    container: u16,
    host: Option<u16>,
    host_ip: Option<String>,
    udp: bool,
    /// `9000-9001:80`: the host range compose picks a free port from.
    picked_from: Option<(u16, u16)>,
}

/// "80", "8080:80", "127.0.0.1:8080:80", "53:53/udp", "3000-3002:3000-3002"
/// (one per port of the range), or the long form.
fn parse_ports(port: &Value) -> Option<Vec<ParsedPort>> {
    if let Value::Mapping(long) = port {
        let container = long.get("target").and_then(scalar)?.parse().ok()?;
        let host = match long.get("published").and_then(scalar) {
            None => None,
            Some(p) => Some(p.parse().ok()?),
        };
        let host_ip = long.get("host_ip").and_then(scalar);
        let udp = long.get("protocol").and_then(Value::as_str) == Some("udp");
        return Some(vec![ParsedPort { container, host, host_ip, udp, picked_from: None }]);
    }
    let text = scalar(port)?;
    let (text, udp) = match text.rsplit_once('/') {
        Some((t, "udp")) => (t.to_string(), true),
        Some((t, _)) => (t.to_string(), false),
        None => (text, false),
    };
    let parts: Vec<&str> = text.rsplitn(3, ':').collect();
    let (container, host, host_ip) = match parts[..] {
        [c] => (c, None, None),
        [c, h] => (c, Some(h).filter(|h| !h.is_empty()), None),
        [c, h, ip] => (c, Some(h).filter(|h| !h.is_empty()), Some(ip.trim_matches(['[', ']']).to_string())),
        _ => return None,
    };
    let range = |text: &str| -> Option<(u16, u16)> {
        match text.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)).filter(|(a, b)| a <= b),
            None => text.parse().ok().map(|p| (p, p)),
        }
    };
    let (first, last) = range(container)?;
    let hosts = match host {
        None => None,
        Some(h) => Some(range(h)?),
    };
    // A host range for one container port: compose picks a free one of it.
    if let Some((a, b)) = hosts.filter(|(a, b)| b - a != last - first) {
        return (first == last).then(|| vec![ParsedPort { container: first, host: Some(a), host_ip, udp, picked_from: Some((a, b)) }]);
    }
    Some(
        (first..=last)
            .map(|c| ParsedPort { container: c, host: hosts.map(|(a, _)| a + (c - first)), host_ip: host_ip.clone(), udp, picked_from: None })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Status, tests::one};
    use super::*;

    #[test]
    fn ports() {
        let p = |s: &str| parse_ports(&Value::from(s)).map(|p| (p[0].container, p[0].host, p[0].host_ip.clone(), p[0].udp));
        assert_eq!(p("80"), Some((80, None, None, false)));
        assert_eq!(p("8080:80"), Some((80, Some(8080), None, false)));
        assert_eq!(p("127.0.0.1:5433:5432"), Some((5432, Some(5433), Some("127.0.0.1".into()), false)));
        assert_eq!(p("53:53/udp"), Some((53, Some(53), None, true)));
        let range = parse_ports(&Value::from("8000-8002:3000-3002")).unwrap();
        assert_eq!(range.iter().map(|p| (p.host, p.container)).collect::<Vec<_>>(), [(Some(8000), 3000), (Some(8001), 3001), (Some(8002), 3002)]);
        assert!(parse_ports(&Value::from("3000-3005:3000-3002")).is_none());
        let picked = parse_ports(&Value::from("9000-9001:80")).unwrap();
        assert_eq!((picked.len(), picked[0].host, picked[0].container, picked[0].picked_from), (1, Some(9000), 80, Some((9000, 9001))));
    }

    #[test]
    fn a_published_port_is_on_127_0_0_1_and_up_waits_for_it() {
        let (web, entry) = one("services:\n  web:\n    image: nginx\n    ports: ['8080:80']\n", "ports.0");
        assert_eq!(web["ports"].as_array().unwrap()[0].as_str(), Some("8080:80"));
        assert_eq!(web["health"]["tcp"].as_integer(), Some(80));
        let (status, detail) = entry.unwrap();
        assert_eq!(status, Status::Approximated);
        assert!(detail.contains("127.0.0.1"), "{detail}");
    }

    #[test]
    fn a_built_in_publishes_its_own_port_or_none() {
        let (db, _) = one("services:\n  db:\n    image: redis:7\n    ports: ['6380:6379']\n", "ports.0");
        assert_eq!(db["port"].as_integer(), Some(6380));
        let (db, _) = one("services:\n  db:\n    image: redis:7\n", "ports");
        assert_eq!(db["publish"].as_bool(), Some(false));
    }
}
