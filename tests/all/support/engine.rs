//! The Docker engine the end-to-end tests need: whether this run has one,
//! the `docker` CLI beside provision, and a second engine to kill.

use std::process::{Command, Output};

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
            if std::env::var_os("CI").is_some_and(|v| v == "true") {
                remove_earlier_runs_leftovers();
            }
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

/// A CI machine may be a snapshot of one where tests were running: their
/// projects are still on the engine, in temporary folders that may still
/// be there, and a test of the same name would be refused as another
/// checkout's. Before any test starts, whatever a project in a test's kind
/// of folder left is removed (swarm services first: they hold networks).
/// Only in CI: on a developer's machine that is theirs to remove.
fn remove_earlier_runs_leftovers() {
    let prefix = std::env::temp_dir().join(".tmp").display().to_string();
    let dir = "{{.Label \"dev.provision.project-dir\"}}";
    let ours = |list: &[&str], format: &str| -> Vec<String> {
        docker(&[list, &["--filter", "label=dev.provision.project-dir", "--format", format]].concat())
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, d)| d.starts_with(&prefix))
            .map(|(id, _)| id.to_string())
            .collect()
    };
    let services: Vec<String> = docker(&["service", "ls", "--filter", "label=dev.provision.project-dir", "-q"])
        .lines()
        .filter(|id| docker(&["service", "inspect", id, "--format", "{{index .Spec.Labels \"dev.provision.project-dir\"}}"]).starts_with(&prefix))
        .map(str::to_string)
        .collect();
    let containers = ours(&["ps", "-a"], &format!("{{{{.ID}}}} {dir}"));
    let networks = ours(&["network", "ls"], &format!("{{{{.ID}}}} {dir}"));
    let volumes = ours(&["volume", "ls"], &format!("{{{{.Name}}}} {dir}"));
    for (what, rm, ids) in [
        ("services", &["service", "rm"][..], services),
        ("containers", &["rm", "-f", "-v"][..], containers),
        ("networks", &["network", "rm"][..], networks),
        ("volumes", &["volume", "rm", "-f"][..], volumes),
    ] {
        if !ids.is_empty() {
            eprintln!("removing {} {what} an earlier test run left", ids.len());
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            docker(&[rm, &ids[..]].concat());
        }
    }
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

/// Held by tests that check the isolation of internal networks and by the
/// compose-export tests, which create and remove networks of their own:
/// Docker 20.10 rewrites its isolation rules as networks come and go, and a
/// reach across networks was seen while both ran at once.
pub static NETWORK_ISOLATION: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `docker` CLI output, to look at the engine independently of provision.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
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
