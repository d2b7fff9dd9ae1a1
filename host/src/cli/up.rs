//! `provision up`: plan, then converge the engine with live progress (or
//! JSON events), and keep stack.lock in step with what ran.

use std::{process::ExitCode, time::Duration};

use super::{Prepared, args::UpArgs, connect, lock, prepare};
use crate::{
    apply::{self, UpOptions},
    ui,
};

pub async fn run(args: UpArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, lock, .. } = prepare(&args.stack, args.stack.locked)?;
    let engine = connect(&args.stack.project).await?;
    let state = &planned.state;
    let locked_images = if args.stack.locked { lock.as_ref().map(|l| l.images.clone()) } else { None };
    // Which containers earlier runs saw ready (see UpOptions::seen_ready).
    let seen_path = stack.dir.join(".provision").join(format!("ready-{}.json", state.project));
    let seen_ready = std::fs::read(&seen_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let options = UpOptions { project_dir: stack.dir.clone(), timeout: Duration::from_secs(args.timeout), locked_images, seen_ready };
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    // Live progress only without --json, so CI output is JSON alone.
    let progress = (!args.json).then(|| ui::progress::Progress::new(&names));
    let events: &dyn apply::Events = match &progress {
        Some(progress) => progress,
        None => &ui::progress::JsonEvents,
    };
    let started = std::time::Instant::now();

    let result = tokio::select! {
        result = apply::up(engine.as_ref(), state, &options, events) => result,
        _ = tokio::signal::ctrl_c() => {
            progress.iter().for_each(ui::progress::Progress::finish);
            eprintln!("interrupted: what was created so far is labeled with project `{}`; `provision down` removes it", state.project);
            return Ok(ExitCode::from(130));
        }
    };
    progress.iter().for_each(ui::progress::Progress::finish);
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            if args.json {
                println!("{}", serde_json::json!({"event": "up", "ok": false, "error": error.to_string()}));
            }
            return Err(error.into());
        }
    };
    // Only a cache: losing it costs one probe per container next time.
    let _ = std::fs::write(&seen_path, serde_json::to_vec(&summary.ready).expect("JSON"));
    lock::after_up(&stack, &planned, lock.as_ref(), &summary.images)?;
    let elapsed = started.elapsed();
    if args.json {
        println!("{}", serde_json::json!({"event": "up", "ok": true, "elapsed_ms": elapsed.as_millis() as u64, "summary": summary}));
    } else {
        eprintln!(
            "{} is up in {:.2}s: {} created, {} recreated, {} kept, {} removed",
            state.project,
            elapsed.as_secs_f64(),
            summary.created,
            summary.recreated,
            summary.kept,
            summary.removed
        );
    }
    Ok(ExitCode::SUCCESS)
}
