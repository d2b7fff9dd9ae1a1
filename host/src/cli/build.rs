//! `provision build [SERVICE…] [--no-cache]`: build the images of services
//! with a Dockerfile, as `up` would, without starting anything; the next
//! `up` recreates what runs an image that changed.

use std::{process::ExitCode, time::Instant};

use super::{args::BuildArgs, connect, prepare, up::journal, up::only};
use crate::{
    apply::{self, UpOptions},
    ui,
};

pub async fn run(args: BuildArgs) -> miette::Result<ExitCode> {
    let prepared = prepare(&args.stack, args.stack.locked)?;
    let state = &prepared.planned.state;
    let engine = connect(&args.stack.project, Some(&prepared.stack)).await?;
    let mut options = UpOptions::new(prepared.stack.dir.clone(), std::time::Duration::from_secs(3600), None, journal(&prepared));
    options.only = only(&prepared, &args.services)?;
    options.no_cache = args.no_cache;
    let names: Vec<&str> =
        state.services.iter().map(|s| s.name.as_str()).filter(|s| options.only.as_ref().is_none_or(|only| only.contains(*s))).collect();
    let progress = ui::progress::Progress::new(&names);
    let started = Instant::now();
    let result = apply::build_services(engine.as_ref(), state, &options, &progress).await;
    progress.finish();
    let built = result?;
    if built.is_empty() {
        eprintln!("nothing to build: no service here has a Dockerfile (`build` in its config)");
    }
    for image in &built {
        let what = if image.built { "built" } else { "up to date:" };
        eprintln!("{}: {what} {}", image.service, image.tag);
    }
    if built.iter().any(|i| i.built) {
        eprintln!("in {:.2}s; `provision up` recreates what runs a changed image", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
