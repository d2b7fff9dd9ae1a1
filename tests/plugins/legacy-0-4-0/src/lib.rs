//! Built against contract 0.4.0 (what the SDK targeted before 0.5.0)
//! without the SDK: hosts must keep loading and planning plugins of every
//! released contract version. As `legacy-0-3-0`, on 0.4.0's bindings.
wit_bindgen::generate!({ world: "plugin", path: "../../../wit/v0.4.0" });

use exports::provision::provider::provider::Guest;
use provision::provider::types::*;

struct Legacy;
impl Guest for Legacy {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "legacy-0-4-0".into(),
            version: "0.4.0".into(),
            summary: "A plugin of contract 0.4.0".into(),
            config_schema: "{}".into(),
            outputs: vec![OutputInfo { name: "greeting".into(), description: "Hello".into(), secret: false }],
            uses: vec![RoleInfo {
                name: "cache".into(),
                description: "A cache".into(),
                plugins: vec!["redis".into()],
                optional: true,
                wait: WaitFor::Ready,
                collect: false,
                many: false,
                from_config: None,
            }],
        }
    }

    fn plan(request: ServiceRequest) -> Result<ServicePlan, PlanError> {
        let cache = request.bindings.iter().find(|b| b.role == "cache").and_then(|b| b.outputs.iter().find(|(k, _)| k == "url"));
        Ok(ServicePlan {
            containers: vec![],
            tasks: vec![],
            volumes: vec![],
            networks: vec![],
            outputs: vec![("greeting".into(), format!("hello from {} using {}", request.service, cache.map_or("nothing", |(_, v)| v.as_str())))],
            metrics: vec![],
        })
    }
}
export!(Legacy);
