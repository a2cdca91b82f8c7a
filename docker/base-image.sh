#!/bin/sh
# Build a Debian bookworm + Python 3.11 base image with debootstrap and `docker import`, for machines that cannot
# reach a container registry; prints its tag. The tag carries a hash of this recipe, so the image is built once
# per machine and reused until the recipe changes. Needs root (debootstrap) and a reachable Debian mirror:
# DEBIAN_MIRROR, else the one in /etc/apt/sources.list*, else deb.debian.org.
set -eu
DOCKER=${DOCKER:-docker}
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
recipe_hash=$(sha256sum "$0" | cut -c1-12)
tag="irmsia-base:$SUITE-$recipe_hash"
if $DOCKER image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image.sh: debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
mirror=${DEBIAN_MIRROR:-$(sed -n -e 's|^URIs: *\(http[^ ]*/debian\)/*$|\1|p' -e 's|^deb *\(http[^ ]*/debian\)/* .*|\1|p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/irmsia-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image.sh: debootstrap $SUITE from $mirror into $root" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >&2
# What an image never needs: package caches and lists, docs, man pages, translations.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/locale/* "$root"/usr/share/info/* "$root"/var/log/*
tar --numeric-owner -C "$root" -c . | $DOCKER import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "debootstrap $SUITE minbase + $PACKAGES (docker/base-image.sh $recipe_hash)" - "$tag" >&2
echo "$tag"
