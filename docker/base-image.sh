#!/usr/bin/env bash
# A Debian bookworm base image from Debian's packages alone (no registry): debootstrap, then `docker import`.
# The tag is a hash of what goes in (suite, mirror, packages, RECIPE and the host's local CA certificates), so the
# image built before is reused until one of them changes; bump RECIPE when the steps below change. Prints the tag on stdout; progress goes to stderr.
#   docker/base-image.sh            # -> tabduel/bookworm-base:<hash>
# Needs root, debootstrap and a running Docker engine.
set -euo pipefail
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3 (3.11 in bookworm) and its venv module for the tabduel image; ca-certificates for pip and apt over TLS.
PACKAGES=python3,python3-venv,ca-certificates
RECIPE=1
# The host's local CAs (e.g. a TLS-intercepting egress proxy's): the image trusts what the host trusts.
LOCAL_CAS=(/usr/local/share/ca-certificates/*.crt)
[ -e "${LOCAL_CAS[0]}" ] || LOCAL_CAS=()

hash=$( (echo "$SUITE $MIRROR $PACKAGES $RECIPE"; cat ${LOCAL_CAS[@]+"${LOCAL_CAS[@]}"}) | sha256sum | cut -c1-12)
TAG=${BASE_TAG:-tabduel/bookworm-base:$hash}
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "base-image.sh: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /tmp/tabduel-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >&2
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
if [ ${#LOCAL_CAS[@]} -gt 0 ]; then
    cp "${LOCAL_CAS[@]}" "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >&2
fi
# Keep the image small: no package lists or cached .debs (image builds run apt-get update first).
rm -rf "${root:?}"/var/lib/apt/lists/* "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/tmp/* "${root:?}"/dev/*
tar -C "$root" --numeric-owner -c . \
    | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG" >&2
echo "base-image.sh: built $TAG in $(( $(date +%s) - start )) s" >&2
echo "$TAG"
