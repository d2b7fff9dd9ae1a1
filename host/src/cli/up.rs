//! `provision up`: plan, then converge the engine with live progress (or
//! JSON events), and keep stack.lock in step with what ran.

use std::{process::ExitCode, time::Duration};

use super::{Prepared, args::UpArgs, connect, lock, prepare};
use crate::{
    apply::{self, UpOptions},
    journal::Journal,
    secrets, ui,
    writer::Writer,
};

pub async fn run(args: UpArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, lock, .. } = prepare(&args.stack, args.stack.locked)?;
    let _writer = Writer::claim(&planned.state.project, "provision up")?;
    let engine = connect(&args.stack.project, Some(&stack)).await?;
    let state = &planned.state;
    let locked_images = if args.stack.locked { lock.as_ref().map(|l| l.images.clone()) } else { None };
    let journal = Journal::of(&stack.dir, &state.project);
    let mut options = UpOptions::new(stack.dir.clone(), Duration::from_secs(args.timeout), locked_images, journal);
    options.snapshots = !args.no_snapshots;
    let names: Vec<&str> = state.services.iter().map(|s| s.name.as_str()).collect();
    // Live progress only without --json, so CI output is JSON alone.
    let progress = (!args.json).then(|| ui::progress::Progress::new(&names));
    let events: &dyn apply::Events = match &progress {
        Some(progress) => progress,
        None => &ui::progress::JsonEvents,
    };
    let started = std::time::Instant::now();

    let apply = apply::up(engine.as_ref(), state, &options, events);
    tokio::pin!(apply);
    let result = tokio::select! {
        result = &mut apply => result,
        _ = tokio::signal::ctrl_c() => {
            // Let the engine call in progress finish (a network half-made
            // while `down` runs would outlive it), then stop.
            options.interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut apply).await;
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
                println!("{}", serde_json::json!({"event": "up", "ok": false, "error": secrets::redact(&error.to_string())}));
            }
            return Err(error.into());
        }
    };
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
