//! `provision watch` on the real engine: each action a rule can name, the
//! order a batch keeps between services, and the rule for watch rules
//! (SECURITY.md, "Watch rules"): a plugin's rule names the project's own
//! files, and `sync` copies no host file a link points at.

use std::{io::BufRead, process::Child, sync::mpsc, time::Duration};

use crate::support::{Project, Stack, docker, needs_engine, provision_cmd, repo_root};

/// `provision watch --json` running beside the test; its events as they come.
struct Watching {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
}

impl Watching {
    fn start(stack: &Stack) -> Watching {
        let mut child = provision_cmd(&stack.project.cache)
            .current_dir(stack.project.path())
            .env("PROVISION_IMAGES", repo_root().join("tests/images/standins.toml"))
            .args(["watch", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line) {
                    let _ = sender.send(event);
                }
            }
        });
        let watching = Watching { child, events };
        watching.next(|e| e["event"] == "watching", "watch to start");
        watching
    }

    /// The next event `matches`; on a loaded machine a build and readiness
    /// may take a while, so the wait is long (a hang, not a speed check).
    fn next(&self, matches: impl Fn(&serde_json::Value) -> bool, what: &str) -> serde_json::Value {
        loop {
            let event = self.events.recv_timeout(Duration::from_secs(240)).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            if event["event"] == "up" && event["ok"] == false {
                panic!("an up inside watch failed: {event}");
            }
            if matches(&event) {
                return event;
            }
        }
    }

    /// The `watch` event of `service` whose actions are `actions`, which must be ok.
    fn done(&self, service: &str, actions: &str) -> serde_json::Value {
        let event = self.next(|e| e["event"] == "watch" && e["service"] == service, &format!("{service}: {actions}"));
        assert_eq!(event["actions"], actions, "{event}");
        assert_eq!(event["ok"], true, "{event}");
        event
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        // Ctrl-C: it stops watching and leaves the stack running.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

const STACK: &str = r#"
[services.api]
plugin = "container"
build = "app"
command = ["sh", "-c", "echo started >> /tmp/starts; exec sleep infinity"]
tasks = { prep = "echo prepared" }
watch = [
  { path = "app/src/", action = "sync", target = "/app/src", ignore = ["*.pyc"] },
  { path = "app/Gemfile.lock", action = ["rerun", "restart"], task = "prep" },
  { path = "app/conf/", action = "exec", command = "cat /app/src/hello.txt > /tmp/hooked" },
  { path = "app/docs/", action = "none" },
]

[services.worker]
plugin = "container"
image = "provision-standin/debian:bookworm"
command = ["sleep", "infinity"]
after = ["api"]
watch = [{ path = "app/Gemfile.lock", action = "restart" }]
"#;

fn started_at(container: &str) -> String {
    docker(&["inspect", "-f", "{{.State.StartedAt}}", container]).trim().to_string()
}

#[test]
fn watch_syncs_reruns_restarts_execs_and_rebuilds_each_service_after_what_it_uses() {
    needs_engine!();
    let stack = Stack::new("e2e-watch", STACK);
    let project = &stack.project;
    std::fs::create_dir_all(project.path().join("app/src")).unwrap();
    std::fs::create_dir_all(project.path().join("app/conf")).unwrap();
    std::fs::create_dir_all(project.path().join("app/docs")).unwrap();
    project.write("app/Dockerfile", "FROM provision-standin/debian:bookworm\nCOPY src/ /app/src/\n");
    project.write("app/src/hello.txt", "v1");
    project.write("app/src/old.txt", "old");
    project.write("app/Gemfile.lock", "rack (1.0)");
    let watching = Watching::start(&stack);
    let (api, worker, prep) = ("e2e-watch_api_server", "e2e-watch_worker_server", "e2e-watch_api_prep");
    let api_id = docker(&["inspect", "-f", "{{.Id}}", api]);

    // sync: changed, new and removed files; an ignored one and a link to a
    // host file stay behind.
    project.write("app/src/hello.txt", "v2");
    project.write("app/src/new.txt", "new");
    std::fs::remove_file(project.path().join("app/src/old.txt")).unwrap();
    project.write("app/src/cache.pyc", "bytecode");
    std::os::unix::fs::symlink("/etc/hostname", project.path().join("app/src/hostname")).unwrap();
    let synced = watching.done("api", "sync to /app/src");
    assert!(synced["changed_count"].as_u64().unwrap() >= 4, "{synced}");
    let seen = docker(&["exec", api, "sh", "-c", "cat /app/src/hello.txt; echo; cat /app/src/new.txt; echo; ls /app/src"]);
    assert_eq!(seen.split_whitespace().collect::<Vec<_>>(), ["v2", "new", "hello.txt", "new.txt"], "{seen}");

    // A burst of 500 writes (a checkout) is one action.
    std::fs::create_dir_all(project.path().join("app/src/burst")).unwrap();
    for i in 0..500 {
        std::fs::write(project.path().join(format!("app/src/burst/{i}.txt")), "x").unwrap();
    }
    let burst = watching.done("api", "sync to /app/src");
    assert_eq!(burst["changed_count"], 501, "the folder and its files, those written before inotify watched it too: {burst}");
    assert_eq!(docker(&["exec", api, "sh", "-c", "ls /app/src/burst | wc -l"]).trim(), "500");

    // A file the rules leave alone does nothing; the next change still acts
    // (and is the next event: the burst was one).
    project.write("app/docs/guide.md", "nothing to do");
    project.write("app/conf/app.conf", "exec");
    watching.done("api", "exec /bin/sh -c cat /app/src/hello.txt > /tmp/hooked");
    assert_eq!(docker(&["exec", api, "cat", "/tmp/hooked"]), "v2");

    // rerun then restart for api, and worker restarts only once api is done.
    let worker_before = started_at(worker);
    project.write("app/Gemfile.lock", "rack (2.0)");
    watching.done("api", "rerun prep, restart");
    watching.done("worker", "restart");
    assert_eq!(docker(&["logs", prep]).matches("prepared").count(), 2, "the task ran again");
    assert_eq!(docker(&["exec", api, "cat", "/tmp/starts"]).matches("started").count(), 2, "restarted in place, not recreated");
    let (task_done, worker_after) = (docker(&["inspect", "-f", "{{.State.FinishedAt}}", prep]), started_at(worker));
    assert!(worker_after > worker_before && worker_after.trim() > task_done.trim(), "worker {worker_after} after prep {task_done}");

    // rebuild: a new image, api recreated from it; worker is untouched.
    project.write("app/Dockerfile", "FROM provision-standin/debian:bookworm\nCOPY src/ /app/src/\nENV REBUILT=1\n");
    watching.done("api", "rebuild");
    assert_ne!(docker(&["inspect", "-f", "{{.Id}}", api]), api_id, "api was recreated");
    assert_eq!(docker(&["exec", api, "sh", "-c", "echo $REBUILT"]).trim(), "1");
    assert_eq!(started_at(worker), worker_after, "worker's image did not change");

    // A Dockerfile that does not build: reported, and the old container runs on.
    let rebuilt_id = docker(&["inspect", "-f", "{{.Id}}", api]);
    project.write("app/Dockerfile", "FROM provision-standin/debian:bookworm\nRUN exit 3\n");
    let failed = loop {
        // (Not `next`: this up's failure is the point.)
        let event = watching.events.recv_timeout(Duration::from_secs(240)).expect("the failed rebuild's event");
        if event["event"] == "watch" && event["service"] == "api" {
            break event;
        }
    };
    assert_eq!((&failed["actions"], &failed["ok"]), (&"rebuild".into(), &false.into()), "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("returned a non-zero code: 3"), "{failed}");
    assert_eq!(docker(&["inspect", "-f", "{{.Id}} {{.State.Running}}", api]).trim(), format!("{} true", rebuilt_id.trim()));
    assert_eq!(started_at(worker), worker_after, "worker runs on, untouched");
    drop(watching);
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", api]).trim(), "true", "the stack keeps running after watch");
}

/// nginx's own rule: its TLS files changed → `nginx -s reload` in place.
#[test]
fn nginx_reloads_its_certificate_without_a_restart() {
    needs_engine!();
    let stack = Stack::new(
        "e2e-watch-nginx",
        "[services.site]\nplugin = \"nginx\"\nport = 0\nlocations = { \"/\" = \"public\" }\ntls = { cert = \"certs/localhost.crt\", key = \"certs/localhost.key\", port = 0 }\n",
    );
    std::fs::create_dir_all(stack.project.path().join("public")).unwrap();
    let certs = stack.project.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for file in ["localhost.crt", "localhost.key"] {
        std::fs::copy(repo_root().join("tests/certs").join(file), certs.join(file)).unwrap();
    }
    let watching = Watching::start(&stack);
    let site = "e2e-watch-nginx_site_server";
    let before = started_at(site);
    let workers = || {
        let list = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q 'worker process' && basename $p; done";
        docker(&["exec", site, "sh", "-c", list]).split_whitespace().map(str::to_string).collect::<std::collections::BTreeSet<_>>()
    };
    let old_workers = workers();
    assert!(!old_workers.is_empty());
    // Written in place, as a renewal script does (the bind keeps its inode).
    let cert = std::fs::read(certs.join("localhost.crt")).unwrap();
    std::fs::write(certs.join("localhost.crt"), cert).unwrap();
    watching.done("site", "exec nginx -s reload");
    assert_eq!(started_at(site), before, "reloaded, not restarted");
    // A reload starts new workers (the old ones finish their requests first).
    crate::support::eventually(Duration::from_secs(60), "new nginx workers", || workers().difference(&old_workers).next().cloned());
}

fn mischief(config: &str) -> Project {
    let project = Project::new(&format!("[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{config}\n"));
    project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    project
}

#[test]
fn a_plugins_watch_rule_cannot_name_a_file_outside_the_project() {
    let linked = mischief("watch_path = \"etc/\"\nwatch_sync = \"/app\"");
    std::os::unix::fs::symlink("/etc", linked.path().join("etc")).unwrap();
    for (project, path) in [
        (mischief("watch_path = \"../\"\nwatch_sync = \"/app\""), "../"),
        (mischief("watch_path = \"/etc/shadow\""), "/etc/shadow"),
        (linked, "etc/"),
    ] {
        let run = project.provision(&["plan"]).failed();
        let message = run.message();
        assert!(message.contains("plugin `mischief` 0.1.0 (service `x`) is refused"), "{message}");
        // (The message is wrapped at the terminal's width.)
        assert!(message.replace(' ', "").contains(&format!("watch.0.path{path:?}isnotapathinsidetheprojectfolder")), "{message}");
    }
    // Nor sync to a path the host would read as another, nor run nothing.
    let run = mischief("watch_path = \"src/\"\nwatch_sync = \"/app/../etc\"").provision(&["plan"]).failed();
    assert!(run.message().contains("not a plain absolute folder in the container"), "{}", run.message());
    let run = mischief("watch_path = \"src/\"\nwatch_exec = []").provision(&["plan"]).failed();
    assert!(run.message().contains("runs an empty command"), "{}", run.message());
}

#[test]
fn watch_without_rules_says_so_before_bringing_anything_up() {
    let project = Project::new("[services.cache]\nplugin = \"redis\"\nport = 0\n");
    let run = project.provision(&["watch"]).failed();
    assert!(run.message().contains("no service here has watch rules: nothing to watch"), "{}", run.stderr);
    assert!(!run.stderr.contains("is up in"), "{}", run.stderr);
}

#[test]
fn the_rails_plugins_rules_bundle_and_restart_the_app_then_its_workers_and_leave_app_code_alone() {
    needs_engine!();
    let stack = crate::rails::rails_stack("e2e-watch-rails");
    let watching = Watching::start(&stack);
    let boots = || {
        let sql = "select count(*) from boot_events where kind = 'server'";
        stack.provision(&["exec", "db", "--", "psql", "-U", "app", "-d", "app_development", "-tAc", sql]).ok().stdout.trim().to_string()
    };
    let before = boots();
    let (web, worker) = ("e2e-watch-rails_web_server", "e2e-watch-rails_worker_worker");
    let worker_started = started_at(worker);

    // app/ code: nothing to do, Rails reloads it. Then Gemfile.lock (its
    // contents as they are: bundle finds every gem) is bundle, restart.
    let controller = stack.project.path().join("app/app/controllers/greetings_controller.rb");
    std::fs::write(&controller, std::fs::read_to_string(&controller).unwrap() + "\n").unwrap();
    let lock = stack.project.path().join("app/Gemfile.lock");
    std::fs::write(&lock, std::fs::read(&lock).unwrap()).unwrap();
    let web_done = watching.done("web", "rerun bundle, restart");
    assert_eq!(web_done["changed"], serde_json::json!(["app/Gemfile.lock"]), "app/ code needed nothing: {web_done}");
    watching.done("worker", "restart");
    assert_eq!(boots().parse::<u32>().unwrap(), before.parse::<u32>().unwrap() + 1, "the server booted once more");
    let (web_started, worker_restarted) = (started_at(web), started_at(worker));
    assert!(worker_restarted > worker_started && worker_restarted > web_started, "workers restarted after the app: {worker_restarted} {web_started}");
    let (status, _, body) = crate::support::http(stack.host_port("proxy"), "GET", "/greeting");
    assert_eq!((status, body.as_str()), (200, "hello"), "the app answers through nginx again");
}
