#!/usr/bin/env bash
# Builds the stack's images without a registry: a Debian bookworm base from debootstrap (docker/base-image.sh, kept
# between runs), PostgreSQL from Debian's packages on it, and tabduel's image on it. Builds run with --network host
# (pip and apt reach their indexes through the host). Docker's layer cache makes a re-run with unchanged inputs
# take seconds.
#   docker/build-images.sh          # tags $TABDUEL_IMAGE:cpu (tabduel-bookworm:cpu) and $POSTGRES_IMAGE
# then: TABDUEL_IMAGE=... POSTGRES_IMAGE=... docker-compose -f docker/compose.yaml --env-file docker/.env up -d
# TORCH_WHEELS: a directory holding the CPU torch wheel (default /opt/wheels when it holds one): served to the build
# on loopback port TORCH_WHEELS_PORT (default 38917: a fixed port keeps the build argument, and so Docker's layer
# cache, the same from run to run), for machines that reach PyPI but not download.pytorch.org.
set -euo pipefail
cd "$(dirname "$0")/.."
TABDUEL_IMAGE=${TABDUEL_IMAGE:-tabduel-bookworm}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-tabduel/postgres:bookworm}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
log() { echo "build-images.sh: $*" >&2; }

start=$(date +%s)
base=$(docker/base-image.sh)
log "base image $base ($(( $(date +%s) - start )) s)"

t=$(date +%s)
docker build --network host -q -f docker/postgres.Dockerfile --build-arg BASE_IMAGE="$base" \
    -t "$POSTGRES_IMAGE" . >&2
log "$POSTGRES_IMAGE ($(( $(date +%s) - t )) s)"

torch_args=()
wheels=${TORCH_WHEELS:-/opt/wheels}
if compgen -G "$wheels/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then
    port=${TORCH_WHEELS_PORT:-38917}
    python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >/dev/null 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
        kill -0 $server 2>/dev/null || { log "cannot serve $wheels on 127.0.0.1:$port (set TORCH_WHEELS_PORT)"; exit 1; }
        sleep 0.1
    done
    torch_args=(--build-arg TORCH_INDEX_URL=https://pypi.org/simple
                --build-arg TORCH_FIND_LINKS="http://127.0.0.1:$port/")
    log "torch from $wheels (served on 127.0.0.1:$port)"
fi
t=$(date +%s)
docker build --network host -q -f docker/Dockerfile --build-arg BASE_IMAGE="$base" \
    --build-arg TORCH_VERSION="$TORCH_VERSION" ${torch_args[@]+"${torch_args[@]}"} -t "$TABDUEL_IMAGE:cpu" . >&2
log "$TABDUEL_IMAGE:cpu ($(( $(date +%s) - t )) s); all in $(( $(date +%s) - start )) s"
