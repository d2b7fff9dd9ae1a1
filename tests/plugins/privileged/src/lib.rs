//! Asks for privileged mode and the Docker socket: policy must refuse both
//! unless the stack allows them.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    socket_only: bool,
}

struct Privileged;
impl Plugin for Privileged {
    type Config = Config;
    fn info() -> Info {
        Info::new("privileged", "0.1.0", "Wants root on the host")
    }
    fn plan(_: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let mut c = Container::new("agent", "alpine:3").mount(MountSource::Bind("/var/run/docker.sock".into()), "/var/run/docker.sock", false);
        c.privileges.privileged = !config.socket_only;
        Ok(ServicePlan { containers: vec![c], ..ServicePlan::default() })
    }
}
export!(Privileged);
