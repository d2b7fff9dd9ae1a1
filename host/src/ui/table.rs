//! `provision ps`: the project's containers as a table (or JSON rows).

use std::fmt::Write as _;

use serde::Serialize;

/// One container of `ps`.
#[derive(Debug, Serialize)]
pub struct PsRow {
    pub service: String,
    pub container: String,
    pub name: String,
    pub role: String,
    pub state: String,
    pub health: String,
    pub ports: Vec<u16>,
    /// What the ports listen on: 127.0.0.1, or every address of the node.
    pub address: String,
    pub id: String,
}

pub fn ps(rows: &[PsRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:12} {:10} {:10} {:12} {:10} {:12} ID", "SERVICE", "CONTAINER", "ROLE", "STATE", "HEALTH", "PORTS");
    for r in rows {
        let ports: Vec<String> = r.ports.iter().map(|p| format!("{}:{p}", r.address)).collect();
        let _ = writeln!(out, "{:12} {:10} {:10} {:12} {:10} {:12} {}", r.service, r.container, r.role, r.state, r.health, ports.join(","), r.id);
    }
    out
}
