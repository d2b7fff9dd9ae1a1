//! Running the real binary in throwaway project folders; `engine` holds
//! what the end-to-end tests need of Docker, `registry` the registries
//! they run.

mod engine;
mod registry;

pub use engine::*;
pub use registry::*;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

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
