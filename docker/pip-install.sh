#!/bin/sh
# pip install inside an image build: `pip-install.sh GROUP...` installs those pyproject groups (see requirements.py)
# into the image's venv, pinned by docker/constraints.txt. Wheels come from the wheelhouse mounted at /wheels
# (`make wheels`), and only from there when OFFLINE=1; the optional `ca` build secret is an extra CA bundle
# for TLS-intercepting proxies. CONSTRAINTS_EXCLUDE drops pins (the CUDA image keeps its base image's torch).
set -eu
build=/build
if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi
if [ "${OFFLINE:-0}" = 1 ]; then set -- --no-index "$@"; fi
if [ -n "${CONSTRAINTS_EXCLUDE:-}" ]; then
    grep -v -E "^(${CONSTRAINTS_EXCLUDE})==" "$build/docker/constraints.txt" > /tmp/constraints.txt
else
    cp "$build/docker/constraints.txt" /tmp/constraints.txt
fi
requirements=$(mktemp)
groups=""
options=""
for arg in "$@"; do
    case "$arg" in
        -*) options="$options $arg" ;;
        *) groups="$groups $arg" ;;
    esac
done
# shellcheck disable=SC2086 # groups and options are word lists
python3 "$build/docker/requirements.py" $groups > "$requirements"
# shellcheck disable=SC2086
pip install --no-cache-dir --find-links /wheels -c /tmp/constraints.txt $options -r "$requirements"
rm -f "$requirements" /tmp/constraints.txt
