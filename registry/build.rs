//! Builds the built-in plugins (plugins/, a guest workspace of its own) for
//! wasm32-wasip2 and generates the index that embeds them.

#[path = "guest_build.rs"]
mod guest_build;

use std::{env, fmt::Write as _, fs, path::PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Index {
    plugin: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    version: String,
    contract: String,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    let index_path = manifest_dir.join("builtin.toml");
    let index: Index = toml::from_str(&fs::read_to_string(&index_path).unwrap()).expect("registry/builtin.toml");
    println!("cargo::rerun-if-changed={}", index_path.display());
    for dir in ["wit", "plugins/Cargo.toml", "plugins/Cargo.lock", "plugins/sdk"] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }

    let crates: Vec<String> = index.plugin.iter().map(|p| p.name.clone()).collect();
    for name in &crates {
        println!("cargo::rerun-if-changed={}", root.join("plugins").join(name).display());
    }
    let wasm_dir = guest_build::build_guests(&root, &root.join("plugins/Cargo.toml"), &crates);

    let mut code = String::from("pub(crate) static BUILTIN: &[Builtin] = &[\n");
    for entry in &index.plugin {
        check_crate_version(&root, entry);
        let bytes = fs::read(wasm_dir.join(format!("{}.wasm", entry.name))).unwrap();
        let sha256 = hex(&Sha256::digest(&bytes));
        let embedded = out.join(format!("{}.wasm", entry.name));
        fs::write(&embedded, &bytes).unwrap();
        writeln!(
            code,
            "    Builtin {{ name: {:?}, version: {:?}, contract: {:?}, sha256: {:?}, wasm: include_bytes!({:?}) }},",
            entry.name, entry.version, entry.contract, sha256, embedded
        )
        .unwrap();
    }
    code.push_str("];\n");
    fs::write(out.join("builtin.rs"), code).unwrap();
}

fn check_crate_version(root: &std::path::Path, entry: &Entry) {
    #[derive(Deserialize)]
    struct Manifest {
        package: Package,
    }
    #[derive(Deserialize)]
    struct Package {
        version: String,
    }
    let path = root.join("plugins").join(&entry.name).join("Cargo.toml");
    let manifest: Manifest = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        manifest.package.version, entry.version,
        "registry/builtin.toml says {} is version {}, but {} says {}",
        entry.name, entry.version, path.display(), manifest.package.version
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
