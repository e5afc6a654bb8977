#!/bin/bash
# Build releases/RELEASE from the staging directory (clone, fresh, or reuse a complete one),
# check it, and make it complete; on any failure remove what it made. Prints its steps' times
# (timing.sh's BBQ-PHASES line: clone, reinstall, check, finish), then the app's installed
# version last.
#   install.sh RELEASE BASE MODE STAGE MANIFEST REQUIREMENT VERSION LINK SEND INSTALL REMOVE
#              DEPS_CHANGED INSTALLER UNIT...
# LINK, SEND, INSTALL (wheel file names) and REMOVE (distribution names) are space-separated.
# INSTALLER: the file name of the pinned pypa/installer wheel reinstall.py imports (in the
# pool, or in the stage when sent with SEND).
# Layout: BBQ_RELEASES, BBQ_CURRENT, BBQ_POOL, BBQ_APP (bake.fleet.layout.HostLayout).
set -eu -o pipefail
release=$1 base=$2 mode=$3 stage=$4 manifest=$5 requirement=$6 version=$7
link=$8 send=$9 install=${10} remove=${11} deps_changed=${12} installer=${13}
shift 13
releases=$BBQ_RELEASES current=$BBQ_CURRENT pool=$BBQ_POOL app=$BBQ_APP
target=$releases/$release
finished=
cleanup() {
    rm -rf "$stage"
    if [ -z "$finished" ] && [ "$mode" != reuse ]; then
        rm -rf "$target"
    fi
}
trap cleanup EXIT
pip=(-m pip --quiet --disable-pip-version-check)
offline=(--no-index --no-cache-dir)
requires() {
    cat "$1"/lib/python3*/site-packages/"$app"-*.dist-info/METADATA | grep '^Requires-Dist:' || true
}
for wheel in $link; do
    ln -f "$pool/$wheel" "$stage/$wheel"
done
check=yes installed=
case $mode in
clone)
    rm -rf "$target"
    cp -al "$releases/$base" "$target"
    rm -f "$target/RELEASE" "$target/WHEELS"
    # Scripts, activate files and pyvenv.cfg name the venv's own path: rewrite them (new
    # files, not the hard-linked originals), all by one sed.
    {
        grep -rlIFZ "$releases/$base/" "$target/bin" || true
        printf '%s\0' "$target/pyvenv.cfg"
    } | xargs -0 sed -i "s|$releases/$base\b|$releases/$release|g"
    before=$(requires "$target")
    lap clone
    wheels=()
    for wheel in $install; do
        wheels+=("$stage/$wheel")
    done
    # Universal wheels (the app's own) by pypa/installer, without pip's start-up; pip for
    # any other.
    helper=$pool/$installer
    [ ! -f "$stage/$installer" ] || helper=$stage/$installer
    fast=0
    # It imports the app and prints its version too (the check below, one Python fewer).
    installed=$("$target/bin/python" -c "$(reinstall_py)" "$helper" "$app" "${wheels[@]}") \
        || fast=$?
    if [ "$fast" = 3 ]; then
        installed=
        "$target/bin/python" "${pip[@]}" install "${offline[@]}" --no-deps --force-reinstall \
            "${wheels[@]}"
    elif [ "$fast" != 0 ]; then
        exit "$fast"
    fi
    if [ -n "$remove" ]; then
        installed=
        # The names are a space-separated list (distribution names: no blanks, no globs).
        # shellcheck disable=SC2086
        "$target/bin/python" "${pip[@]}" uninstall --yes $remove
    fi
    # The base's dependencies passed this check when it was made: only a changed dependency
    # or changed app requirements need it again.
    if [ "$deps_changed" = no ] && [ "$(requires "$target")" = "$before" ]; then
        check=no
    fi
    ;;
fresh)
    rm -rf "$target"
    python3 -m venv "$target"
    lap venv
    "$target/bin/python" "${pip[@]}" install "${offline[@]}" --find-links "$stage" \
        "$requirement==$version"
    ;;
esac
lap reinstall
if [ "$check" = yes ]; then
    "$target/bin/python" -m pip check --disable-pip-version-check >&2
fi
for unit in "$@"; do
    program=$(systemctl show -P ExecStart "$unit" | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
    case "$program" in
        "$current"/*) test -x "$target/${program#"$current"/}" || {
            echo "$unit: ${program#"$current"/} missing in the new release" >&2; exit 1; } ;;
    esac
done
if [ -z "${installed:-}" ]; then
    installed=$("$target/bin/python" -c \
        'import importlib, importlib.metadata as m, sys; importlib.import_module(sys.argv[1]); print(m.version(sys.argv[1]))' \
        "$app")
fi
lap check
# WHEELS (sha256sum lines): what the release is built from.
echo "$manifest" > "$target/WHEELS"
echo "$release" > "$target/RELEASE.new"
user=$(stat -c %U "$releases") group=$(stat -c %G "$releases")
# Only what is not the owner's yet (a clone's hard links mostly are): fewer inode writes.
find "$target" \( ! -user "$user" -o ! -group "$group" \) -exec chown -h "$user:$group" {} +
if [ -n "$send" ]; then
    [ -d "$pool" ] || install -d -o "$user" -g "$group" "$pool"
    owner=$(stat -c %U:%G "$pool")
    for wheel in $send; do  # new wheels join the pool (a rename each: never half a wheel)
        chown "$owner" "$stage/$wheel"
        mv -f "$stage/$wheel" "$pool/$wheel"
    done
fi
mv "$target/RELEASE.new" "$target/RELEASE"
finished=yes
lap finish
phases
echo "$installed"
