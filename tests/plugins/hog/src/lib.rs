//! Allocates without bound: the host's memory cap must refuse it.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
struct Config {}

struct Hog;
impl Plugin for Hog {
    type Config = Config;
    fn info() -> Info {
        Info::new("hog", "0.1.0", "Eats memory")
    }
    fn plan(_: &Request, _: Config) -> Result<ServicePlan, PlanError> {
        let mut heap: Vec<Vec<u8>> = Vec::new();
        loop {
            heap.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}
export!(Hog);
