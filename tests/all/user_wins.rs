//! The user outranks the plugin, and the names the host derives never
//! collide (SECURITY.md, "The user outranks the plugin" and "Limits"),
//! attacked by tests/plugins/mischief with no `allow` entry: env it sets
//! over the user's, outputs named to take another service's place in
//! `provision env`, text posing as a reference, and plans too large.

use serde_json::Value;

use crate::support::Project;

fn mischief(services: &str) -> Project {
    let project = Project::new(&format!("[stack]\nname = \"wins\"\n[plugins]\nmischief = {{ path = \"mischief.wasm\" }}\n{services}"));
    project.add_plugin("mischief", provision_test_artifacts::MISCHIEF);
    project
}

/// The env of service `service`'s container `container` in `plan --json`.
fn env_of(state: &Value, service: &str, container: &str) -> serde_json::Map<String, Value> {
    let service = state["services"].as_array().unwrap().iter().find(|s| s["name"] == service).unwrap();
    let c = service["plan"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == container).unwrap();
    c["env"].as_object().unwrap().clone()
}

#[test]
fn the_users_env_wins_and_no_plugin_variable_can_set_another() {
    let project =
        mischief("[services.x]\nplugin = \"mischief\"\nenv_key = \"APP_MODE\"\nenv_value = \"evil\"\nenv = { APP_MODE = \"production\" }\n");
    let state = project.provision(&["plan", "--json"]).ok().json();
    assert_eq!(env_of(&state, "x", "server")["APP_MODE"], "production");

    // `NAME=value` is how the engine takes env: this name would set
    // DATABASE_URL after the user's.
    let project = mischief(
        "[services.x]\nplugin = \"mischief\"\nenv_key = \"DATABASE_URL=postgres://attacker/db?x\"\nenv_value = \"\"\n\
         env = { DATABASE_URL = \"postgres://db/app\" }\n",
    );
    let run = project.provision(&["plan"]).failed();
    assert!(run.message().contains("is not a variable name (empty, or holding `=` or NUL)"), "{}", run.stderr);
}

#[test]
fn outputs_that_would_share_a_variable_name_are_refused() {
    // `web`'s `api_url` and `web-api`'s `url` are both WEB_API_URL.
    let project = mischief(
        "[services.web]\nplugin = \"mischief\"\n\
         [services.web-api]\nplugin = \"container\"\nimage = \"provision-standin/redis:7\"\nports = [8080]\n",
    );
    let run = project.provision(&["plan"]).failed();
    assert!(
        run.message().contains("output `url` of service `web-api` and output `api_url` of service `web` would both be WEB_API_URL"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_double_dollar_is_a_literal_dollar_and_a_value_is_never_read_again() {
    let project = mischief(
        "[services.db]\nplugin = \"postgres\"\n\
         [services.x]\nplugin = \"mischief\"\nenv_value = \"$${db.password}\"\nenv = { LOOK = \"${LOOKS_LIKE}\" }\n",
    );
    let run = project.provision_with_env(&["plan", "--json", "--show-secrets"], &[("LOOKS_LIKE", "${db.password}")]).ok();
    let state = run.json();
    let env = env_of(&state, "x", "server");
    assert_eq!(env["MISCHIEF"], "${db.password}", "`$$` stays text");
    assert_eq!(env["LOOK"], "${db.password}", "a variable's value is not read for references");
    let db = state["services"].as_array().unwrap().iter().find(|s| s["name"] == "db").unwrap();
    let password = db["plan"]["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "password").unwrap()["value"].as_str().unwrap();
    assert!(!run.stdout.contains(&format!("\"MISCHIEF\": \"{password}\"")) && !env.values().any(|v| v == password), "db's password reached x");
}

#[test]
fn a_plan_with_thousands_of_published_ports_is_refused_unless_allowed() {
    let run = mischief("[services.x]\nplugin = \"mischief\"\nports = 20000\n").provision(&["plan"]).failed();
    assert!(run.message().contains("its plan has 20000 published ports, over the limit of 64 for one service"), "{}", run.stderr);
    assert!(run.message().contains("add `allow = [\"large-plan\"]`"), "{}", run.stderr);
    let run = mischief("[services.x]\nplugin = \"mischief\"\nports = 20000\nallow = [\"large-plan\"]\n").provision(&["plan"]).failed();
    assert!(run.message().contains("over the limit of 1024"), "even allowed, a plan stays bounded: {}", run.stderr);
    mischief("[services.x]\nplugin = \"mischief\"\nports = 100\nallow = [\"large-plan\"]\n").provision(&["plan"]).ok();
}
