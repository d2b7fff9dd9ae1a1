# Make sure a Docker engine answers: sourced by scripts/setup.sh.
# Uses the engine DOCKER_HOST or the default socket points at when one
# answers; otherwise (as root, on Debian) installs docker.io and starts
# dockerd in the background, logging to /var/log/provision-dockerd.log.

ensure_docker() {
    if docker info >/dev/null 2>&1; then
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
            docker info >/dev/null 2>&1 && return
            sleep 0.5
        done
        echo "dockerd did not answer within 30 s; see /var/log/provision-dockerd.log" >&2
        tail -20 /var/log/provision-dockerd.log >&2 || true
        exit 1
    fi
}
