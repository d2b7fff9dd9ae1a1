//! Living in an environment after `up` (issue 30): part of a stack brought
//! up, services stopped and started again in place, and their logs read
//! by time, on the real engine.

use std::collections::BTreeSet;

use crate::support::{Stack, needs_engine};

/// Five services: web waits for db, worker for cache; mail for nothing.
const FIVE: &str = r#"
[services.db]
plugin = "postgres"
port = 0

[services.cache]
plugin = "redis"
port = 0

[services.web]
plugin = "container"
image = "redis:7-alpine"
command = ["sh", "-c", "echo web booted; exec sleep infinity"]
after = ["db"]

[services.worker]
plugin = "container"
image = "redis:7-alpine"
command = ["sleep", "infinity"]
after = { cache = "started" }

[services.mail]
plugin = "container"
image = "redis:7-alpine"
command = ["sleep", "infinity"]
"#;

fn services(stack: &Stack) -> BTreeSet<String> {
    stack.ps().iter().map(|r| r["service"].as_str().unwrap().to_string()).collect()
}

fn ids(stack: &Stack) -> Vec<(String, String)> {
    let mut ids: Vec<_> = stack.ps().iter().map(|r| (r["service"].as_str().unwrap().into(), r["id"].as_str().unwrap().into())).collect();
    ids.sort();
    ids
}

fn running(stack: &Stack, service: &str) -> bool {
    stack.ps().iter().any(|r| r["service"] == service && r["state"].as_str().unwrap().starts_with("running"))
}

#[test]
fn up_web_makes_web_and_what_it_waits_for_and_stop_start_restart_keep_the_containers() {
    needs_engine!();
    let stack = Stack::new("e2e-lifecycle", FIVE);
    let up = stack.provision(&["up", "web"]).ok();
    assert_eq!(services(&stack), BTreeSet::from(["db".to_string(), "web".to_string()]), "{}", up.stderr);
    let unknown = stack.provision(&["up", "wbe"]).failed();
    assert!(unknown.message().contains("no service `wbe`"), "{}", unknown.stderr);

    stack.provision(&["up", "worker"]).ok();
    assert_eq!(services(&stack).len(), 4, "db and web are left as they were, cache and worker added");
    stack.provision(&["up"]).ok();
    let before = ids(&stack);
    assert_eq!(before.len(), 5);

    // Stopped, then started: the same container, ready again, and its
    // password hook run again (a snapshot's data may have another).
    let stopped = stack.provision(&["stop", "db"]).ok();
    assert!(stopped.stderr.contains("stopped db"), "{}", stopped.stderr);
    assert!(!running(&stack, "db") && running(&stack, "web"), "only db stopped");
    let row = |service: &str| stack.ps().into_iter().find(|r| r["service"] == service && r["container"] == "server").unwrap();
    assert_eq!(row("db")["state"], "stopped", "ps says stopped, not exited (143)");
    // Right after up said ready, ps says so too (the engine's own check may
    // still be starting: it says which is which).
    let health = row("cache")["health"].as_str().unwrap().to_string();
    assert!(health == "healthy" || health.starts_with("ready (docker: "), "not the engine's bare `starting`: {health}");
    let started = stack.provision(&["start", "db"]).ok();
    assert!(started.stderr.contains("hook: set password"), "the start hook ran again: {}", started.stderr);
    let ready = stack.provision(&["exec", "db", "--", "pg_isready", "-U", "app"]).ok();
    assert!(ready.stdout.contains("accepting connections"), "{}", ready.stdout);

    stack.provision(&["restart", "web", "worker"]).ok();
    // `up` after `stop` starts what was stopped, recreating nothing.
    stack.provision(&["stop"]).ok();
    assert!(!running(&stack, "mail") && !running(&stack, "cache"));
    let again = stack.provision(&["up"]).ok();
    assert!(again.stderr.contains("0 created, 0 recreated"), "{}", again.stderr);
    assert_eq!(ids(&stack), before, "every container kept its id");
    assert!(["db", "cache", "web", "worker", "mail"].iter().all(|s| running(&stack, s)));

    // A service changed since `up` is not started as it was.
    stack.rewrite(&FIVE.replace("echo web booted", "echo web booted again"));
    let refused = stack.provision(&["restart", "web"]).failed();
    assert!(refused.message().contains("`web`'s `server` cannot just be started: it changed since `up` (command)"), "{}", refused.stderr);
    assert!(running(&stack, "web"), "nothing was stopped");
}

#[test]
fn logs_of_several_services_by_time_with_time_stamps() {
    needs_engine!();
    let stack = Stack::new(
        "e2e-logs",
        &FIVE[FIVE.find("[services.web]").unwrap()..].replace("after = [\"db\"]\n", "").replace("after = { cache = \"started\" }\n", ""),
    );
    stack.provision(&["up", "web", "worker"]).ok();
    let all = stack.provision(&["logs", "web", "worker", "--timestamps"]).ok();
    let line = all.stdout.lines().find(|l| l.contains("web booted")).unwrap_or_else(|| panic!("{}", all.stdout));
    // `web/server | 2026-12-03T12:08:41.684883047Z web booted`, prefixes padded to one width.
    let (prefix, rest) = line.split_once(" | ").unwrap();
    assert_eq!(prefix, "web/server   ", "{line}");
    assert!(rest.split(' ').next().unwrap().parse::<humantime::Timestamp>().is_ok(), "{line}");

    let later = stack.provision(&["logs", "web", "--since", "2099-01-01T00:00:00Z"]).ok();
    assert_eq!(later.stdout, "", "nothing was logged after 2099");
    let recent = stack.provision(&["logs", "web", "--since", "10m", "--until", "2099-01-01T00:00:00"]).ok();
    assert!(recent.stdout.contains("web booted"), "{}", recent.stdout);
    let bad = stack.provision(&["logs", "--since", "yesterday"]);
    assert_eq!(bad.code, Some(2), "a usage error");
    assert!(bad.stderr.contains("neither a time"), "{}", bad.stderr);
    let unknown = stack.provision(&["logs", "mail"]).failed();
    assert!(unknown.message().contains("no containers for service `mail`"), "{}", unknown.stderr);
}

#[test]
fn build_makes_images_starting_nothing_and_after_no_cache_up_recreates_what_runs_them() {
    needs_engine!();
    let stack = Stack::new("e2e-build", "[services.api]\nplugin = \"container\"\nbuild = \"api\"\ncommand = [\"sleep\", \"infinity\"]\n");
    std::fs::create_dir_all(stack.project.path().join("api")).unwrap();
    // A Dockerfile of this run's own (an image of an earlier run would be up to date).
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    stack.project.write("api/Dockerfile", &format!("FROM provision-standin/debian:bookworm\n# run {run}\nRUN date +%s%N > /built\n"));
    let built = stack.provision(&["build"]).ok();
    assert!(built.stderr.contains("api: built provision-build/e2e-build:"), "{}", built.stderr);
    assert!(stack.ps().is_empty(), "nothing was started");
    let again = stack.provision(&["build", "api"]).ok();
    assert!(again.stderr.contains("api: up to date: provision-build/e2e-build:"), "{}", again.stderr);

    stack.provision(&["up"]).ok();
    let stamp = || stack.provision(&["exec", "api", "--", "cat", "/built"]).ok().stdout;
    let first = stamp();
    let fresh = stack.provision(&["build", "--no-cache"]).ok();
    assert!(fresh.stderr.contains("api: built") && fresh.stderr.contains("`provision up` recreates"), "{}", fresh.stderr);
    let up = stack.provision(&["up"]).ok();
    assert!(up.stderr.contains("0 created, 1 recreated, 0 kept"), "the container ran the old image: {}", up.stderr);
    assert_ne!(stamp(), first, "the image was built again from nothing");
    let quiet = stack.provision(&["up"]).ok();
    assert!(quiet.stderr.contains("0 created, 0 recreated, 1 kept"), "{}", quiet.stderr);
}

/// `cp` both ways; out of a container, what it holds decides the tar, so
/// a link or a FIFO in it is not made here (SECURITY.md, "cp").
#[test]
fn cp_copies_files_both_ways_and_brings_no_link_or_special_file_out() {
    needs_engine!();
    let stack = Stack::new(
        "e2e-cp",
        r#"[services.box]
plugin = "container"
image = "provision-standin/debian:bookworm"
command = ["sh", "-c", "mkdir -p /data/sub && echo report > /data/sub/r.txt && ln -s /etc/passwd /data/passwd && mkfifo /data/pipe && exec sleep infinity"]
"#,
    );
    stack.provision(&["up"]).ok();
    let here = stack.project.path();
    std::fs::create_dir(here.join("out")).unwrap();
    let out = stack.provision(&["cp", "box:/data", "out/data"]).ok();
    assert!(out.stderr.contains("copied 1 file"), "{}", out.stderr);
    assert!(out.stderr.contains("not copied: data/passwd: a link") && out.stderr.contains("not copied: data/pipe"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(here.join("out/data/sub/r.txt")).unwrap(), "report\n");
    assert!(std::fs::symlink_metadata(here.join("out/data/passwd")).is_err() && std::fs::symlink_metadata(here.join("out/data/pipe")).is_err());
    // Into a folder that is there: under its own name, as docker cp does.
    stack.provision(&["cp", "box:/data/sub/r.txt", "out"]).ok();
    assert!(here.join("out/r.txt").is_file());

    // Here to there: a file into a folder, and the project folder, whose
    // .provision (the secret key) stays here.
    stack.project.write("seed.sql", "select 1;");
    stack.provision(&["cp", "seed.sql", "box:/tmp/"]).ok();
    let into = stack.provision(&["cp", ".", "box:/copy"]).ok();
    assert!(into.stderr.contains("the project's secret key and state stay here"), "{}", into.stderr);
    let seen = stack.provision(&["exec", "box", "--", "sh", "-c", "cat /tmp/seed.sql; ls -A /copy"]).ok().stdout;
    assert!(seen.starts_with("select 1;") && seen.contains("stack.toml") && !seen.contains(".provision"), "{seen}");
    let refused = stack.provision(&["cp", "box:relative", "out"]).failed();
    assert!(refused.message().contains("not an absolute path in the container"), "{}", refused.stderr);
}

/// A service's main process on a TTY, typed into by `attach`, twice:
/// stdin stays open after the first detaches.
const REPL: &str = r#"
[services.repl]
plugin = "container"
image = "provision-standin/debian:bookworm"
command = ["sh", "-c", "echo booted; while read line; do [ \"$$line\" = quit ] && exit 3; echo \"you said: $$line\"; done"]
stdin_open = true
tty = true

[services.ticker]
plugin = "container"
image = "provision-standin/debian:bookworm"
command = ["sh", "-c", "while true; do echo tick; sleep 1; done"]
"#;

/// `provision attach` beside the test: its stdin to write to, its stdout
/// as it comes, and its end.
struct Attached {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    output: std::sync::mpsc::Receiver<u8>,
    seen: Vec<u8>,
}

impl Attached {
    /// On pipes, or with `pty` on a terminal of its own (`script` makes
    /// one): then provision's stdout and stderr both come on stdout.
    fn start(stack: &Stack, service: &str, pty: bool) -> Attached {
        let provision = crate::support::provision_cmd(&stack.project.cache);
        let mut command = if pty {
            let mut script = std::process::Command::new("script");
            script.arg("-qec").arg(format!("{} attach {service}", provision.get_program().to_str().unwrap())).arg("/dev/null");
            for (key, value) in provision.get_envs() {
                match value {
                    Some(value) => script.env(key, value),
                    None => script.env_remove(key),
                };
            }
            script
        } else {
            let mut provision = provision;
            provision.args(["attach", service]);
            provision
        };
        let mut child = command
            .current_dir(stack.project.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (stdin, mut stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let (sender, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut byte = [0u8];
            while std::io::Read::read(&mut stdout, &mut byte).unwrap_or(0) == 1 && sender.send(byte[0]).is_ok() {}
        });
        Attached { child, stdin, output, seen: Vec::new() }
    }

    fn write(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.stdin, bytes).unwrap();
    }

    /// Waits (long: a hang, not a speed check) until stdout has shown `text`.
    fn shows(&mut self, text: &str) {
        while !String::from_utf8_lossy(&self.seen).contains(text) {
            let byte = self.output.recv_timeout(std::time::Duration::from_secs(120));
            self.seen.push(byte.unwrap_or_else(|_| panic!("no {text:?} from attach; it printed {:?}", String::from_utf8_lossy(&self.seen))));
        }
    }

    /// Its exit code, and all it printed (stdout, then stderr), once it has ended.
    fn end(mut self) -> (Option<i32>, String) {
        drop(self.stdin);
        let out = self.child.wait_with_output().unwrap();
        self.seen.extend(self.output.iter());
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&self.seen), String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn attach_types_into_the_main_process_and_ctrl_p_ctrl_q_leaves_it_running() {
    needs_engine!();
    let stack = Stack::new("e2e-attach", REPL);
    stack.provision(&["up"]).ok();
    let id = stack.container_id("repl");

    // At a terminal: ours raw, so keys reach the container's TTY as typed.
    let mut attached = Attached::start(&stack, "repl", true);
    attached.shows("ctrl-p ctrl-q detaches");
    attached.write(b"hello\r");
    attached.shows("you said: hello");
    attached.write(b"\x10\x11");
    let (code, stderr) = attached.end();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("detached from repl: it is still running"), "{stderr}");
    assert!(running(&stack, "repl") && stack.container_id("repl") == id, "the same process runs on");

    // Its stdin is still open: a second attach types into it, and the
    // process's exit is attach's.
    let mut again = Attached::start(&stack, "repl", false);
    again.write(b"once more\n");
    again.shows("you said: once more");
    again.write(b"quit\n");
    let (code, stderr) = again.end();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("repl's main process exited with code 3"), "{stderr}");

    // Without stdin_open: its output, what to set, and Ctrl-C detaches.
    let mut output_only = Attached::start(&stack, "ticker", false);
    output_only.shows("tick");
    unsafe { libc::kill(output_only.child.id() as i32, libc::SIGINT) };
    let (code, stderr) = output_only.end();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("set `stdin_open = true` and `tty = true` under [services.ticker]"), "{stderr}");
    assert!(stderr.contains("detached from ticker"), "{stderr}");
    assert!(running(&stack, "ticker"));

    let bad = stack.provision(&["attach", "repl", "--detach-keys", "ctrl-pq"]);
    assert_eq!(bad.code, Some(2), "a usage error: {}", bad.stderr);
    assert!(bad.stderr.contains("not a key sequence"), "{}", bad.stderr);
}
