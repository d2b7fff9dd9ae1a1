//! `provision snapshots [rm]`: the data snapshots on the engine.

use std::{
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::args::{SnapshotsArgs, SnapshotsCommand};
use crate::{
    engine::{self, ImageInfo},
    reconcile::label,
    snapshot,
};

/// One snapshot, as listed or removed.
#[derive(Serialize)]
struct Row {
    tag: String,
    key: String,
    /// The plugin that declared it, `name@version`.
    plugin: String,
    /// The project and service whose `up` made it.
    made_by: String,
    path: String,
    /// Of its data (the image beneath is the service's own).
    size_bytes: u64,
    /// Seconds since the epoch.
    created: i64,
}

impl Row {
    fn of(image: &ImageInfo) -> Row {
        let get = |key: &str| image.labels.get(&label(key)).cloned().unwrap_or_default();
        Row {
            tag: image.tags.first().cloned().unwrap_or_else(|| image.id.clone()),
            key: image.labels.get(&snapshot::key_label()).cloned().unwrap_or_default(),
            plugin: get("snapshot-plugin"),
            made_by: get("snapshot-of"),
            path: get("snapshot-path"),
            size_bytes: get("snapshot-bytes").parse().unwrap_or(0),
            created: image.created,
        }
    }
}

pub async fn run(args: SnapshotsArgs) -> miette::Result<ExitCode> {
    let engine = engine::connect(args.engine, &Default::default()).await?;
    let images = snapshot::list(engine.as_ref()).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let Some(SnapshotsCommand::Rm { names, all, older_than }) = args.command else {
        let rows: Vec<Row> = images.iter().map(Row::of).collect();
        if args.json {
            rows.iter().for_each(|r| println!("{}", serde_json::to_string(r).expect("JSON")));
        } else if rows.is_empty() {
            eprintln!("no snapshots yet: the first `up` of a service that offers one (postgres) keeps it");
        } else {
            println!("{:46} {:18} {:24} {:>8} {:>9}", "SNAPSHOT", "PLUGIN", "MADE BY", "SIZE", "AGE");
            for r in &rows {
                let age = age(Duration::from_secs((now - r.created).max(0) as u64));
                println!("{:46} {:18} {:24} {:>8} {:>9}", r.tag, r.plugin, r.made_by, megabytes(r.size_bytes), age);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };

    let chosen = |i: &&ImageInfo| {
        let row = Row::of(i);
        all || older_than.is_some_and(|age| now - row.created > age.as_secs() as i64)
            || names.iter().any(|n| *n == row.tag || (n.len() >= 8 && row.key.starts_with(n.as_str())))
    };
    let chosen: Vec<&ImageInfo> = images.iter().filter(chosen).collect();
    let unknown: Vec<&String> = names.iter().filter(|n| !images.iter().map(Row::of).any(|r| **n == r.tag || r.key.starts_with(n.as_str()))).collect();
    for image in &chosen {
        engine.remove_image(&image.id).await?;
        let row = Row::of(image);
        if args.json {
            println!("{}", serde_json::to_string(&row).expect("JSON"));
        } else {
            eprintln!("removed {} ({})", row.tag, megabytes(row.size_bytes));
        }
    }
    if !unknown.is_empty() {
        let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        return Err(miette::miette!(
            help = "`provision snapshots` lists them; name one by its tag or at least 8 characters of its key",
            "no snapshot {}",
            list.join(", ")
        ));
    }
    if chosen.is_empty() && !args.json {
        eprintln!("nothing to remove");
    }
    Ok(ExitCode::SUCCESS)
}

fn megabytes(bytes: u64) -> String {
    format!("{} MB", bytes / 1_000_000)
}

fn age(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
