//! `provision plan`: the desired state, and what `up` would change when an
//! engine answers.

use std::process::ExitCode;

use super::{Prepared, args::PlanArgs, prepare, try_connect};
use crate::{journal::Journal, reconcile, ui};

pub async fn run(args: PlanArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, .. } = prepare(&args.stack, args.stack.locked)?;
    let masker = ui::Masker::new(args.show_secrets);
    // What `up` would change, when an engine answers; the plan stands without one.
    let journal = Journal::of(&stack.dir, &planned.state.project);
    let diff = match try_connect(&args.stack.project, &stack).await {
        Some(engine) => engine
            .containers(&planned.state.project)
            .await
            .ok()
            .map(|actual| reconcile::diff(&planned.state, &actual, &journal, engine.runs_copies())),
        None => None,
    };
    if args.json {
        println!("{}", ui::plan::json(&planned.state, diff.as_ref(), &masker));
    } else {
        print!("{}", ui::plan::summary(&planned.state, &stack.name, &masker));
        match &diff {
            Some(diff) => print!("{}", ui::plan::diff_summary(diff)),
            None => println!("\n(no container engine answers: showing the desired state only)"),
        }
    }
    if args.timings {
        eprint!("{}", ui::plan::timings(&planned.timings));
    }
    Ok(ExitCode::SUCCESS)
}
