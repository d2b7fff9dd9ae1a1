//! Building guest crates for wasm32-wasip2 from a build script. Shared by
//! registry/build.rs (the built-in plugins) and tests/artifacts/build.rs (the
//! test plugins) through `#[path]`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Runs `cargo build --release --target wasm32-wasip2` for the guest
/// workspace, in a target dir shared by every host profile so the guests are
/// compiled once. Returns the folder holding the `.wasm` files.
pub fn build_guests(workspace_root: &Path, manifest: &Path, packages: &[String]) -> PathBuf {
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("guests"),
        None => workspace_root.join("target/guests"),
    };
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"]).arg(manifest).arg("--target-dir").arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // The host build's flags, target and wrappers (`cargo clippy` runs
    // through one) must not leak into the guests': they are built the same
    // way every time, and linted on their own (scripts/test).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the built-in plugins");
    if !status.success() {
        panic!(
            "building the built-in plugins for wasm32-wasip2 failed (see above). \
             If the target is missing: `rustup target add wasm32-wasip2`"
        );
    }
    target_dir.join("wasm32-wasip2/release")
}
