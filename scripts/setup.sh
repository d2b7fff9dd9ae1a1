# Shared set-up for scripts/quickstart and scripts/test: sourced, not run.
# Everything here is idempotent: it checks first and installs only what a
# fresh Debian machine (run as root) lacks.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

ensure_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        step "adding the wasm32-wasip2 target (plugins are built for it)"
        rustup target add wasm32-wasip2
    fi
}

# One profile for everything (release): wasmtime is compiled once per machine.
build_provision() {
    ensure_wasm_target
    step "building provision (release; the first build compiles wasmtime, ~6-10 min on 2 cores)"
    cargo build --release --locked
}
