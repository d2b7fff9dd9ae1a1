//! `provision run` and `provision gc` on the real engine: a fresh project
//! around a command on the host, its exit codes, and that nothing is left
//! behind however the run ends.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
};

use crate::{
    docker::{CACHE, DB},
    support::{Stack, docker, needs_engine, provision_cmd, repo_root},
};

/// What the engine still has of the runs started in `stack`'s folder:
/// containers, networks and volumes, one name per line.
fn leftovers(stack: &Stack) -> String {
    let filter = format!("label=dev.provision.project-dir={}", stack.project.path().display());
    let containers = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    let networks = docker(&["network", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
    let volumes = docker(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
    format!("{containers}{networks}{volumes}")
}

/// `provision run ARGS` started in the background, stderr read as it comes.
fn spawn_run(stack: &Stack, args: &[&str]) -> Child {
    let mut cmd = provision_cmd(&stack.project.cache);
    cmd.current_dir(stack.project.path())
        .env("PROVISION_IMAGES", repo_root().join("tests/images/standins.toml"))
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so that the test can end the whole run.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().unwrap()
}

/// Read the child's stderr until a line contains `text` (panics when it ends first).
fn wait_for(child: &mut Child, text: &str) -> String {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "ended before `{text}`:\n{seen}");
        seen.push_str(&line);
        if line.contains(text) {
            // Keep draining, so the run never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return seen;
        }
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a child of this test.
    unsafe { libc::kill(child.id() as i32, signal) };
}

#[test]
fn run_hands_the_command_its_environment_and_returns_its_exit_code() {
    needs_engine!();
    let stack = Stack::new("e2e-run", &format!("{DB}{CACHE}"));
    let check =
        r#"test "$(psql "$DB_URL" -tAc 'SELECT 40 + 2')" = 42 && test "$CACHE_HOST" = 127.0.0.1 && echo "project $PROVISION_PROJECT" && exit 7"#;
    let run = stack.provision(&["run", "--", "sh", "-c", check]);
    assert_eq!(run.code, Some(7), "{}", run.stderr);
    assert!(run.stdout.starts_with("project e2e-run-"), "a fresh project of the stack: {}", run.stdout);
    assert_eq!(leftovers(&stack), "", "the run removed everything it made");

    let run = stack.provision(&["run", "--json", "--env-prefix", "T_", "--", "sh", "-c", "test -n \"$T_DB_URL\""]).ok();
    let events: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e["event"] == "run" && e["ready_ms"].as_u64().is_some()), "{}", run.stdout);
    assert!(events.iter().any(|e| e["event"] == "exit" && e["code"] == 0), "{}", run.stdout);
    assert_eq!(stack.provision(&["run", "--", "no-such-command-here"]).code, Some(127));
    assert_eq!(leftovers(&stack), "");
}

#[test]
fn a_failing_service_ends_the_run_with_the_environment_code_and_its_log() {
    needs_engine!();
    let broken = "[services.migrate]\nplugin = \"container\"\nimage = \"provision-standin/redis:7\"\n\
        command = [\"sh\", \"-c\", \"echo the schema is broken >&2; exit 3\"]\nonce = true\n";
    let stack = Stack::new("e2e-run-fail", &format!("{CACHE}{broken}"));
    let run = stack.provision(&["run", "--", "sh", "-c", "echo the command ran"]);
    assert_eq!(run.code, Some(125), "{}", run.stderr);
    assert!(!run.stdout.contains("the command ran"));
    assert!(run.stderr.contains("service `migrate` failed") && run.stderr.contains("the schema is broken"), "{}", run.stderr);
    assert!(!run.stderr.contains("kept for inspection"), "it was removed: {}", run.stderr);
    assert_eq!(leftovers(&stack), "");
}

#[test]
fn sigint_or_sigterm_at_any_moment_leaves_nothing() {
    needs_engine!();
    let stack = Stack::new("e2e-run-signal", &format!("{DB}{CACHE}"));
    // SIGTERM while the command runs: passed on, then everything removed.
    let mut run = spawn_run(&stack, &["--", "sleep", "60"]);
    wait_for(&mut run, "is ready");
    signal(&run, libc::SIGTERM);
    assert_eq!(run.wait().unwrap().code(), Some(143));
    assert_eq!(leftovers(&stack), "");
    // SIGINT while the stack is coming up.
    let mut run = spawn_run(&stack, &["--", "sleep", "60"]);
    wait_for(&mut run, "starting");
    signal(&run, libc::SIGINT);
    assert_eq!(run.wait().unwrap().code(), Some(130));
    assert_eq!(leftovers(&stack), "");
}

#[test]
fn two_runs_of_one_stack_at_once_share_nothing() {
    needs_engine!();
    let stack = Stack::new("e2e-run-twice", &format!("{DB}{CACHE}"));
    let report = r#"psql "$DB_URL" -tAc "CREATE TABLE mine (x int)" >/dev/null && echo "$PROVISION_PROJECT $DB_PORT $CACHE_PORT""#;
    let runs: Vec<Child> = (0..2).map(|_| spawn_run(&stack, &["--", "sh", "-c", report])).collect();
    let outputs: Vec<_> = runs.into_iter().map(|r| r.wait_with_output().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let words: Vec<Vec<String>> =
        outputs.iter().map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect()).collect();
    for i in 0..3 {
        assert_ne!(words[0][i], words[1][i], "project, database port and cache port differ: {words:?}");
    }
    assert_eq!(leftovers(&stack), "");
}

#[test]
fn gc_removes_what_a_killed_run_left_and_never_an_up_project() {
    needs_engine!();
    let kept = Stack::new("e2e-gc-up", CACHE);
    kept.provision(&["up"]).ok();
    let stack = Stack::new("e2e-gc-run", &format!("{DB}{CACHE}"));
    let mut run = spawn_run(&stack, &["--", "sleep", "60"]);
    wait_for(&mut run, "is ready");
    // The whole group: provision and its command, as a CI runner would.
    // SAFETY: kill(2) on the group of a child of this test.
    unsafe { libc::kill(-(run.id() as i32), libc::SIGKILL) };
    run.wait().unwrap();
    assert!(leftovers(&stack).contains("_db_server"), "a killed run cannot clean up");

    let gc = stack.provision(&["gc"]).ok();
    assert!(gc.stderr.contains("removed e2e-gc-run-") && gc.stderr.contains("is gone"), "{}", gc.stderr);
    assert_eq!(leftovers(&stack), "");
    assert_eq!(kept.ps().len(), 1, "the project `up` made is untouched");
}

#[test]
fn gc_gone_removes_a_project_whose_folder_was_deleted_and_keeps_one_whose_folder_is_there() {
    needs_engine!();
    let kept = Stack::new("e2e-gc-there", CACHE);
    kept.provision(&["up"]).ok();
    let deleted = Stack::new("e2e-gc-gone", &format!("{DB}{CACHE}"));
    deleted.provision(&["up"]).ok();
    // The checkout is deleted without `down` (moved away here, and back at the end).
    let path = deleted.project.path().to_path_buf();
    let moved = path.with_extension("moved");
    std::fs::rename(&path, &moved).unwrap();
    let _back = Restore(moved, path.clone());
    assert!(leftovers(&deleted).contains("e2e-gc-gone_db_data"), "its volume is still there");

    // Its name is refused elsewhere, with the way out in the help.
    let again = Stack::new("e2e-gc-gone", CACHE);
    let refused = again.provision(&["up"]).failed();
    assert!(refused.message().contains("`provision gc --gone` removes what it left"), "{}", refused.stderr);

    let plain = kept.provision(&["gc"]).ok();
    assert!(leftovers(&deleted).contains("_db_server"), "plain gc never touches a project `up` made: {}", plain.stderr);
    let gc = kept.provision(&["gc", "--gone", "--json"]).ok();
    let removed: Vec<serde_json::Value> = gc.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let gone = removed.iter().find(|r| r["project"] == "e2e-gc-gone").unwrap_or_else(|| panic!("{}", gc.stdout));
    assert_eq!((gone["containers"].as_u64(), gone["volumes"].as_u64()), (Some(2), Some(2)), "{gone}");
    assert!(gone["why"].as_str().unwrap().contains(&path.display().to_string()), "{gone}");
    assert_eq!(leftovers(&deleted), "");
    assert_eq!(kept.ps().len(), 1, "a project whose folder is there is untouched");
    again.provision(&["up"]).ok();
}

/// Moves a folder back where it was when dropped, pass or fail.
struct Restore(std::path::PathBuf, std::path::PathBuf);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.0, &self.1);
    }
}

#[test]
fn a_one_off_runs_with_the_service_image_and_network_and_is_removed() {
    needs_engine!();
    let stack = Stack::new("e2e-one-off", CACHE);
    stack.provision(&["up"]).ok();
    let ping = stack.provision(&["run", "cache", "--", "redis-cli", "-h", "cache", "ping"]).ok();
    assert_eq!(ping.stdout.trim(), "PONG", "it reaches the service by name");
    assert_eq!(stack.provision(&["run", "cache", "--", "sh", "-c", "exit 4"]).code, Some(4));
    let echoed = stack.provision_input(&["run", "cache", "--", "wc", "-c"], b"twelve bytes");
    assert_eq!(echoed.stdout.trim(), "12", "stdin is passed: {}", echoed.stderr);
    assert_eq!(stack.ps().len(), 1, "only the service's own container is left");
}

#[test]
fn a_one_off_runs_the_image_the_service_runs_not_a_newer_build() {
    needs_engine!();
    let stack = Stack::new("e2e-one-off-build", "[services.web]\nplugin = \"container\"\nbuild = \"web\"\ncommand = [\"sleep\", \"infinity\"]\n");
    std::fs::create_dir_all(stack.project.path().join("web")).unwrap();
    stack.project.write("web/Dockerfile", "FROM provision-standin/debian:bookworm\nCOPY version /version\n");
    stack.project.write("web/version", "one\n");
    stack.provision(&["up"]).ok();
    // Changed since `up`: the one-off still runs what the service runs.
    stack.project.write("web/version", "two\n");
    let cat = stack.provision(&["run", "web", "--", "cat", "/version"]).ok();
    assert_eq!(cat.stdout.trim(), "one", "{}", cat.stderr);
    stack.provision(&["up"]).ok();
    assert_eq!(stack.provision(&["run", "web", "--", "cat", "/version"]).ok().stdout.trim(), "two", "after the rebuild");
}
