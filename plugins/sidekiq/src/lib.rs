//! Sidekiq workers for a Rails app: the same image, env and code as the
//! rails service it is given, running `bundle exec sidekiq`. Ready once the
//! process has registered itself with Redis.

use provision_sdk::{export, prelude::*};

/// Sidekiq processes for a rails service.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The worker command.
    #[serde(default = "default_command")]
    command: Vec<String>,
    /// Threads per process (SIDEKIQ_CONCURRENCY, read by config/sidekiq.yml).
    #[serde(default = "default_concurrency")]
    concurrency: u32,
}

fn default_command() -> Vec<String> {
    ["bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"].map(String::from).to_vec()
}

fn default_concurrency() -> u32 {
    10
}

/// Exit 0 when a Sidekiq process of this container is in Redis's
/// `processes` set (identities start with the host name, which Docker sets
/// to the container's). Plain RESP over a socket with gems disabled: a probe
/// that loads the redis gem costs a quarter second of CPU each time.
const REGISTERED: &str = r#"require 'socket'; require 'uri'
u = URI(ENV.fetch('REDIS_URL'))
r = TCPSocket.new(u.host, u.port || 6379)
cmd = ->(*a) { r.write("*#{a.size}\r\n" + a.map { |s| "$#{s.bytesize}\r\n#{s}\r\n" }.join) }
cmd.('AUTH', u.password) if u.password
cmd.('SELECT', u.path.delete('/')) unless u.path.to_s.delete('/').empty?
cmd.('SMEMBERS', 'processes')
cmd.('QUIT')
exit(r.read.include?(Socket.gethostname + ':') ? 0 : 1)"#;

struct Sidekiq;

impl Plugin for Sidekiq {
    type Config = Config;

    fn info() -> Info {
        // Its env (DATABASE_URL, REDIS_URL) comes with the app's workload;
        // the database and cache roles say what it waits for.
        Info::new("sidekiq", env!("CARGO_PKG_VERSION"), "Sidekiq workers running a rails service's app")
            .uses("app", "The rails service whose app the workers run", &["rails"], WaitFor::Started, Need::Required)
            .uses("database", "The app's PostgreSQL, ready first", &["postgres"], WaitFor::Ready, Need::Optional)
            .uses("cache", "The app's Redis, ready first", &["redis"], WaitFor::Ready, Need::Optional)
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let app = binding(request, "app").ok_or_else(|| PlanError::UnusableBinding("no rails service to run".into()))?;
        let unusable = |m: String| PlanError::UnusableBinding(format!("rails service `{}`: {m}", app.service));
        let workload = app.output("workload").ok_or_else(|| unusable("it has no `workload` output".into()))?;
        let workload = Workload::from_json(workload).map_err(unusable)?;
        if !workload.env.iter().any(|(k, _)| k == "REDIS_URL") {
            return Err(unusable("it has no REDIS_URL, and Sidekiq needs Redis: let it use a redis service".into()));
        }
        if config.concurrency == 0 {
            return Err(config_error("concurrency", "must be at least 1"));
        }
        let worker = workload
            .container("worker")
            .map_err(unusable)?
            .command(config.command)
            .env("SIDEKIQ_CONCURRENCY", config.concurrency.to_string())
            .health(HealthCheck::exec(["ruby", "--disable-gems", "-e", REGISTERED]));
        let mut plan = ServicePlan { containers: vec![worker], ..ServicePlan::default() };
        // Workers load the app once: new gems and config need a restart
        // (after the app's own rules, which `bundle` first); app/ code is
        // reloaded per job in development. A built image is rebuilt by
        // the app's rule, and the workers recreated with it.
        if let Some(code) = workload.code() {
            for path in ["Gemfile", "Gemfile.lock", "config/", ".env"] {
                plan.watch(project_path(code, path), [WatchAction::Restart]);
            }
            plan.watch(project_path(code, "app/"), []);
        }
        Ok(plan)
    }
}

export!(Sidekiq);
