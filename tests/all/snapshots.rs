//! Data snapshots on the real engine: the first `up` of a postgres service
//! keeps its initialised data; a later new project starts from it, with
//! its own password; changed inputs make a new one; they can be listed,
//! turned off and removed.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Project, Run, Stack, docker, needs_engine};

/// A stack whose database is unique to this test run (so the snapshot is
/// made here, not by an earlier run), with an init script and an extension.
fn stack(name: &str, nonce: &str) -> Stack {
    let stack = Stack::new(
        name,
        &format!("[services.db]\nplugin = \"postgres\"\ndatabase = \"snap{nonce}\"\nport = 0\ninit = [\"init.sql\"]\nextensions = [\"pgcrypto\"]\n"),
    );
    stack.project.write("init.sql", &format!("CREATE TABLE made (nonce text);\nINSERT INTO made VALUES ('{nonce}');\n"));
    stack
}

fn nonce() -> String {
    format!("{}{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos())
}

/// The `detail` of every snapshot event of an `up --json` or `run --json`.
fn snapshot_events(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["phase"] == "snapshot")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect()
}

fn tag_in(events: &[String], prefix: &str) -> Option<String> {
    events.iter().find_map(|e| e.strip_prefix(prefix).map(str::to_string))
}

/// `psql` as the app connects: over the project network, with a password.
fn connects(stack: &Stack, database: &str, password: &str) -> Result<String, String> {
    let url = format!("postgres://app:{password}@db:5432/{database}");
    let network = format!("{}_default", stack.name);
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", &network, "provision-standin/postgres:16", "psql", &url, "-tAc", "select nonce from made"])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn password(stack: &Stack) -> String {
    let env = stack.provision(&["env", "--format", "json"]).ok().json();
    env["DB_PASSWORD"].as_str().unwrap().to_string()
}

/// Removes the snapshots a test made, pass or fail.
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = docker(&["rmi", "-f", tag]);
        }
    }
}

#[test]
fn a_new_project_starts_from_the_snapshot_with_its_own_password() {
    needs_engine!();
    let nonce = nonce();
    let database = format!("snap{nonce}");
    let mut made = Made(Vec::new());

    let first = stack("snapfirst", &nonce);
    let up = first.provision(&["up", "--json"]).ok();
    let events = snapshot_events(&up);
    let kept = tag_in(&events, "kept snapshot ").unwrap_or_else(|| panic!("no snapshot kept: {events:?}\n{}", up.stderr));
    made.0.push(kept.clone());
    assert!(tag_in(&events, "data from snapshot ").is_none(), "{events:?}");
    let listed = Project::new("").provision(&["snapshots", "--json"]).ok();
    let row = listed.stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["tag"] == kept.as_str());
    let row = row.unwrap_or_else(|| panic!("{kept} not listed: {}", listed.stdout));
    assert_eq!(row["made_by"], "snapfirst/db");
    assert!(row["size_bytes"].as_u64().unwrap() > 1_000_000, "{row}");

    // Another project of the same inputs: its new volume is filled from
    // the snapshot, so initdb and the init script do not run again.
    let second = stack("snapsecond", &nonce);
    let up = second.provision(&["up", "--json"]).ok();
    let events = snapshot_events(&up);
    assert_eq!(tag_in(&events, "data from snapshot ").as_deref(), Some(kept.as_str()), "{events:?}");
    assert!(!events.iter().any(|e| e.starts_with("copying")), "{events:?}");
    let logs = docker(&["logs", "snapsecond_db_server"]);
    assert!(!logs.contains("running /docker-entrypoint-initdb.d"), "initdb ran again:\n{logs}");
    assert_eq!(connects(&second, &database, &password(&second)).unwrap(), nonce);
    let extensions = second.provision(&["exec", "db", "--", "psql", "-U", "app", "-d", &database, "-tAc", "select extname from pg_extension"]).ok();
    assert!(extensions.stdout.contains("pgcrypto"), "{}", extensions.stdout);
    // Each project has its own password; the first one's opens nothing here.
    let first_password = password(&first);
    assert_ne!(first_password, password(&second));
    let refused = connects(&second, &database, &first_password).unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");

    // A changed init script is another input: a new snapshot, not the old one.
    second.provision(&["down", "-v"]).ok();
    second.project.write("init.sql", &format!("CREATE TABLE made (nonce text);\nINSERT INTO made VALUES ('{nonce}-2');\n"));
    let up = second.provision(&["up", "--json"]).ok();
    let events = snapshot_events(&up);
    let changed = tag_in(&events, "kept snapshot ").unwrap_or_else(|| panic!("{events:?}"));
    made.0.push(changed.clone());
    assert_ne!(changed, kept);
    assert_eq!(connects(&second, &database, &password(&second)).unwrap(), format!("{nonce}-2"));

    // Turned off: new data is initialised from scratch, and nothing is kept.
    second.provision(&["down", "-v"]).ok();
    let up = second.provision(&["up", "--json", "--no-snapshots"]).ok();
    assert_eq!(snapshot_events(&up), Vec::<String>::new());
    let logs = docker(&["logs", "snapsecond_db_server"]);
    assert!(logs.contains("running /docker-entrypoint-initdb.d"), "{logs}");

    // Removed by name; the list no longer has it.
    Project::new("").provision(&["snapshots", "rm", &kept]).ok();
    let listed = Project::new("").provision(&["snapshots", "--json"]).ok();
    assert!(!listed.stdout.contains(&kept), "{}", listed.stdout);
}

/// Where the test profile's data lives, as the README says: on the
/// plugin's tmpfs while it is initialised; from a snapshot, in the
/// container's own writable layer (the engine mounts no tmpfs over a path
/// the image fills); fsync off in both, and gone with the container.
#[test]
fn test_data_is_on_tmpfs_when_initialised_and_in_the_container_layer_from_a_snapshot() {
    needs_engine!();
    let nonce = nonce();
    let mut made = Made(Vec::new());
    let where_data = |project: &str| {
        let container = format!("{project}_db_server");
        let fs = docker(&["exec", &container, "sh", "-c", "df -T /var/lib/postgresql/data | tail -1"]);
        let fsync = docker(&["exec", &container, "psql", "-U", "app", "-d", &format!("snap{nonce}"), "-tAc", "show fsync"]);
        let mounts = docker(&["inspect", "-f", "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}", &container]);
        (fs.split_whitespace().nth(1).unwrap_or_default().to_string(), fsync.trim().to_string(), mounts)
    };
    let first = stack("snaptmpfs", &nonce);
    let up = first.provision(&["up", "--profile", "test", "--json"]).ok();
    made.0.push(tag_in(&snapshot_events(&up), "kept snapshot ").unwrap_or_else(|| panic!("{}", up.stderr)));
    let (fs, fsync, _) = where_data("snaptmpfs");
    assert_eq!((fs.as_str(), fsync.as_str()), ("tmpfs", "off"));

    let second = stack("snaplayer", &nonce);
    let up = second.provision(&["up", "--profile", "test", "--json"]).ok();
    assert_eq!(tag_in(&snapshot_events(&up), "data from snapshot ").as_ref(), made.0.first());
    let (fs, fsync, mounts) = where_data("snaplayer");
    assert_eq!((fs.as_str(), fsync.as_str()), ("overlay", "off"), "mounts: {mounts}");
    assert!(!mounts.contains("/var/lib/postgresql/data"), "no volume holds it either: {mounts}");
}

/// `run` in the ci profile: the second run's container starts from the
/// first run's snapshot (its data in the container's own layer), and its
/// command sees the initialised data.
#[test]
fn runs_in_the_ci_profile_start_from_a_snapshot() {
    needs_engine!();
    let nonce = nonce();
    let mut made = Made(Vec::new());
    let stack = stack("snapci", &nonce);
    let query = "psql \"$DB_URL\" -tAc 'select nonce from made'";
    let first = stack.provision(&["run", "--profile", "ci", "--json", "--", "sh", "-c", query]).ok();
    let events = snapshot_events(&first);
    made.0.push(tag_in(&events, "kept snapshot ").unwrap_or_else(|| panic!("{events:?}\n{}", first.stderr)));
    let second = stack.provision(&["run", "--profile", "ci", "--json", "--", "sh", "-c", query]).ok();
    let events = snapshot_events(&second);
    assert_eq!(tag_in(&events, "data from snapshot ").as_ref(), made.0.first(), "{events:?}");
    assert!(second.stdout.lines().any(|l| l == nonce), "{}", second.stdout);
}

/// A plugin given the database (a `uses` line: its password) starts as
/// soon as it may and writes a table, a superuser role and a file in the
/// data volume, hoping to be in the snapshot every later project starts
/// from. The snapshot's container is alone on a network of its own until
/// its copy is taken, and the plugin starts only after that: the next
/// project's data is clean, and the attack did land in the first one's.
#[test]
fn no_other_container_can_write_into_a_snapshot() {
    needs_engine!();
    let nonce = nonce();
    let database = format!("snap{nonce}");
    let mut made = Made(Vec::new());
    let first = stack("snappoison", &nonce);
    let mut text = std::fs::read_to_string(first.project.path().join("stack.toml")).unwrap();
    text.push_str(
        "[plugins]\nmischief = { path = \"mischief.wasm\" }\n\
         [services.x]\nplugin = \"mischief\"\ntrick = \"poison\"\nuses = { peek = \"db\" }\nborrow_volume = \"db/data\"\n",
    );
    first.project.write("stack.toml", &text);
    first.project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    let up = first.provision(&["up", "--json"]).ok();
    let events = snapshot_events(&up);
    made.0.push(tag_in(&events, "kept snapshot ").unwrap_or_else(|| panic!("no snapshot kept: {events:?}\n{}", up.stderr)));

    let psql = |stack: &Stack, query: &str| {
        stack.provision(&["exec", "db", "--", "psql", "-U", "app", "-d", &database, "-tAc", query]).ok().stdout.trim().to_string()
    };
    // The attack is live: it lands in the first project once it may start.
    crate::support::eventually(std::time::Duration::from_secs(60), "the plugin's writes in the first project", || {
        (psql(&first, "select count(*) from pg_roles where rolname = 'evil'") == "1").then_some(())
    });

    let second = stack("snapclean", &nonce);
    let up = second.provision(&["up", "--json"]).ok();
    assert_eq!(tag_in(&snapshot_events(&up), "data from snapshot ").as_ref(), made.0.first(), "the second project starts from the snapshot");
    assert_eq!(psql(&second, "select count(*) from pg_roles where rolname = 'evil'"), "0", "the role is in the snapshot");
    assert_eq!(psql(&second, "select to_regclass('poison') is null"), "t", "the table is in the snapshot");
    let file = second.provision(&["exec", "db", "--", "ls", "/var/lib/postgresql/data"]).ok().stdout;
    assert!(!file.lines().any(|l| l == "poison"), "the file is in the snapshot: {file}");
}
