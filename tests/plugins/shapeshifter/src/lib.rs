//! For the fuzzer (tests/all/fuzz.rs): a plan of any shape the contract
//! allows, drawn from `seed` — strings with NUL, control characters, `..`
//! and huge lengths, numbers at their extremes, every variant, lists long
//! and empty — so the host's conversion of what a plugin returns, and the
//! policy after it, meet every value a hostile plugin could send.
use provision_sdk::{
    Plugin, export,
    prelude::{Deserialize, Info, JsonSchema, Request},
    types::*,
};

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    seed: u64,
}

/// xorshift64*: small and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn flip(&mut self) -> bool {
        self.below(2) == 0
    }
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        if self.flip() { Some(f(self)) } else { None }
    }
    fn list<T>(&mut self, most: u64, mut f: impl FnMut(&mut Rng) -> T) -> Vec<T> {
        let n = if self.below(20) == 0 { most * 4 } else { self.below(most + 1) };
        (0..n).map(|_| f(self)).collect()
    }
    fn u16(&mut self) -> u16 {
        [0, 1, 80, 5432, 65535, self.next() as u16][self.below(6) as usize]
    }
    fn u32(&mut self) -> u32 {
        [0, 1, 1000, u32::MAX, self.next() as u32][self.below(5) as usize]
    }
    fn u64(&mut self) -> u64 {
        [0, 1, 4096, u64::MAX, self.next()][self.below(5) as usize]
    }
    fn text(&mut self) -> String {
        const PARTS: &[&str] = &[
            "server",
            "data",
            "/",
            "..",
            ".",
            "/var/run/docker.sock",
            ".provision",
            ".git",
            "\0",
            "\u{1b}[2J",
            "=",
            "$",
            "${db.password}",
            "_",
            "-",
            "a",
            "é",
            "🦀",
            " ",
            "\n",
            "'",
            "\"",
            "*",
            "dev.provision.project",
            "com.docker.compose.project",
            "http://x:1/",
            "/metrics",
        ];
        if self.below(50) == 0 {
            return "x".repeat(100_000);
        }
        (0..self.below(4)).map(|_| PARTS[self.below(PARTS.len() as u64) as usize]).collect()
    }
    fn pairs(&mut self) -> Vec<(String, String)> {
        self.list(3, |r| (r.text(), r.text()))
    }
    fn words(&mut self) -> Vec<String> {
        self.list(3, Rng::text)
    }
}

fn container(r: &mut Rng) -> Container {
    let image = if r.flip() {
        ImageSource::Pull(r.text())
    } else {
        ImageSource::Build(BuildSpec { context: r.text(), dockerfile: r.maybe(Rng::text), target: r.maybe(Rng::text), args: r.pairs() })
    };
    let probe = |r: &mut Rng| match r.below(5) {
        0 => Probe::Exec(r.words()),
        1 => Probe::Http(HttpGet { port: r.u16(), path: r.text() }),
        2 => Probe::Tcp(r.u16()),
        3 => Probe::Postgres(r.u16()),
        _ => Probe::Redis(r.u16()),
    };
    let source = |r: &mut Rng| match r.below(4) {
        0 => MountSource::Volume(r.text()),
        1 => MountSource::Bind(r.text()),
        2 => MountSource::Tmpfs(Tmpfs { size_bytes: r.maybe(Rng::u64), mode: r.maybe(Rng::u32) }),
        _ => MountSource::Anonymous,
    };
    Container {
        name: r.text(),
        image,
        command: r.maybe(Rng::words),
        entrypoint: r.maybe(Rng::words),
        env: r.pairs(),
        working_dir: r.maybe(Rng::text),
        ports: r.list(3, |r| Port { container: r.u16(), host: r.maybe(Rng::u16), protocol: if r.flip() { Protocol::Tcp } else { Protocol::Udp } }),
        mounts: r.list(3, |r| Mount { source: source(r), target: r.text(), read_only: r.flip() }),
        files: r.list(2, |r| File { path: r.text(), contents: r.text(), mode: r.u32() }),
        health: r.maybe(|r| HealthCheck { probe: probe(r), interval_ms: r.u32(), timeout_ms: r.u32(), retries: r.u32(), start_period_ms: r.u32() }),
        hooks: r.list(2, |r| Hook { name: r.text(), command: r.words(), user: r.maybe(Rng::text), env: r.pairs() }),
        user: r.maybe(Rng::text),
        read_only: r.flip(),
        init: r.flip(),
        no_new_privileges: r.flip(),
        resources: Resources { milli_cpus: r.maybe(Rng::u32), memory_bytes: r.maybe(Rng::u64), pids: r.maybe(Rng::u32) },
        restart: [RestartPolicy::No, RestartPolicy::OnFailure, RestartPolicy::Always, RestartPolicy::UnlessStopped][r.below(4) as usize],
        networks: r.words(),
        labels: r.pairs(),
        privileges: Privileges {
            privileged: r.below(8) == 0,
            cap_add: r.list(1, Rng::text),
            host_network: r.below(8) == 0,
            host_pid: r.below(8) == 0,
            devices: r.list(1, Rng::text),
        },
        snapshot: r.maybe(|r| DataSnapshot { path: r.text(), key: r.text(), command: r.words() }),
    }
}

struct Shapeshifter;
impl Plugin for Shapeshifter {
    type Config = Config;
    fn info() -> Info {
        Info::new("shapeshifter", "0.1.0", "Plans of any shape, for the fuzzer").output("url", "Anything")
    }

    fn plan(_: &Request, config: Config) -> Result<ServicePlan, PlanError> {
        let mut r = Rng(config.seed | 1);
        Ok(ServicePlan {
            containers: r.list(3, container),
            tasks: r.list(2, container),
            volumes: r.list(3, |r| Volume { name: r.text() }),
            networks: r.list(3, |r| Network { name: r.text(), internal: r.flip() }),
            outputs: r.pairs(),
            metrics: r.list(2, |r| MetricsEndpoint { container: r.text(), port: r.u16(), path: r.text() }),
            watch: r.list(2, |r| WatchRule { path: r.text(), ignore: r.list(2, Rng::text), actions: r.list(3, watch_action) }),
        })
    }
}
fn watch_action(r: &mut Rng) -> WatchAction {
    match r.u16() % 5 {
        0 => WatchAction::Sync(r.text()),
        1 => WatchAction::Restart,
        2 => WatchAction::Rebuild,
        3 => WatchAction::Rerun(r.text()),
        _ => WatchAction::Exec(r.list(3, Rng::text)),
    }
}

export!(Shapeshifter);
