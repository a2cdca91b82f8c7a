#!/bin/sh
# Build the stage images from docker/Dockerfile with BuildKit, one target after another so that every build after
# the first reuses the shared layers (base, core dependencies, torch, the project wheel). `make images` runs this.
# Image names follow the one rule of jobs/stages.py (`python3 -m jobs.stages refs`): <registry>/<image>:<tag>;
# each image is also tagged with the git revision, for tracing a running pod back to its commit.
#
#   REGISTRY         image name prefix (default localhost/irmsia, irmsia.yaml's images.registry)
#   TAG              image tag (default: the project version, irmsia.yaml's images.tag)
#   TARGETS          which images (default: every image of the stage registry, `python3 -m jobs.stages images`)
#   BASE_IMAGE       base of the CPU images                         CUDA_BASE_IMAGE  base of the GPU images
#   OFFLINE=1        install only from docker/wheelhouse (`make wheels`)
#   CA_BUNDLE        file passed as the `ca` build secret (extra CA certificates for pip behind a proxy)
#   DOCKER           docker client; one that can run BuildKit builds is picked if it cannot (needs buildx)
#   PYTHON           a Python 3.11 to read the stage registry with (standard library only; default python3)
set -eu
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-python3}
REGISTRY=${REGISTRY-localhost/irmsia}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
short=$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' jobs/__init__.py)
TAG=${TAG:-$version}
TARGETS=${TARGETS:-$("$PYTHON" -m jobs.stages images)}

# Docker 23+ clients build through the buildx plugin; Debian's docker.io 20.10 client has BuildKit built in.
if ! $DOCKER buildx version >/dev/null 2>&1; then
    client_major=$($DOCKER version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || echo 0)
    if [ "${client_major:-0}" -ge 23 ] 2>/dev/null; then
        if [ -x /usr/bin/docker ] && [ "$(/usr/bin/docker version --format '{{.Client.Version}}' | cut -d. -f1)" -lt 23 ]; then
            DOCKER=/usr/bin/docker
        else
            echo "build-images.sh: $DOCKER has no buildx plugin: install docker-buildx (BuildKit is required)" >&2
            exit 2
        fi
    fi
fi

set -- --file docker/Dockerfile --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --build-arg "OFFLINE=${OFFLINE:-0}"
[ -n "${BASE_IMAGE:-}" ] && set -- "$@" --build-arg "BASE_IMAGE=$BASE_IMAGE"
[ -n "${CUDA_BASE_IMAGE:-}" ] && set -- "$@" --build-arg "CUDA_BASE_IMAGE=$CUDA_BASE_IMAGE"
[ -n "${CA_BUNDLE:-}" ] && set -- "$@" --secret "id=ca,src=$CA_BUNDLE"
mkdir -p docker/wheelhouse
for target in $TARGETS; do
    ref=$("$PYTHON" -m jobs.stages refs "$target" --registry "$REGISTRY" --tag "$TAG")
    traced=$("$PYTHON" -m jobs.stages refs "$target" --registry "$REGISTRY" --tag "$short")
    echo "==> $ref" >&2
    DOCKER_BUILDKIT=1 $DOCKER build --progress=plain "$@" --target "$target" --tag "$ref" --tag "$traced" .
done
