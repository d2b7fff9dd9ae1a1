//! A Rails app, built from the user's Dockerfile (or run from an image):
//! wired to the database and Redis it uses, prepared by one-shot steps
//! (`bundle check || bundle install` in dev, `bin/rails db:prepare`), then
//! served by its server on port 3000 with HTTP readiness.

use std::collections::BTreeMap;

use provision_sdk::{export, prelude::*, types::LogLevel};

/// A Rails application.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Build the image from a Dockerfile: `{ context = "app", dockerfile,
    /// target, args }` (context relative to stack.toml).
    build: Option<Build>,
    /// Or run this image.
    image: Option<String>,
    /// Folder of the app's code (relative to stack.toml), bind-mounted over
    /// `workdir` in the dev profile for hot reload. Default: the build
    /// context; with `image` and no `code`, nothing is mounted.
    code: Option<String>,
    /// Where the code lives in the image.
    #[serde(default = "default_workdir")]
    workdir: String,
    /// Host port to publish 3000 on; 0 for any free port. Default: 3000 in
    /// the dev profile, any free port otherwise.
    port: Option<u16>,
    /// Path answered with 200 once the app is up.
    #[serde(default = "default_health_path")]
    health_path: String,
    /// The server command.
    #[serde(default = "default_server")]
    command: Vec<String>,
    /// Steps run to completion before the server, in order. Default:
    /// `bundle check || bundle install` (dev only), then `bin/rails
    /// db:prepare` (when a database is used).
    prepare: Option<Vec<Vec<String>>>,
    /// Path of a Prometheus endpoint the app serves on 3000, scraped when a
    /// monitoring service collects this one.
    metrics_path: Option<String>,
    /// More environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Build {
    context: String,
    dockerfile: Option<String>,
    target: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
}

fn default_workdir() -> String {
    "/app".into()
}

fn default_health_path() -> String {
    "/up".into()
}

fn default_server() -> Vec<String> {
    ["bundle", "exec", "rails", "server", "-b", "0.0.0.0", "-p", "3000"].map(String::from).to_vec()
}

/// Profile → RAILS_ENV.
fn rails_env(profile: &str) -> &str {
    match profile {
        "dev" => "development",
        "test" | "ci" => "test",
        "prod" => "production",
        other => other,
    }
}

struct Rails;

impl Plugin for Rails {
    type Config = Config;

    fn info() -> Info {
        Info::new("rails", env!("CARGO_PKG_VERSION"), "Rails app: database and Redis wired, db:prepare before the server")
            .uses("database", "PostgreSQL for DATABASE_URL", &["postgres"], WaitFor::Ready, Need::Optional)
            .uses("cache", "Redis for REDIS_URL (cache, Action Cable, Sidekiq)", &["redis"], WaitFor::Ready, Need::Optional)
            .output("url", "http:// URL of the app on the project network")
            .output("host", "Host name on the project network")
            .output("port", "Port on the project network")
            .secret_output("workload", "JSON: image, env (with secrets), mounts and working dir, for a worker running the same app")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let image = match (&config.build, &config.image) {
            (Some(b), None) => ImageSource::Build(BuildSpec {
                context: b.context.clone(),
                dockerfile: b.dockerfile.clone(),
                target: b.target.clone(),
                args: b.args.clone().into_iter().collect(),
            }),
            (None, Some(image)) => ImageSource::Pull(image.clone()),
            (Some(_), Some(_)) => return Err(config_error("image", "give either `build` or `image`, not both")),
            (None, None) => {
                return Err(config_error("", "say where the app's image comes from: `build = { context = \"app\" }` or `image = \"…\"`"));
            }
        };
        let dev = request.profile == "dev";
        let database = binding(request, "database");
        let cache = binding(request, "cache");

        let mut app = Container::new("server", "");
        app.image = image;
        app.working_dir = Some(config.workdir.clone());
        app =
            app.env("RAILS_ENV", rails_env(&request.profile)).env("RAILS_LOG_TO_STDOUT", "1").env("SECRET_KEY_BASE", host::secret("secret_key_base"));
        if let Some(db) = database {
            let url = db.output("url").ok_or_else(|| PlanError::UnusableBinding(format!("database `{}` has no `url` output", db.service)))?;
            app = app.env("DATABASE_URL", url);
        }
        if let Some(redis) = cache {
            let url = redis.output("url").ok_or_else(|| PlanError::UnusableBinding(format!("cache `{}` has no `url` output", redis.service)))?;
            app = app.env("REDIS_URL", url);
        }
        for (key, value) in &config.env {
            app = app.env(key, value);
        }

        let mut plan = ServicePlan::default();
        if dev {
            // Code from the project folder, so edits show without a rebuild;
            // caches in named volumes; scratch folders kept out of the code.
            let code = config.code.clone().or_else(|| config.build.as_ref().map(|b| b.context.clone()));
            let workdir = &config.workdir;
            match code {
                Some(code) => app = app.mount(MountSource::Bind(code), workdir.clone(), false),
                None => host::log(LogLevel::Info, "no `code` folder to mount: the image's code runs as built (no hot reload)"),
            }
            plan.volume("bundle");
            plan.volume("node_modules");
            app = app
                .mount(MountSource::Volume("bundle".into()), "/usr/local/bundle", false)
                .mount(MountSource::Volume("node_modules".into()), format!("{workdir}/node_modules"), false)
                .mount(MountSource::Anonymous, format!("{workdir}/tmp"), false)
                .mount(MountSource::Anonymous, format!("{workdir}/log"), false);
        }

        let steps = config.prepare.clone().unwrap_or_else(|| {
            let mut steps = Vec::new();
            if dev {
                steps.push(["sh", "-c", "bundle check || bundle install"].map(String::from).to_vec());
            }
            if database.is_some() {
                steps.push(["bin/rails", "db:prepare"].map(String::from).to_vec());
            }
            steps
        });
        for (i, step) in steps.into_iter().enumerate() {
            if step.is_empty() {
                return Err(config_error(format!("prepare.{i}"), "a step needs a command"));
            }
            let mut name = step_name(&step);
            if plan.tasks.iter().any(|t| t.name == name) {
                name = format!("{name}-{}", i + 1);
            }
            plan.tasks.push(Container { name, command: Some(step), init: true, ..app.clone() });
        }

        watch_rules(&mut plan, &config, dev);
        let workload = Workload::of(&request.service, &app);
        let host_port = config.port.unwrap_or(if dev { 3000 } else { 0 });
        let server = app.command(config.command.clone()).port(3000, Some(host_port)).health(HealthCheck::http(3000, &config.health_path));
        plan.containers.push(server);
        if let (true, Some(path)) = (request.collected, &config.metrics_path) {
            plan.metrics("server", 3000, path);
        }

        let service = &request.service;
        plan.output("url", format!("http://{service}:3000"));
        plan.output("host", service);
        plan.output("port", "3000");
        plan.output("workload", workload.to_json());
        Ok(plan)
    }
}

/// What a change means (`provision watch`). With the code mounted (dev):
/// Gemfile or Gemfile.lock → `bundle` again (if it is a step) then restart;
/// config/ and .env → restart; app/ → nothing, Rails reloads it. With the
/// code built into the image: any change in the context → rebuild.
fn watch_rules(plan: &mut ServicePlan, config: &Config, dev: bool) {
    let code = config.code.as_deref().or(config.build.as_ref().map(|b| b.context.as_str()));
    match (dev, code, &config.build) {
        (true, Some(code), _) => {
            let bundle = plan.tasks.iter().any(|t| t.name == "bundle");
            let gems: Vec<_> = bundle.then(|| WatchAction::Rerun("bundle".into())).into_iter().chain([WatchAction::Restart]).collect();
            plan.watch(project_path(code, "Gemfile"), gems.clone());
            plan.watch(project_path(code, "Gemfile.lock"), gems);
            plan.watch(project_path(code, "config/"), [WatchAction::Restart]);
            plan.watch(project_path(code, ".env"), [WatchAction::Restart]);
            plan.watch(project_path(code, "app/"), []);
        }
        (false, _, Some(build)) => plan.watch(project_path(&build.context, ""), [WatchAction::Rebuild]),
        _ => {}
    }
}

/// `bin/rails db:prepare` → `db-prepare`; `sh -c "bundle check || …"` → `bundle`.
fn step_name(step: &[String]) -> String {
    let words: Vec<&str> = step.iter().flat_map(|s| s.split_whitespace()).filter(|w| !["sh", "bash", "-c", "exec"].contains(w)).collect();
    let word = match words.iter().position(|w| ["bin/rails", "rails", "rake", "bin/rake"].contains(w)) {
        Some(i) => words.get(i + 1).copied().unwrap_or("rails"),
        None => words.first().copied().unwrap_or("step"),
    };
    let name: String = word.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name.trim_matches('-').to_string()
}

export!(Rails);
