//! Registries the tests run: Debian's docker-registry, and a fake one that
//! misbehaves on purpose.

use std::process::Command;

use super::{http, repo_root};

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
