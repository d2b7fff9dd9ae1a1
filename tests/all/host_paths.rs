//! The rule for host paths (SECURITY.md, "Paths" and "State"), attacked:
//! a plugin with no `allow` entry tries to have the engine mount a folder
//! it swapped for a link, to build `.provision/` into an image, and to hang
//! or exhaust the host with special files where it reads. The plugin is
//! tests/plugins/mischief.

use std::time::{Duration, Instant};

use crate::support::{Project, Stack, docker, needs_engine, repo_root};

fn mischief(name: &str, config: &str) -> Stack {
    let stack = Stack::new(name, &format!("[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n[services.x]\nplugin = \"mischief\"\n{config}\n"));
    stack.project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    stack
}

fn mkfifo(path: &std::path::Path) {
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn a_folder_a_task_swaps_for_a_link_never_reaches_the_engine() {
    needs_engine!();
    // The task writes `data` (the config names it, so that is allowed) and
    // swaps `data/sub` for a link to /var/run, then to `..`: the server's
    // read-only bind of `data/sub` would mount the Docker socket, or the
    // project with `.provision/` uncovered, if the engine resolved it then.
    for (target, project) in [("/var/run", "e2e-paths-swap-run"), ("..", "e2e-paths-swap-up")] {
        let stack = mischief(project, &format!("trick = \"swap\"\nbind = \"data\"\nurl = \"{target}\""));
        std::fs::create_dir_all(stack.project.path().join("data/sub")).unwrap();
        stack.project.write("data/sub/marker", "checked");
        let plan = stack.provision(&["plan"]).ok();
        assert!(plan.stdout.contains("copy of data/sub"), "the bind inside a folder the plugin writes is handed over by copy:\n{}", plan.stdout);
        stack.provision(&["up"]).ok();

        let link = std::fs::read_link(stack.project.path().join("data/sub")).expect("the task did swap the folder for a link");
        assert_eq!(link, std::path::Path::new(target));
        let seen = stack.provision(&["exec", "x", "--", "ls", "-A", "/mnt"]).ok().stdout;
        assert_eq!(seen.trim(), "marker", "the server sees what was checked, not {target}: {seen}");
        // The next plan finds the link and checks where it leads: outside
        // the project is refused; the project itself is bound as any
        // project bind is, `.provision/` covered.
        if target == "/var/run" {
            let next = stack.provision(&["plan"]).failed();
            assert!(next.message().contains("outside the project folder"), "{}", next.stderr);
        }
    }
}

#[test]
fn a_writable_bind_inside_a_folder_a_plugin_writes_is_refused() {
    let project = Project::new(
        "[plugins]\nmischief = { path = \"mischief.wasm\" }\n\
         [services.x]\nplugin = \"mischief\"\nbind = \"data\"\nbind_writable = true\n\
         [services.db]\nplugin = \"redis\"\nvolumes = [\"./data/db:/data\"]\n",
    );
    project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    std::fs::create_dir_all(project.path().join("data/db")).unwrap();
    let run = project.provision(&["plan"]).failed();
    let message = run.message();
    assert!(message.contains("binds") && message.contains("data/db writable, inside"), "{}", run.stderr);
    assert!(message.contains("container `server` of service `x` (plugin `mischief`) can write"), "{}", run.stderr);
}

#[test]
fn a_build_context_of_the_project_holds_neither_its_keys_nor_its_state_nor_git() {
    needs_engine!();
    let stack = mischief("e2e-paths-build", "build = \".\"\ncommand = [\"sleep\", \"infinity\"]");
    stack.project.write("Dockerfile", "FROM provision-standin/redis:7\nCOPY . /app\n");
    std::fs::create_dir_all(stack.project.path().join(".git/hooks")).unwrap();
    stack.project.write(".git/config", "[core]\n");
    // `.dockerignore` cannot bring them back.
    stack.project.write(".dockerignore", "!.provision\n!.git\n");
    stack.provision(&["up"]).ok();
    assert!(stack.project.path().join(".provision/secret-key").exists());
    let listed = stack.provision(&["exec", "x", "--", "ls", "-A", "/app"]).ok().stdout;
    assert!(listed.contains("stack.toml") && listed.contains("Dockerfile"), "{listed}");
    for hidden in [".provision", ".git"] {
        assert!(!listed.lines().any(|l| l == hidden), "{hidden} is in the image: {listed}");
    }
    let image = docker(&["inspect", "-f", "{{.Config.Image}}", "e2e-paths-build_x_server"]);
    let history = docker(&["run", "--rm", "--entrypoint", "sh", image.trim(), "-c", "find / -name secret-key 2>/dev/null"]);
    assert_eq!(history.trim(), "", "the secret key is somewhere in the image");
}

#[test]
fn special_files_in_a_build_context_are_refused_by_name_not_read() {
    let project = Project::new("[plugins]\nmischief = { path = \"mischief.wasm\" }\n[services.x]\nplugin = \"mischief\"\nbuild = \"ctx\"\n");
    project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    std::fs::create_dir_all(project.path().join("ctx")).unwrap();
    project.write("ctx/Dockerfile", "FROM provision-standin/redis:7\n");
    // A FIFO blocks a reader for ever; /dev/zero never ends.
    mkfifo(&project.path().join("ctx/pipe"));
    let started = Instant::now();
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("pipe is a FIFO"), "{}", run.stderr);
    std::fs::remove_file(project.path().join("ctx/pipe")).unwrap();
    mkfifo(&project.path().join("ctx/Dockerfile.fifo"));
    std::fs::rename(project.path().join("ctx/Dockerfile.fifo"), project.path().join("ctx/Dockerfile")).unwrap();
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("Dockerfile is a FIFO"), "{}", run.stderr);
    std::fs::remove_file(project.path().join("ctx/Dockerfile")).unwrap();
    project.write("ctx/Dockerfile", "FROM provision-standin/redis:7\n");
    let device = std::process::Command::new("mknod").args([project.path().join("ctx/zero").to_str().unwrap(), "c", "1", "5"]).status().unwrap();
    assert!(device.success());
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("zero is a device"), "{}", run.stderr);
    std::fs::remove_file(project.path().join("ctx/zero")).unwrap();
    // 6 GiB that take no disk: refused by its size, not read.
    let sparse = std::fs::File::create(project.path().join("ctx/sparse")).unwrap();
    sparse.set_len(6 << 30).unwrap();
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("holds more than 1 GiB of files"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(60), "these are refused at once, not read: {:?}", started.elapsed());
}

#[test]
fn the_files_the_host_reads_itself_are_regular_files_within_limits() {
    // A container with a writable bind of the project folder could put a
    // FIFO where stack.toml or .env is: the next command must not hang.
    let project = Project::new("[services.db]\nplugin = \"postgres\"\n");
    mkfifo(&project.path().join(".env"));
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("it is a FIFO, not a regular file"), "{}", run.stderr);
    std::fs::remove_file(project.path().join(".env")).unwrap();
    std::fs::remove_file(project.path().join("stack.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", project.path().join("stack.toml")).unwrap();
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("it is a device, not a regular file"), "{}", run.stderr);
}

#[test]
fn import_reads_only_the_projects_regular_files_and_copies_none_from_outside() {
    let compose = |extra: &str| format!("services:\n  app:\n    image: provision-standin/redis:7\n{extra}");
    let project = Project::new("");
    std::fs::remove_file(project.path().join("stack.toml")).unwrap();
    // CI tokens live in the environment: an env_file of /proc/self/environ
    // would copy them into stack.toml.
    project.write("compose.yaml", &compose("    env_file: [/proc/self/environ]\n"));
    let run = project.provision(&["import"]).failed();
    assert!(run.message().contains("proc/self/environ is outside the project folder"), "{}", run.stderr);
    assert!(!project.path().join("stack.toml").exists());

    mkfifo(&project.path().join("app.env"));
    project.write("compose.yaml", &compose("    env_file: [app.env]\n"));
    let run = project.provision(&["import"]).failed();
    assert!(run.message().contains("a FIFO, not a regular file"), "{}", run.stderr);

    project.write("compose.yaml", &format!("include:\n  - /dev/zero\n{}", compose("")));
    let run = project.provision(&["import"]).failed();
    assert!(run.message().contains("a device, not a regular file"), "{}", run.stderr);

    let started = Instant::now();
    project.write("compose.yaml", &format!("{}    command: {}\n", compose(""), "[".repeat(100_000)));
    let run = project.provision(&["import"]).failed();
    assert!(run.message().contains("nested more than 64 deep"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "deep nesting is refused before parsing: {:?}", started.elapsed());
}

#[test]
fn the_examples_still_plan_under_the_rule() {
    // Binds inside written folders that a built-in's containers write are
    // the user's own (as in Compose): every example keeps planning.
    for example in ["quickstart", "rails", "flask", "bot", "layered", "scaled"] {
        let dir = repo_root().join("examples").join(example);
        let run = crate::support::provision_in_repo(&["plan", "-f", dir.join("stack.toml").to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "{example}:\n{}", run.stderr);
    }
}

#[test]
fn an_export_never_lets_compose_send_the_project_state_to_an_image() {
    let project = Project::new("[services.app]\nplugin = \"container\"\nbuild = \".\"\n");
    project.write("Dockerfile", "FROM provision-standin/redis:7\nCOPY . /app\n");
    std::fs::create_dir_all(project.path().join(".provision")).unwrap();
    let run = project.provision(&["export"]).failed();
    assert!(run.message().contains("holds .provision/, which compose would send to the engine"), "{}", run.stderr);
    project.write(".dockerignore", ".provision\n.git\n");
    let run = project.provision(&["export"]).ok();
    assert!(run.stdout.contains("context: ."), "{}", run.stdout);
}
