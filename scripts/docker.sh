# Make sure a Docker engine answers: sourced by scripts/setup.sh.
# Uses the engine DOCKER_HOST or the default socket points at when one
# answers; otherwise (as root, on Debian) installs docker.io and starts
# dockerd in the background, logging to /var/log/provision-dockerd.log.

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        remove_orphan_bridges
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        step "installing Debian's docker.io (no Docker engine answers)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
        step "starting dockerd"
        # A dockerd that died with its session leaves a pid file that would
        # stop a new one from starting: remove it unless that process lives
        # (a zombie does not count).
        local pid
        pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
        if [ -n "$pid" ] && ! ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z; then
            rm -f /var/run/docker.pid
        fi
        nohup dockerd >/var/log/provision-dockerd.log 2>&1 &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && { remove_orphan_bridges; return; }
            sleep 0.5
        done
        echo "dockerd did not answer within 30 s; see /var/log/provision-dockerd.log" >&2
        tail -20 /var/log/provision-dockerd.log >&2 || true
        exit 1
    fi
}

# Bridges named like a Docker network (br-ID) that this engine does not
# have: left by an engine that died or ran with another state folder. One
# holding the subnet of docker0 steals its routes, and containers lose the
# network (image builds then cannot reach a package mirror). Best effort.
remove_orphan_bridges() {
    command -v ip >/dev/null 2>&1 || return 0
    local bridge
    for bridge in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep '^br-' || true); do
        if [ -z "$(docker network ls -q --no-trunc --filter "id=${bridge#br-}" 2>/dev/null)" ]; then
            echo "==> removing bridge $bridge, which no network of this engine owns" >&2
            ip link delete "$bridge" 2>/dev/null || true
        fi
    done
}
