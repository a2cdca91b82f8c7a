#!/bin/sh
# Fill docker/wheelhouse/ with a wheel of every package the images install, at the pinned versions, so that
# `OFFLINE=1` image builds need no network (air-gapped sites; also the tests). PYTHON is a Python 3.11 whose pip
# can reach an index. The CPU torch wheel comes from pip's find-links, else from TORCH_INDEX_URL (asked for
# torch alone, so an unreachable torch index costs one failed lookup, not one per package).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
wheelhouse=docker/wheelhouse
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
# Up to date when the pins and the extras have not changed since the last fill.
stamp=$(cat docker/constraints.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$wheelhouse/.stamp" ] && [ "$(cat "$wheelhouse/.stamp")" = "$stamp" ]; then
    echo "wheels: $wheelhouse is up to date"
    exit 0
fi
torch_pin=$(grep '^torch==' docker/constraints.txt)
"$PYTHON" -m pip wheel --quiet --no-deps --retries 0 --wheel-dir "$wheelhouse" "$torch_pin" \
    || "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$wheelhouse" --extra-index-url "$TORCH_INDEX_URL" "$torch_pin"
"$PYTHON" docker/requirements.py core build $("$PYTHON" -m jobs.stages extras) > "$requirements"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$wheelhouse" --find-links "$wheelhouse" -c docker/constraints.txt \
    -r "$requirements"
echo "$stamp" > "$wheelhouse/.stamp"
echo "wheels: $(ls "$wheelhouse"/*.whl | wc -l) in $wheelhouse ($(du -sh "$wheelhouse" | cut -f1))"
