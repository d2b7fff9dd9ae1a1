//! `provision plugin new | build | test | push | pull | ls`: the plugin
//! author's kit and the registry client.

use std::{path::PathBuf, process::ExitCode};

use miette::{IntoDiagnostic, WrapErr};

use super::{Prepared, args::PluginCommand, plugin_runtime, prepare_here};
use crate::{author, runtime::cache_base};

pub fn run(command: PluginCommand) -> miette::Result<ExitCode> {
    // The registry client blocks: keep it off the async runtime's workers.
    std::thread::scope(|scope| scope.spawn(|| run_here(command)).join().expect("no panic"))
}

fn run_here(command: PluginCommand) -> miette::Result<ExitCode> {
    match command {
        PluginCommand::New { name, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            author::scaffold(&dir, &name)?;
            println!("created plugin `{name}` in {}", dir.display());
            println!("next: provision plugin build {0} && provision plugin test {0} --bless", dir.display());
        }
        PluginCommand::Build { dir } => {
            let built = author::build(&dir, &plugin_runtime()?)?;
            let info = &built.plugin.info;
            println!(
                "built {} {} (contract {}): {} ({} bytes, sha256:{})",
                info.name,
                info.version,
                built.plugin.contract,
                built.wasm.display(),
                built.size,
                built.sha256
            );
        }
        PluginCommand::Test { dir, bless } => {
            let runtime = plugin_runtime()?;
            let built = author::build(&dir, &runtime)?;
            let outcomes = author::test(&dir, &runtime, &built.plugin, bless)?;
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            for o in &outcomes {
                let mark = if o.passed { "ok" } else { "FAILED" };
                println!(
                    "fixture {} ... {mark}{}",
                    o.fixture,
                    if o.passed && o.detail.is_empty() { String::new() } else { format!(" ({})", o.detail) }
                );
            }
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        PluginCommand::Push { file, reference } => {
            let (resolved, plugin) = author::load_component(&file, &plugin_runtime()?)?;
            let (name, contract, wasm) = (plugin.info.name, resolved.contract, resolved.wasm);
            let version = semver::Version::parse(&plugin.info.version).expect("checked by load_component");
            let tag = reference.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
            let reference = match tag {
                Some(tag) if tag == version.to_string() => reference,
                Some(tag) => {
                    return Err(miette::miette!(help = format!("push it as …:{version}"), "the tag `{tag}` is not the plugin's version {version}"));
                }
                None => format!("{reference}:{version}"),
            };
            let url = provision_registry::oci::Registry::new().push(&wasm, &reference, &name, &version, &contract).into_diagnostic()?;
            println!("pushed {name} {version} (contract {contract}, sha256:{}) to {reference}", provision_registry::sha256_hex(&wasm));
            eprintln!("{url}");
        }
        PluginCommand::Pull { reference } => {
            let registry = provision_registry::oci::Registry::new();
            let release = match reference.rsplit_once('@') {
                Some((repository, req)) => {
                    let req = semver::VersionReq::parse(req).into_diagnostic().wrap_err_with(|| format!("`{req}` is not a version requirement"))?;
                    registry.resolve(repository, &req)
                }
                None => match reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                    Some((repository, tag)) => registry.release(repository, tag),
                    None => registry.resolve(&reference, &semver::VersionReq::STAR),
                },
            }
            .into_diagnostic()?;
            let wasm = registry.pull(&release).into_diagnostic()?;
            let dir = cache_base().ok_or_else(|| miette::miette!("no cache folder: set PROVISION_CACHE_DIR"))?.join("plugins");
            let path = provision_registry::store_in_cache(&dir, &release.sha256, &wasm).into_diagnostic()?;
            println!("{} {} (contract {}) sha256:{}\n{}", release.name, release.version, release.contract, release.sha256, path.display());
        }
        PluginCommand::Ls(args) => {
            let Prepared { planned, .. } = prepare_here(&args.stack, false)?;
            println!("{:12} {:10} {:10} {:10} {:40} SHA256", "PLUGIN", "VERSION", "REQUIRED", "CONTRACT", "SOURCE");
            for (p, l) in planned.state.plugins.iter().zip(&planned.locked_plugins) {
                println!("{:12} {:10} {:10} {:10} {:40} {}", p.name, p.version, l.requirement, p.contract, p.source, &p.sha256[..16]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
