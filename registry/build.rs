//! Builds the built-in plugins (plugins/, a guest workspace of its own) for
//! wasm32-wasip2 and generates the index that embeds them.

#[path = "guest_build.rs"]
mod guest_build;

use std::{
    env,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// registry/builtin.toml
#[derive(Deserialize)]
struct Index {
    plugins: Vec<String>,
}

/// wit/contracts.toml
#[derive(Deserialize)]
struct Contracts {
    released: Vec<semver::Version>,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    let current = contracts(&root, &out);

    let index_path = manifest_dir.join("builtin.toml");
    let index: Index = toml::from_str(&fs::read_to_string(&index_path).unwrap()).expect("registry/builtin.toml");
    println!("cargo::rerun-if-changed={}", index_path.display());
    for dir in ["wit", "plugins/Cargo.toml", "plugins/Cargo.lock", "plugins/sdk", "plugins/wit"] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    for name in &index.plugins {
        println!("cargo::rerun-if-changed={}", root.join("plugins").join(name).display());
    }
    let wasm_dir = guest_build::build_guests(&root, &root.join("plugins/Cargo.toml"), &index.plugins);

    let mut code = String::from("pub(crate) static BUILTIN: &[Builtin] = &[\n");
    for name in &index.plugins {
        let version = crate_version(&root.join("plugins").join(name).join("Cargo.toml"));
        let bytes = fs::read(wasm_dir.join(format!("{name}.wasm"))).unwrap();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let embedded = out.join(format!("{name}.wasm"));
        fs::write(&embedded, &bytes).unwrap();
        writeln!(
            code,
            "    Builtin {{ name: {name:?}, version: {version:?}, contract: {current:?}, sha256: {sha256:?}, wasm: include_bytes!({embedded:?}) }},",
        )
        .unwrap();
    }
    code.push_str("];\n");
    fs::write(out.join("builtin.rs"), code).unwrap();
}

/// Generate `contract.rs` from wit/contracts.toml; returns the current
/// version. The SDK's plugins/wit must link to the current version's folder.
fn contracts(root: &Path, out: &Path) -> String {
    let path = root.join("wit/contracts.toml");
    println!("cargo::rerun-if-changed={}", path.display());
    let contracts: Contracts = toml::from_str(&fs::read_to_string(&path).unwrap()).expect("wit/contracts.toml");
    let current = contracts.released.last().expect("wit/contracts.toml lists at least one version");
    for v in &contracts.released {
        let folder = root.join(format!("wit/v{v}"));
        assert!(folder.join("provider.wit").is_file(), "wit/contracts.toml lists {v}, but {} has no provider.wit", folder.display());
    }
    let sdk_wit = fs::canonicalize(root.join("plugins/wit")).expect("plugins/wit (a link to the current contract's folder)");
    let current_dir = fs::canonicalize(root.join(format!("wit/v{current}"))).unwrap();
    assert_eq!(
        sdk_wit, current_dir,
        "plugins/wit must link to the current contract's folder (the last in wit/contracts.toml): `ln -sfn ../wit/v{current} plugins/wit`"
    );
    let list: Vec<String> = contracts.released.iter().map(|v| format!("Version::new({}, {}, {})", v.major, v.minor, v.patch)).collect();
    let code = format!(
        "/// Every released contract version, oldest first (wit/contracts.toml).\n\
         pub const RELEASED: &[Version] = &[{}];\n\
         /// The current version: what the SDK, `plugin new` and the built-ins target.\n\
         pub const CURRENT: Version = Version::new({}, {}, {});\n\
         /// The current version's WIT, written into new plugin crates.\n\
         pub const CURRENT_WIT: &str = include_str!({:?});\n",
        list.join(", "),
        current.major,
        current.minor,
        current.patch,
        current_dir.join("provider.wit"),
    );
    fs::write(out.join("contracts.rs"), code).unwrap();
    current.to_string()
}

fn crate_version(manifest: &Path) -> String {
    #[derive(Deserialize)]
    struct Manifest {
        package: Package,
    }
    #[derive(Deserialize)]
    struct Package {
        version: String,
    }
    let text = fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let manifest: Manifest = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    manifest.package.version
}
