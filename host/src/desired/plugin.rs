//! What a plugin says about itself (its info: outputs, the roles it uses)
//! and what it is asked with (the request and its bindings), and how it
//! refuses: the contract's records in the host's own types.

use serde::{Deserialize, Serialize};

use super::WaitFor;

/// What a plugin says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub config_schema: serde_json::Value,
    pub outputs: Vec<OutputInfo>,
    pub uses: Vec<RoleInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputInfo {
    pub name: String,
    pub description: String,
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleInfo {
    pub name: String,
    pub description: String,
    pub plugins: Vec<String>,
    pub optional: bool,
    pub wait: WaitFor,
    /// Filled by the host with every other service (contract 0.1.1).
    pub collect: bool,
    /// Filled by several services (contract 0.2.0).
    #[serde(default)]
    pub many: bool,
    /// The config key naming the services that fill it (contract 0.2.0).
    #[serde(default)]
    pub from_config: Option<String>,
}

/// The request for one plugin call.
#[derive(Debug, Clone)]
pub struct ServiceRequest {
    pub project: String,
    pub service: String,
    pub profile: String,
    pub config: serde_json::Value,
    pub bindings: Vec<Binding>,
    /// Some service collects this one's metrics: plan its exporters.
    pub collected: bool,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub role: String,
    pub service: String,
    pub plugin: String,
    pub outputs: Vec<(String, String)>,
    pub metrics: Vec<MetricsTarget>,
    /// Host names of each replica of its main container.
    pub replicas: Vec<String>,
}

/// A used service's metrics endpoint, by its address on the project network.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub container: String,
}

/// A plugin's `plan-error`.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    InvalidConfig { key: String, message: String },
    UnusableBinding(String),
    Failed(String),
}
