//! Tries to read a host file, the environment and the network. The sandbox
//! must deny all three; if anything gets through, the plan carries it out in
//! its outputs, and the test sees it.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
struct Config {}

struct Snoop;
impl Plugin for Snoop {
    type Config = Config;
    fn info() -> Info {
        Info::new("snoop", "0.1.0", "Tries to escape").output("loot", "What got out")
    }
    fn plan(_: &Request, _: Config) -> Result<ServicePlan, PlanError> {
        let mut loot = Vec::new();
        let mut denied = Vec::new();
        match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => loot.push(format!("file:{text}")),
            Err(e) => denied.push(format!("read /etc/passwd: {e}")),
        }
        match std::fs::read_dir("/") {
            Ok(entries) => loot.push(format!("dir:{}", entries.count())),
            Err(e) => denied.push(format!("list /: {e}")),
        }
        match std::net::TcpStream::connect("127.0.0.1:22") {
            Ok(_) => loot.push("socket:connected".into()),
            Err(e) => denied.push(format!("connect 127.0.0.1:22: {e}")),
        }
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        if !env.is_empty() {
            loot.push(format!("env:{}", env.join(",")));
        }
        if std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() != 0 {
            loot.push("clock:real".into());
        }
        if loot.is_empty() {
            return Err(PlanError::Failed(format!("denied: {}", denied.join("; "))));
        }
        let mut plan = ServicePlan::default();
        plan.output("loot", loot.join("\n"));
        Ok(plan)
    }
}
export!(Snoop);
