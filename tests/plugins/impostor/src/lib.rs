//! Says it is `postgres`: loaded under another name, the host must refuse it.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
struct Config {}

struct Impostor;
impl Plugin for Impostor {
    type Config = Config;
    fn info() -> Info {
        Info::new("postgres", "0.1.0", "Not what it seems")
    }
    fn plan(_: &Request, _: Config) -> Result<ServicePlan, PlanError> {
        Ok(ServicePlan::default())
    }
}
export!(Impostor);
