//! Images built from a service's Dockerfile: for `up` (only what is not
//! there yet, by its inputs' hash) and for `provision build` (the services
//! named, `--no-cache` to build again from nothing).

use std::{collections::HashSet, time::Instant};

use super::{ApplyError, Event, Events, Phase, UpOptions};
use crate::{
    desired::{BuildSpec, DesiredState, Image},
    engine::{Engine, EngineError, Labels},
    plan::{build_context, host_path},
};

/// One image `build_services` looked at.
pub struct Built {
    pub service: String,
    pub tag: String,
    /// False: it was there already (same inputs).
    pub built: bool,
}

/// Build the images of the services in `options.only` (None: all), each
/// once however many containers run it, in the plan's order.
pub async fn build_services(engine: &dyn Engine, state: &DesiredState, options: &UpOptions, events: &dyn Events) -> Result<Vec<Built>, ApplyError> {
    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut done = Vec::new();
    for service in state.services.iter().filter(|s| options.only.as_ref().is_none_or(|only| only.contains(&s.name))) {
        for c in service.plan.tasks.iter().chain(&service.plan.containers) {
            if let Image::Build(spec) = &c.image
                && seen.insert(spec.input_hash.clone())
            {
                let built = build(engine, state, &service.name, spec, options, events, started).await?;
                done.push(Built { service: service.name.clone(), tag: spec.tag(&state.build_scope), built });
            }
        }
    }
    Ok(done)
}

/// Build an image from its Dockerfile unless an image with its input hash
/// is already there (or with `options.no_cache`, again, no layer reused);
/// build output streams into the progress display. Whether it built.
pub(super) async fn build(
    engine: &dyn Engine,
    state: &DesiredState,
    service: &str,
    spec: &BuildSpec,
    options: &UpOptions,
    events: &dyn Events,
    started: Instant,
) -> Result<bool, ApplyError> {
    let no_cache = options.no_cache;
    let tag = spec.tag(&state.build_scope);
    if !no_cache && engine.image_digest(&tag).await?.is_some() {
        return Ok(false);
    }
    let failed = |message: String| EngineError::Build { tag: tag.clone(), message };
    // Read where `plan` checked it, with no link followed: a container that
    // writes into the context cannot point the build elsewhere meanwhile.
    let root = host_path::pinned(&state.host_paths, &options.project_dir, &spec.context).map_err(|e| failed(format!("build context: {e}")))?;
    let tar = build_context::Context::load(&root, spec).and_then(|context| context.tar(spec)).map_err(failed)?;
    let emit = |line: &str| {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        events.emit(Event { service: service.to_string(), phase: Phase::Building(line.to_string()), elapsed_ms });
    };
    engine.build_image(&tag, spec, tar.path(), &Labels::new(), no_cache, &emit).await?;
    Ok(true)
}
