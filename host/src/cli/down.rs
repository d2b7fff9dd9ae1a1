//! `provision down [-v]`: remove the project's containers and networks
//! (and named volumes with -v), never another checkout's.

use std::process::ExitCode;

use super::{args::DownArgs, connect, project_of};
use crate::{apply, journal::Journal, reconcile, writer::Writer};

pub async fn run(args: DownArgs) -> miette::Result<ExitCode> {
    let started = std::time::Instant::now();
    let (project, stack_dir) = project_of(&args.project)?;
    let _writer = Writer::claim(&project, "provision down")?;
    let engine = connect(&args.project, None).await?;
    let containers = engine.containers(&project).await?;
    // A project named after the stack may belong to another checkout; only
    // an explicit -p may take down what another folder brought up.
    if let Some(dir) = &stack_dir
        && let Some(other) = reconcile::other_owner(dir, &containers)
    {
        return Err(miette::miette!(
            help = format!("run `provision down` there, or pass -p {project} to take it down from here"),
            "project `{project}` was brought up from {other}, not from {}",
            dir.display()
        ));
    }
    let owner = stack_dir.as_ref().map(|d| d.display().to_string());
    let removed = apply::down(engine.as_ref(), &project, owner.as_deref(), &containers, args.volumes).await?;
    if let Some(path) = stack_dir.as_ref().and_then(|dir| Journal::path(dir, &project)) {
        let _ = std::fs::remove_file(path);
    }
    let kept = if args.volumes { "" } else { "; named volumes kept (down -v removes them)" };
    eprintln!("{project} is down in {:.2}s: removed {removed}{kept}", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}
