//! Panics in `plan`: the host must report the trap and carry on.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
struct Config {}

struct Crasher;
impl Plugin for Crasher {
    type Config = Config;
    fn info() -> Info {
        Info::new("crasher", "0.1.0", "Panics")
    }
    fn plan(request: &Request, _: Config) -> Result<ServicePlan, PlanError> {
        panic!("crasher gave up on service {}", request.service)
    }
}
export!(Crasher);
