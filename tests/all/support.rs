//! Running the real binary in throwaway project folders.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Skips the rest of an end-to-end test when `support::engine()` says this
/// run has no engine; the notice is printed once.
macro_rules! needs_engine {
    () => {
        if !crate::support::engine() {
            return;
        }
    };
}
pub(crate) use needs_engine;

/// Skips the rest of a test against a real registry when
/// `support::registry_server()` says there is none to start.
macro_rules! needs_registry_server {
    () => {
        if !crate::support::registry_server() {
            return;
        }
    };
}
pub(crate) use needs_registry_server;

/// Whether the tests against a real registry (Debian's docker-registry,
/// which scripts/test installs) run: always under PROVISION_TEST_ENGINE=1,
/// else only where the binary is installed, with a notice once when not.
pub fn registry_server() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        if std::env::var_os("PROVISION_TEST_ENGINE").is_some_and(|v| v != "0") {
            return true;
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        if std::env::split_paths(&path).any(|dir| dir.join("docker-registry").is_file()) {
            return true;
        }
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            b"\nnote: docker-registry is not installed: the tests against a real registry return at once and were NOT run. \
              Run scripts/test to install it and run them all.\n",
        );
        false
    })
}

/// Whether the end-to-end tests run: they need a Docker engine (and the
/// stand-in images, Compose v2, docker-registry and a swarm that
/// scripts/test sets up). scripts/test, and so CI, sets
/// PROVISION_TEST_ENGINE=1: there they always run, and a missing engine
/// fails them. A plain `cargo test` on a machine where no engine answers
/// runs every engine-free test and says once that the others did not run.
pub fn engine() -> bool {
    static ANSWERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWERS.get_or_init(|| {
        if std::env::var_os("PROVISION_TEST_ENGINE").is_some_and(|v| v != "0") {
            return true;
        }
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        if engine_answers(&host) {
            return true;
        }
        // Past the harness's capture, so it shows without --nocapture.
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            format!(
                "\nnote: no Docker engine answers at {host}: the end-to-end tests return at once and were NOT run \
                 (they pass vacuously). Run scripts/test to set an engine up and run them all.\n"
            )
            .as_bytes(),
        );
        false
    })
}

/// A `GET /_ping` answered with OK at `host` (unix:// or tcp://).
fn engine_answers(host: &str) -> bool {
    use std::io::{Read, Write};
    fn ping(mut stream: impl Read + Write) -> bool {
        let mut reply = String::new();
        stream.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_ok() && stream.read_to_string(&mut reply).is_ok() && reply.ends_with("OK")
    }
    let timeout = Some(std::time::Duration::from_secs(5));
    if let Some(path) = host.strip_prefix("unix://") {
        return std::os::unix::net::UnixStream::connect(path).is_ok_and(|s| s.set_read_timeout(timeout).is_ok() && ping(s));
    }
    let address = host.strip_prefix("tcp://").unwrap_or(host);
    std::net::ToSocketAddrs::to_socket_addrs(address).ok().and_then(|mut a| a.next()).is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok_and(|s| s.set_read_timeout(timeout).is_ok() && ping(s))
    })
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A project folder with its own compile cache, deleted afterwards.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub(crate) cache: PathBuf,
}

impl Project {
    pub fn new(stack: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stack.toml"), stack).unwrap();
        let cache = shared_cache();
        Project { dir, cache }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copy a compiled test plugin into the project as `NAME.wasm`.
    pub fn add_plugin(&self, name: &str, wasm: &str) -> &Self {
        std::fs::copy(wasm, self.path().join(format!("{name}.wasm"))).unwrap();
        self
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path().join(file), text).unwrap();
    }

    pub fn provision(&self, args: &[&str]) -> Run {
        let output = provision_cmd(&self.cache).current_dir(self.path()).args(args).output().unwrap();
        Run::from(output)
    }
}

/// One compile cache for the whole test run: the tests are about behaviour,
/// and recompiling every plugin in every test would only make them slow.
pub fn shared_cache() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compile-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn provision_cmd(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provision"));
    cmd.env("PROVISION_CACHE_DIR", cache).env("NO_COLOR", "1").env_remove("PROVISION_PROFILE").env_remove("PROVISION_PROJECT");
    cmd
}

pub fn provision_in_repo(args: &[&str]) -> Run {
    Run::from(provision_cmd(&shared_cache()).current_dir(repo_root()).args(args).output().unwrap())
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "provision failed:\n{}", self.stderr);
        self
    }

    /// Failed the way a CLI should: exit 1 with a message, not a crash.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert_eq!(self.code, Some(1), "expected a clean failure (exit 1), got {:?}:\nstdout: {}\nstderr: {}", self.code, self.stdout, self.stderr);
        assert!(!self.stderr.contains("thread 'main' panicked"), "the host panicked:\n{}", self.stderr);
        self
    }

    /// stderr with the report's wrapped lines joined, for `contains` checks.
    pub fn message(&self) -> String {
        let lines = self.stderr.lines().map(|l| l.trim_start().trim_start_matches("│ ").trim());
        lines.collect::<Vec<_>>().join(" ")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl Project {
    pub fn provision_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = provision_cmd(&self.cache);
        cmd.current_dir(self.path()).args(args).envs(env.iter().copied());
        Run::from(cmd.output().unwrap())
    }
}

/// A project brought up on the real engine, with the stand-in images, and
/// taken down (volumes too) when the test ends, pass or fail.
pub struct Stack {
    pub project: Project,
    pub name: String,
}

impl Stack {
    /// `services` is the [services…] part of a stack.toml; the stack gets
    /// `name`, which must be unique per test (it names the project).
    pub fn new(name: &str, services: &str) -> Stack {
        let project = Project::new(&format!("[stack]\nname = \"{name}\"\n\n{services}"));
        Stack { project, name: name.to_string() }
    }

    /// A copy of an example folder (examples/NAME) as project `name`, its
    /// stack.toml passed through `edit`.
    pub fn from_example(example: &str, name: &str, edit: impl FnOnce(String) -> String) -> Stack {
        let project = Project::new("");
        copy_dir(&repo_root().join("examples").join(example), project.path());
        let _ = std::fs::remove_file(project.path().join("stack.lock"));
        let text = std::fs::read_to_string(project.path().join("stack.toml")).unwrap();
        let text = text.replacen(&format!("name = \"{example}\""), &format!("name = \"{name}\""), 1);
        project.write("stack.toml", &edit(text));
        Stack { project, name: name.to_string() }
    }

    pub fn provision(&self, args: &[&str]) -> Run {
        self.provision_env(args, &[])
    }

    /// With variables in the environment (`${VAR}` in stack.toml).
    pub fn provision_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let images = repo_root().join("tests/images/standins.toml");
        let mut env = env.to_vec();
        env.push(("PROVISION_IMAGES", images.to_str().unwrap()));
        self.project.provision_with_env(args, &env)
    }

    /// With `input` piped to provision's stdin.
    pub fn provision_input(&self, args: &[&str], input: &[u8]) -> Run {
        let images = repo_root().join("tests/images/standins.toml");
        let mut child = provision_cmd(&self.project.cache)
            .current_dir(self.project.path())
            .env("PROVISION_IMAGES", images)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input).unwrap();
        drop(stdin);
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn rewrite(&self, services: &str) {
        self.project.write("stack.toml", &format!("[stack]\nname = \"{}\"\n\n{services}", self.name));
    }

    /// `provision ps --json`, by service.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        self.provision(&["ps", "--json"]).ok().json().as_array().unwrap().clone()
    }

    pub fn container_id(&self, service: &str) -> String {
        let ps = self.ps();
        let row = ps.iter().find(|r| r["service"] == service).unwrap_or_else(|| panic!("no container for {service}: {ps:?}"));
        row["id"].as_str().unwrap().to_string()
    }

    /// The first published port of the service's main (`server`) container.
    pub fn host_port(&self, service: &str) -> u16 {
        let ps = self.ps();
        let main = ps.iter().find(|r| r["service"] == service && r["container"] == "server");
        let row = main.or_else(|| ps.iter().find(|r| r["service"] == service)).unwrap_or_else(|| panic!("no container for {service}: {ps:?}"));
        row["ports"][0].as_u64().unwrap() as u16
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.provision(&["down", "-v"]);
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An HTTP request to 127.0.0.1:`port`: (status, headers with lower-case
/// names, body). Any status is an answer here, not an error.
pub fn http(port: u16, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(std::time::Duration::from_secs(10))).build().into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let response = match method {
        "POST" => agent.post(&url).send_empty(),
        _ => agent.get(&url).call(),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let headers = response.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = response.body_mut().read_to_string().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (response.status().as_u16(), headers, body)
}

/// Poll `check` until it gives a value or `within` passes.
pub fn eventually<T>(within: std::time::Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(std::time::Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `docker` CLI output, to look at the engine independently of provision.
/// Held by tests that check the isolation of internal networks and by the
/// compose-export tests, which create and remove networks of their own:
/// Docker 20.10 rewrites its isolation rules as networks come and go, and a
/// reach across networks was seen while both ran at once.
pub static NETWORK_ISOLATION: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Debian's docker-registry (Distribution 2.8) on a free 127.0.0.1 port,
/// storing in a temp folder; stopped when dropped.
pub struct RegistryServer {
    pub address: String,
    child: std::process::Child,
    _storage: tempfile::TempDir,
}

impl RegistryServer {
    pub fn start(read_only: bool) -> RegistryServer {
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    readonly:\n      enabled: {read_only}\nhttp:\n  addr: {address}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/test installs Debian's docker-registry package)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "the registry did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RegistryServer { address, child, _storage: storage }
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second Docker daemon on its own socket, data root and exec root, and
/// in a network namespace of its own, for tests that kill the engine itself:
/// a daemon restarted after a crash deletes the host's docker0 when it shares
/// the host's network, which would break the tests beside it. (So its
/// containers are not reachable from the host: probe them by exec.) Stopped
/// and deleted when dropped.
pub struct SecondEngine {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// `unix://…`, for DOCKER_HOST.
    pub host: String,
}

impl SecondEngine {
    pub fn start() -> SecondEngine {
        let dir = tempfile::Builder::new().prefix("d2-").tempdir_in("/tmp").unwrap();
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let mut engine = SecondEngine { dir, child: None, host };
        engine.spawn();
        engine
    }

    fn spawn(&mut self) {
        let d = self.dir.path().display();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("dockerd.log")).unwrap();
        let dockerd = format!(
            "ip link set lo up 2>/dev/null; exec dockerd --host {} --data-root {d}/data --exec-root {d}/exec --pidfile {d}/docker.pid",
            self.host
        );
        let child = Command::new("unshare")
            .args(["--net", "--", "sh", "-c", &dockerd])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare and dockerd (scripts/test installs Debian's docker.io)");
        self.child = Some(child);
        let started = std::time::Instant::now();
        while !Command::new("docker").args(["-H", &self.host, "info"]).output().is_ok_and(|o| o.status.success()) {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "the second dockerd did not start: see {d}/dockerd.log");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// dockerd dies at once (SIGKILL), as in a crash; its containerd goes
    /// down with it. That containerd can linger as a zombie (this machine's
    /// init reaps late), and a new dockerd would take its pid file for a live
    /// containerd and wait for it forever: the file goes, as after a reboot.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("exec/containerd/containerd.pid"));
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `docker` against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker").args(["-H", &self.host]).args(args).output().unwrap()
    }

    /// Copy an image from the host's engine (no registry is reachable).
    pub fn load(&self, image: &str) {
        let status = Command::new("sh").args(["-c", &format!("docker save {image} | docker -H {} load -q", self.host)]).status().unwrap();
        assert!(status.success(), "could not load {image} into the second engine");
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A clean stop unmounts its layers, so the folder can go.
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        // Whatever a failed test left: shims, and mounts under the folder.
        let dir = self.dir.path().display().to_string();
        let _ = Command::new("pkill").args(["-KILL", "-f", &dir]).status();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&dir)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in under {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
    }
}

/// tests/registry/fake.py: a registry that misbehaves on purpose (each
/// repository name one way), on two ports of 127.0.0.1 (the second plays
/// another host); stopped when dropped.
pub struct FakeRegistry {
    pub address: String,
    pub other: String,
    child: std::process::Child,
}

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/registry/fake.py"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3, for tests/registry/fake.py");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = || lines.next().expect("the fake registry prints its ports").unwrap();
        let (first, second) = (port(), port());
        FakeRegistry { address: format!("127.0.0.1:{first}"), other: format!("127.0.0.1:{second}"), child }
    }

    /// What Authorization headers reached it, by port and path.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        let (_, _, body) = http(self.address.split(':').nth(1).unwrap().parse().unwrap(), "GET", "/seen");
        serde_json::from_str::<serde_json::Value>(&body).unwrap().as_array().unwrap().clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `cmd` to its end: what it printed, its own peak memory (from
/// wait4's rusage: this child's, not the test's other children) in KiB, and
/// how long it took. (wait4 reaps it, so std's wait is not called.)
#[allow(clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command) -> (Run, u64, std::time::Duration) {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut text = Vec::new();
        out.read_to_end(&mut text).unwrap();
        text
    });
    let mut stderr = Vec::new();
    err.read_to_end(&mut stderr).unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let run =
        Run { code, stdout: String::from_utf8_lossy(&stdout.join().unwrap()).into_owned(), stderr: String::from_utf8_lossy(&stderr).into_owned() };
    (run, usage.ru_maxrss as u64, started.elapsed())
}
