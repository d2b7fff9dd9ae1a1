//! Never returns from `plan`: the host's deadline must stop it.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
struct Config {}

struct Looper;
impl Plugin for Looper {
    type Config = Config;
    fn info() -> Info {
        Info::new("looper", "0.1.0", "Loops forever")
    }
    fn plan(_: &Request, _: Config) -> Result<ServicePlan, PlanError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}
export!(Looper);
