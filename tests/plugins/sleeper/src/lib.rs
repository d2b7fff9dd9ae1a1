//! Sleeps for an hour in `info`, through WASI's clocks rather than a loop:
//! the host must not wait for it.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
struct Config {}

struct Sleeper;
impl Plugin for Sleeper {
    type Config = Config;
    fn info() -> Info {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Info::new("sleeper", "0.1.0", "Sleeps instead of answering")
    }
    fn plan(_: &Request, _: Config) -> Result<ServicePlan, PlanError> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(ServicePlan::default())
    }
}
export!(Sleeper);
