//! `provision lock`, and the lockfile policy of `up`: write stack.lock when
//! there is none, say when it is out of date with what ran.

use std::process::ExitCode;

use miette::IntoDiagnostic;
use provision_registry::{LOCK_FILE, LOCK_VERSION, Lock, LockedImage};

use super::{Prepared, args::LockArgs, prepare, try_connect};
use crate::{apply, plan::Planned, stack::Stack};

pub async fn run(args: LockArgs) -> miette::Result<ExitCode> {
    let Prepared { stack, planned, lock, .. } = prepare(&args.stack, false)?;
    let path = stack.dir.join(LOCK_FILE);
    // Images need an engine; without one, keep what the lock already says.
    let images = match try_connect(&args.stack.project, &stack).await {
        Some(engine) => apply::image_digests(engine.as_ref(), &planned.state).await?,
        None => {
            eprintln!("note: no container engine answers; image digests are kept as they were");
            lock.as_ref().map(|l| l.images.clone()).unwrap_or_default()
        }
    };
    let new = Lock { version: LOCK_VERSION, plugins: planned.locked_plugins.clone(), images };
    let unchanged = lock.as_ref().is_some_and(|old| old.plugins == new.plugins && old.images == new.images);
    new.save(&path).into_diagnostic()?;
    for p in &new.plugins {
        eprintln!("  plugin {} {} ({}) sha256:{}", p.name, p.version, p.source, &p.sha256[..16]);
    }
    for i in &new.images {
        eprintln!("  image {}{} {}", i.reference, i.substitute.as_ref().map(|s| format!(" → {s}")).unwrap_or_default(), i.digest);
    }
    eprintln!("{} {}", if unchanged { "unchanged:" } else { "wrote" }, path.display());
    Ok(ExitCode::SUCCESS)
}

/// After a successful `up`: write stack.lock if there is none (so the next
/// run can be `--locked`), or say that what ran is not all in it.
pub fn after_up(stack: &Stack, planned: &Planned, lock: Option<&Lock>, images: &[LockedImage]) -> miette::Result<()> {
    let path = stack.dir.join(LOCK_FILE);
    match lock {
        None => {
            let lock = Lock { version: LOCK_VERSION, plugins: planned.locked_plugins.clone(), images: images.to_vec() };
            lock.save(&path).into_diagnostic()?;
            eprintln!("wrote {} (commit it; CI can then run `provision up --locked`)", path.display());
        }
        // A profile that runs fewer services than the one locked is covered.
        Some(lock) if !planned.locked_plugins.iter().all(|p| lock.plugins.contains(p)) || !images.iter().all(|i| lock.images.contains(i)) => {
            eprintln!("note: {} is out of date with what ran; `provision lock` updates it", path.display());
        }
        Some(_) => {}
    }
    Ok(())
}
