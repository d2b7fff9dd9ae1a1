//! Data snapshots during `up` (the snapshot itself is `crate::snapshot`):
//! a container whose new data has a snapshot starts from it; one whose has
//! none yet keeps one once it is ready, its hooks run.
//!
//! A snapshot holds only what the service's own plugin and the user's init
//! scripts and hooks wrote, because until its copy is taken nothing else can
//! reach that data: the container is created on a network of its own
//! (`sealed`), with no other container on it, and joins its planned networks
//! with their names only after the copy; its service counts as started for
//! its dependents only then; and a service that mounts its volume waits for
//! that, whatever it waits for otherwise (`schedule`). Its sidecars (its own
//! plugin's) find it when it joins. An engine that cannot move a container
//! between networks keeps no snapshot.

use super::{
    context::{Failure, Up},
    events::Phase,
};
use crate::{
    desired::{Container, MountSource, ServiceState},
    engine::ContainerSpec,
    reconcile::label,
    snapshot::Snapshot,
};

/// A container that will keep a snapshot: sealed until its copy is taken.
#[derive(Clone)]
pub(super) struct Sealed {
    pub container: String,
    pub snapshot: Snapshot,
    /// The network it is alone on, and the ones it joins after the copy.
    network: String,
    planned: Vec<(String, Vec<String>)>,
}

/// Where a service hands the building of a snapshot image, so that it goes
/// on beside the rest of `up` (None: no more will come).
pub(super) type Keeper<'f> = tokio::sync::mpsc::UnboundedSender<Option<futures_util::future::BoxFuture<'f, ()>>>;

/// Before `c` is created from `spec`: start it from its snapshot when
/// there is one, or seal it when it will keep one (returned).
pub(super) async fn seed_or_seal(up: &Up<'_, '_>, service: &ServiceState, c: &Container, spec: &mut ContainerSpec) -> Result<Option<Sealed>, String> {
    let Some((snapshot, exists)) = snapshot(up, service, c, &spec.image).await else { return Ok(None) };
    if exists {
        snapshot.seed(spec);
        up.emit(&service.name, Phase::Snapshot(format!("data from snapshot {}", snapshot.tag)));
        return Ok(None);
    }
    if !up.engine.joins_networks_later() || spec.privileges.host_network {
        return Ok(None);
    }
    let network = up.names.sealed_network(&service.name, &c.name);
    let existing = up.engine.ensure_network(&network, false, up.options.project_labels(&up.state.project)).await.map_err(|e| e.to_string())?;
    if let Some(existing) = existing
        && existing.labels.get(&label("project")) != Some(&up.state.project)
    {
        return Err(format!("network `{network}` on the engine is not this project's"));
    }
    let planned = std::mem::replace(&mut spec.networks, vec![(network.clone(), Vec::new())]);
    Ok(Some(Sealed { container: c.name.clone(), snapshot, network, planned }))
}

/// The snapshot `c` would start from (true) or keep (false), when its
/// data is new: in a tmpfs, or a volume this `up` created — the data
/// of a volume that was there is the project's own.
async fn snapshot(up: &Up<'_, '_>, service: &ServiceState, c: &Container, image: &str) -> Option<(Snapshot, bool)> {
    let declared = c.snapshot.as_ref().filter(|_| up.options.snapshots)?;
    let new_data = c.mounts.iter().any(|m| {
        m.target == declared.path
            && match &m.source {
                MountSource::Tmpfs { .. } => true,
                MountSource::Volume(v) => up.new_volumes.contains(&up.names.volume(&service.name, v)),
                MountSource::Bind(_) | MountSource::Copy(_) | MountSource::Anonymous => false,
            }
    });
    if !new_data {
        return None;
    }
    let base = up.engine.image_id(image).await.ok()??;
    let snapshot = Snapshot::of(up.state, &up.options.project_dir, service, c, &base)?;
    let exists = up.engine.image_id(&snapshot.tag).await.ok()?.is_some();
    Some((snapshot, exists))
}

/// Keep the snapshot of a sealed container's data, now that it is
/// ready and its hooks ran: the copy is made now, while nothing else can
/// reach it; then it joins its networks (its dependents are let go after
/// this), and the image is built from the copy beside the rest of `up`.
pub(super) async fn keep_snapshot<'s>(up: &'s Up<'_, '_>, service: &str, id: &str, sealed: &Sealed, keeper: &Keeper<'s>) -> Result<(), Failure> {
    up.emit(service, Phase::Snapshot("copying its new data for a snapshot".into()));
    let captured = sealed.snapshot.capture(up.engine, id).await;
    let unsealed = async {
        up.engine.join_networks(id, &sealed.planned).await?;
        up.engine.leave_network(id, &sealed.network).await
    };
    unsealed.await.map_err(|e| Failure::new(service, "joining its networks", e.to_string()))?;
    let data = match captured {
        Ok(data) => data,
        Err(e) => {
            up.emit(service, Phase::Snapshot(format!("no snapshot kept: {e}")));
            return Ok(());
        }
    };
    let (service, snapshot) = (service.to_string(), sealed.snapshot.clone());
    let _ = keeper.send(Some(Box::pin(async move {
        let done = match snapshot.keep(up.engine, data).await {
            Ok(()) => format!("kept snapshot {}", snapshot.tag),
            Err(e) => format!("no snapshot kept: {e}"),
        };
        up.emit(&service, Phase::Snapshot(done));
    })));
    Ok(())
}
