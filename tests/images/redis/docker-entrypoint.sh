#!/bin/bash
# The official redis image's entrypoint contract, in short.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

# Like the official image: without a config file, allow connections from
# other containers (protected mode would refuse them).
if [ "$1" = 'redis-server' ] && [ "${2%.conf}" = "${2:-}" ]; then
    set -- "$@" --protected-mode no
fi

exec "$@"
