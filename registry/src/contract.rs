//! The plugin contract's versions: which are released and which is current
//! (generated from wit/contracts.toml, the one place that says so), and
//! which version a component was built against, read from the name of the
//! interface it exports (`provision:provider/provider@0.1.0`) by parsing
//! its bytes, before anything is compiled.

use semver::Version;
use wasmparser::{Parser, Payload};

include!(concat!(env!("OUT_DIR"), "/contracts.rs"));

/// The WIT package and interface every plugin exports.
pub const CONTRACT_PACKAGE: &str = "provision:provider/provider@";

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("not a WebAssembly component ({0}); build plugins for wasm32-wasip2")]
    NotAComponent(String),
    #[error("exports no `{CONTRACT_PACKAGE}<version>` interface, so it is not a provision plugin (it exports: {0})")]
    NoProvider(String),
    #[error("exports `{0}`, whose version is not semver")]
    BadVersion(String),
}

pub fn contract_version(wasm: &[u8]) -> Result<Version, ContractError> {
    if !wasm.starts_with(b"\0asm") {
        return Err(ContractError::NotAComponent("the file does not start with the wasm magic number".into()));
    }
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| ContractError::NotAComponent(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding != wasmparser::Encoding::Component => {
                return Err(ContractError::NotAComponent("it is a core module".into()));
            }
            // Nested modules and components have exports of their own; only
            // the outermost component's count.
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) if depth > 0 => depth -= 1,
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.map_err(|e| ContractError::NotAComponent(e.to_string()))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let Some(name) = exports.iter().find(|n| n.starts_with(CONTRACT_PACKAGE)) else {
        let list = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
        return Err(ContractError::NoProvider(list));
    };
    Version::parse(&name[CONTRACT_PACKAGE.len()..]).map_err(|_| ContractError::BadVersion(name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_built_against_the_current_contract() {
        for builtin in crate::builtins() {
            assert_eq!(contract_version(builtin.wasm).unwrap(), CURRENT, "{}", builtin.name);
            assert_eq!(builtin.contract, CURRENT.to_string(), "{}", builtin.name);
        }
        assert_eq!(RELEASED.last(), Some(&CURRENT));
        assert!(CURRENT_WIT.contains(&format!("package provision:provider@{CURRENT};")));
    }
}
