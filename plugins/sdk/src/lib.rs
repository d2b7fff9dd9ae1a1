//! Write `provision` plugins in Rust.
//!
//! The contract's bindings, generated from `../wit` (in this repository a
//! link to the current contract's folder, see wit/contracts.toml; in a crate
//! made by `provision plugin new`, the contract's WIT written beside this
//! SDK), plus a few helpers that keep a plugin short and declarative:
//!
//! ```ignore
//! use provision_sdk::{prelude::*, export};
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config { image: Option<String> }
//!
//! struct Echo;
//! impl Plugin for Echo {
//!     type Config = Config;
//!     fn info() -> Info { Info::new("echo", env!("CARGO_PKG_VERSION"), "An echo server") }
//!     fn plan(req: &Request, config: Config) -> Result<ServicePlan, PlanError> {
//!         let image = config.image.unwrap_or_else(|| "hashicorp/http-echo".into());
//!         Ok(ServicePlan { containers: vec![Container::new("server", image)], ..ServicePlan::default() })
//!     }
//! }
//! export!(Echo);
//! ```

mod builders;
pub mod workload;

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "export_provider",
    default_bindings_module: "provision_sdk",
});

pub use exports::provision::provider::provider::Guest;
pub use provision::provider::host;
pub use provision::provider::types;

/// What a plugin implements. [`export!`] turns it into the contract's exports.
pub trait Plugin {
    /// The service's table from stack.toml. Derive `Deserialize` with
    /// `#[serde(deny_unknown_fields)]` so typos are errors, and `JsonSchema`
    /// so the schema in [`types::PluginInfo`] is generated from it.
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;

    /// Name, version, summary, outputs and roles. The config schema is
    /// filled in from `Self::Config`.
    fn info() -> builders::Info;

    /// Plan one service from its typed config.
    fn plan(request: &types::ServiceRequest, config: Self::Config) -> Result<types::ServicePlan, types::PlanError>;
}

/// Export a [`Plugin`] as a provision component.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        struct __ProvisionExport;
        impl $crate::Guest for __ProvisionExport {
            fn info() -> $crate::types::PluginInfo {
                $crate::__info::<$plugin>()
            }
            fn plan(request: $crate::types::ServiceRequest) -> Result<$crate::types::ServicePlan, $crate::types::PlanError> {
                $crate::__plan::<$plugin>(request)
            }
        }
        $crate::export_provider!(__ProvisionExport);
    };
}

#[doc(hidden)]
pub fn __info<P: Plugin>() -> types::PluginInfo {
    let schema = schemars::schema_for!(P::Config);
    P::info().into_plugin_info(serde_json::to_string(&schema).expect("a schema serializes"))
}

#[doc(hidden)]
pub fn __plan<P: Plugin>(request: types::ServiceRequest) -> Result<types::ServicePlan, types::PlanError> {
    let config = parse_config::<P::Config>(&request.config)?;
    P::plan(&request, config)
}

/// Parse a service's config, naming the offending key on error
/// (`tuning.max_connections: invalid type …`).
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, types::PlanError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let message = e.into_inner().to_string();
        // serde_json adds where in *its* text the error is; the host points
        // at stack.toml instead.
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message,
        };
        config_error(key, message)
    })
}

/// An error in the user's config at `key` (dotted path in the service table).
pub fn config_error(key: impl Into<String>, message: impl Into<String>) -> types::PlanError {
    types::PlanError::InvalidConfig(types::ConfigError { key: key.into(), message: message.into() })
}

/// The binding that fills `role`, if any.
pub fn binding<'a>(request: &'a types::ServiceRequest, role: &str) -> Option<&'a types::Binding> {
    request.bindings.iter().find(|b| b.role == role)
}

impl types::Binding {
    /// The output `name` of the bound service.
    pub fn output(&self, name: &str) -> Option<&str> {
        self.outputs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::builders::{HealthCheck, Info, Need, Setting, project_path};
    pub use crate::types::{
        Binding, BuildSpec, ConfigError, Container, File, Hook, ImageSource, LogLevel, MetricsEndpoint, MetricsTarget, Mount, MountSource, Network,
        PlanError, Port, Probe, Protocol, RestartPolicy, ServicePlan, ServiceRequest as Request, Tmpfs, Volume, WaitFor, WatchAction, WatchRule,
    };
    pub use crate::workload::Workload;
    pub use crate::{Plugin, binding, config_error, host, parse_config};
    pub use schemars::JsonSchema;
    pub use serde::Deserialize;
}
