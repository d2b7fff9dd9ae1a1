//! The Rails stack of examples/rails on the real engine: postgres, redis, the
//! example app built from its Dockerfile, Sidekiq, nginx and Prometheus, all
//! wired by their plugins. Proven as an application: a job enqueued through
//! nginx lands in Postgres.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Stack, eventually, http, needs_engine};

/// The example as it is, but on free host ports so it can run beside
/// anything (and other tests).
pub fn rails_stack(name: &str) -> Stack {
    Stack::from_example("rails", name, |text| {
        let mut text = text;
        for plugin in ["postgres", "redis", "rails", "nginx", "monitoring"] {
            let line = format!("plugin = \"{plugin}\"");
            text = text.replacen(&line, &format!("{line}\nport = 0"), 1);
        }
        text
    })
}

fn psql(stack: &Stack, sql: &str) -> String {
    let run = stack.provision(&["exec", "db", "--", "psql", "-U", "app", "-d", "app_development", "-tAc", sql]).ok();
    run.stdout.trim().to_string()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

pub fn enqueue(proxy: u16) -> String {
    let (status, _, body) = http(proxy, "POST", "/api/jobs");
    assert_eq!(status, 202, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["token"].as_str().unwrap().to_string()
}

#[test]
fn the_rails_stack_processes_a_job_through_nginx_into_postgres() {
    needs_engine!();
    let stack = rails_stack("e2e-rails");
    stack.provision(&["up"]).ok();
    let proxy = stack.host_port("proxy");

    // A job through nginx → Rails → Redis → Sidekiq → Postgres, in seconds.
    let token = enqueue(proxy);
    let processed = Instant::now();
    eventually(Duration::from_secs(10), "the job's row", || {
        let (status, _, body) = http(proxy, "GET", &format!("/api/jobs/{token}"));
        (status == 200 && body.contains("\"done\":true")).then_some(())
    });
    eprintln!("job processed {:?} after it was enqueued", processed.elapsed());
    assert_eq!(psql(&stack, &format!("select count(*) from job_runs where token = '{token}'")), "1");

    // Security headers on the response, once each (nginx's replace the app's).
    let (_, headers, _) = http(proxy, "GET", "/up");
    assert_eq!(header(&headers, "x-frame-options"), ["DENY"]);
    assert_eq!(header(&headers, "x-content-type-options"), ["nosniff"]);
    assert_eq!(header(&headers, "referrer-policy"), ["strict-origin-when-cross-origin"]);
    let (status, _, body) = http(proxy, "GET", "/health");
    assert_eq!((status, body.trim()), (200, "ok"));

    // db:prepare ran once, and before the server started.
    assert_eq!(psql(&stack, "select string_agg(kind, ',' order by created_at) from boot_events"), "db:prepare,server");

    // Prometheus found postgres, redis and nginx (through their exporters)
    // without the stack listing them.
    let prometheus = stack.host_port("metrics");
    let targets = eventually(Duration::from_secs(30), "postgres, redis and nginx targets up", || {
        let (_, _, body) = http(prometheus, "GET", "/api/v1/targets");
        let body: Value = serde_json::from_str(&body).ok()?;
        let up: Vec<String> = body["data"]["activeTargets"]
            .as_array()?
            .iter()
            .filter(|t| t["health"] == "up")
            .map(|t| t["labels"]["job"].as_str().unwrap_or("").to_string())
            .collect();
        ["db", "cache", "proxy"].iter().all(|job| up.iter().any(|u| u == job)).then_some(up)
    });
    eprintln!("prometheus targets up: {targets:?}");
    let (_, _, body) = http(prometheus, "GET", "/api/v1/query?query=pg_up");
    assert!(body.contains("\"value\"") && body.contains("\"1\"]"), "the postgres exporter reaches the database: {body}");

    // Dev profile: the code is mounted, so an edit shows in the next response.
    let (_, _, before) = http(proxy, "GET", "/greeting");
    assert_eq!(before, "hello");
    let controller = stack.project.path().join("app/app/controllers/greetings_controller.rb");
    let code = std::fs::read_to_string(&controller).unwrap();
    std::fs::write(&controller, code.replace("\"hello\"", "\"hello, edited\"")).unwrap();
    let reload = Instant::now();
    let (_, _, after) = http(proxy, "GET", "/greeting");
    assert_eq!(after, "hello, edited", "no restart needed");
    eprintln!("the edit showed in a response after {:?}", reload.elapsed());

    // /api is limited to 100 r/min with a burst of 20: the burst is spent well
    // before 40 quick requests.
    let statuses: Vec<u16> = (0..40).map(|_| http(proxy, "GET", "/api/ping").0).collect();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.iter().any(|s| *s == 429 || *s == 503), "{statuses:?}");
    let (status, _, _) = http(proxy, "GET", "/greeting");
    assert_eq!(status, 200, "paths outside /api are not limited");

    // down then up: the rows are still there, and db:prepare ran once more,
    // again before the server.
    stack.provision(&["down"]).ok();
    stack.provision(&["up"]).ok();
    assert_eq!(psql(&stack, &format!("select count(*) from job_runs where token = '{token}'")), "1");
    assert_eq!(psql(&stack, "select string_agg(kind, ',' order by created_at) from boot_events"), "db:prepare,server,db:prepare,server");
    let token = enqueue(stack.host_port("proxy"));
    eventually(Duration::from_secs(10), "a job after down and up", || {
        (psql(&stack, &format!("select count(*) from job_runs where token = '{token}'")) == "1").then_some(())
    });
}
