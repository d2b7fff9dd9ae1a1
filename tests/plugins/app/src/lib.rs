//! A well-behaved app plugin for wiring tests: uses a database (postgres),
//! optionally a cache (redis) and any `upstream` (merely started), and passes
//! what its bindings carry into its environment.
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_image")]
    image: String,
    /// Replaces the image's command.
    command: Option<Vec<String>>,
    /// A one-shot task run before the server starts.
    task: Option<Vec<String>>,
    /// Text placed in the server at /etc/app/greeting.
    greeting: Option<String>,
    /// Build the server's image from this context (with its Dockerfile)
    /// instead of running `image`.
    build: Option<String>,
}

fn default_image() -> String {
    "app:latest".into()
}

struct App;
impl Plugin for App {
    type Config = Config;
    fn info() -> Info {
        Info::new("app", "0.1.0", "An app for wiring tests")
            .output("url", "Where the app answers")
            .uses("database", "Its database", &["postgres"], WaitFor::Ready, Need::Required)
            .uses("cache", "Its cache", &["redis"], WaitFor::Ready, Need::Optional)
            .uses("upstream", "Anything it calls", &[], WaitFor::Started, Need::Optional)
    }
    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let mut server = Container::new("server", config.image.clone());
        if let Some(context) = config.build {
            server.image = ImageSource::Build(BuildSpec { context, dockerfile: None, target: None, args: vec![("GREETING".into(), "built".into())] });
        }
        if let Some(command) = config.command {
            server = server.command(command);
        }
        if let Some(greeting) = config.greeting {
            server = server.file("/etc/app/greeting", greeting, 0o644);
        }
        for binding in &request.bindings {
            let url = binding.output("url").unwrap_or("");
            server = server.env(format!("{}_URL", binding.role.to_uppercase()), url);
        }
        host::log(provision_sdk::types::LogLevel::Info, &format!("planned with {} bindings", request.bindings.len()));
        let mut plan = ServicePlan { containers: vec![server], ..ServicePlan::default() };
        if let Some(task) = config.task {
            plan.tasks.push(Container::new("migrate", config.image).command(task));
        }
        plan.output("url", format!("http://{}:3000", request.service));
        Ok(plan)
    }
}
export!(App);
