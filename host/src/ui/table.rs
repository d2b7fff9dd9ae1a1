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
    let header = ["SERVICE", "CONTAINER", "ROLE", "STATE", "HEALTH", "PORTS", "ID"].map(String::from);
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let ports: Vec<String> = r.ports.iter().map(|p| format!("{}:{p}", r.address)).collect();
            [&r.service, &r.container, &r.role, &r.state, &r.health, &ports.join(","), &r.id].map(String::clone)
        })
        .collect();
    // Each column as wide as its widest cell, so a long value never pushes
    // the next column out of line.
    let widths: Vec<usize> = (0..7).map(|i| cells.iter().chain([&header]).map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in [&header].into_iter().chain(&cells) {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_stay_aligned_whatever_a_value_holds() {
        let row = |service: &str, ports: Vec<u16>| PsRow {
            service: service.into(),
            container: "server".into(),
            name: String::new(),
            role: "container".into(),
            state: "running".into(),
            health: "healthy".into(),
            ports,
            address: "127.0.0.1".into(),
            id: "0123456789ab".into(),
        };
        let table = ps(&[row("cache", vec![6379]), row("a-much-longer-name", vec![])]);
        let at: Vec<usize> = table.lines().map(|l| l.find("ID").or_else(|| l.find("0123")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] == w[1]), "{table}");
    }
}
