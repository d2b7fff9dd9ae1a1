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

use super::hop::image_of;
use super::{
    context::{Failure, Up},
    events::Phase,
};
use crate::{
    desired::{Container, MountSource, ServiceState},
    reconcile::label,
    snapshot::Snapshot,
};

/// A container that will keep a snapshot: sealed until its copy is taken.
pub(super) struct Sealed {
    pub container: String,
    pub snapshot: Snapshot,
    /// The network it is alone on, and the ones it joins after the copy.
    pub network: String,
    pub planned: Vec<(String, Vec<String>)>,
}

/// Where a service hands the building of a snapshot image, so that it goes
/// on beside the rest of `up` (None: no more will come).
pub(super) type Keeper<'f> = tokio::sync::mpsc::UnboundedSender<Option<futures_util::future::BoxFuture<'f, ()>>>;

/// How a container's new data starts.
pub(super) enum Data {
    /// As planned: no snapshot, or data that is not new.
    AsPlanned,
    /// From a snapshot kept before.
    Seeded(Snapshot),
    /// Initialised as planned, and kept as this snapshot once ready.
    Sealed(Snapshot),
}

/// Before `c` is created: whether its data starts from a snapshot, or will
/// be kept as one (when the engine can seal it: it must be able to move a
/// container between networks, and the container must have networks).
pub(super) async fn data_of(up: &Up<'_, '_>, service: &ServiceState, c: &Container) -> Result<Data, String> {
    let Some((snapshot, exists)) = snapshot(up, service, c, &image_of(up.state, c)).await else { return Ok(Data::AsPlanned) };
    if exists {
        up.emit(&service.name, Phase::Snapshot(format!("data from snapshot {}", snapshot.tag)));
        return Ok(Data::Seeded(snapshot));
    }
    if !up.engine.joins_networks_later() || c.privileges.host_network {
        return Ok(Data::AsPlanned);
    }
    Ok(Data::Sealed(snapshot))
}

/// The network `c` is alone on until its snapshot is taken, made now.
pub(super) async fn seal(up: &Up<'_, '_>, service: &ServiceState, c: &Container) -> Result<String, String> {
    let network = up.names.sealed_network(&service.name, &c.name);
    let existing = up.engine.ensure_network(&network, false, up.options.project_labels(&up.state.project)).await.map_err(|e| e.to_string())?;
    if let Some(existing) = existing
        && existing.labels.get(&label("project")) != Some(&up.state.project)
    {
        return Err(format!("network `{network}` on the engine is not this project's"));
    }
    Ok(network)
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
