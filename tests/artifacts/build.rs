//! Compiles every member of tests/plugins for wasm32-wasip2 and writes one
//! constant per plugin: `pub const LOOPER: &str = "/…/looper.wasm";`.

#[path = "../../registry/guest_build.rs"]
mod guest_build;

use std::{env, fmt::Write as _, fs, path::PathBuf};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..").canonicalize().unwrap();
    let manifest = root.join("tests/plugins/Cargo.toml");
    let workspace: toml::Table = toml::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    let members: Vec<String> =
        workspace["workspace"]["members"].as_array().expect("workspace.members").iter().map(|m| m.as_str().unwrap().to_string()).collect();
    println!("cargo::rerun-if-changed={}", root.join("tests/plugins").display());
    println!("cargo::rerun-if-changed={}", root.join("plugins/sdk").display());
    println!("cargo::rerun-if-changed={}", root.join("wit").display());

    let dir = guest_build::build_guests(&root, &manifest, &members);
    let mut code = String::new();
    for member in &members {
        let file = dir.join(format!("{}.wasm", member.replace('-', "_")));
        assert!(file.exists(), "{} was not built", file.display());
        writeln!(code, "pub const {}: &str = {:?};", member.replace('-', "_").to_uppercase(), file.display().to_string()).unwrap();
    }
    writeln!(code, "pub const ALL: &[&str] = &{:?};", members).unwrap();
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("plugins.rs"), code).unwrap();
}
