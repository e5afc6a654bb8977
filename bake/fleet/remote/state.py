"""Print a bbq host's release state as one JSON line; stdlib only (it runs on the host).

Run as root by bake.fleet.hoststate: ``python3 -c "$(cat state.py)" RELEASE OWNER WAIT CACHE``,
with the host's layout in the ``BBQ_*`` variables of bake.fleet.layout.HostLayout:

- waits up to WAIT seconds for a switch still running on the host (a dropped deploy's), then
  reads under a shared lock of it (``switch_busy`` when it did not end in time);
- ``current``, complete ``releases`` (with a RELEASE file; oldest first), the distributions
  the current release has ``installed`` (name: version), the ``pool``'s wheel hashes
  (remembered by size and mtime in ``.sha256.json`` when CACHE is ``yes``: under the deploy
  lock; ``no`` writes nothing, for status and --check), the app ``extras`` file's text, the
  enabled ``units``, the ``health_url`` from the app's conf files ([rest] port/url) and a
  ``switching`` marker's from and to releases;
- given a RELEASE other than the current one, makes an empty staging directory for it,
  owned by OWNER (the SSH user).
"""

import configparser
import fcntl
import glob
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import time


def hold_switch_lock(path, wait):
    """A shared lock on the switch lock (the descriptor, or None when there is no lock file)
    and whether a switch still held it after ``wait`` seconds."""
    try:
        lock = os.open(path, os.O_RDONLY)
    except OSError:
        return None, False
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return lock, False
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return lock, True
            time.sleep(0.1)


def read_switching(path):
    try:
        with open(path) as f:
            return f.read().split()[:2] or None
    except OSError:
        return None


def read_current(path):
    if os.path.islink(path):
        return os.path.basename(os.readlink(path).rstrip("/"))
    return None


def complete_releases(releases):
    found = []
    for path in sorted(glob.glob(releases + "/*/")):
        marker = os.path.join(path, "RELEASE")
        if os.path.exists(marker):
            found.append([os.path.basename(path.rstrip("/")), os.stat(marker).st_mtime])
    return sorted(found, key=lambda r: r[1])


def dist_fields(meta):
    """Name and Version of one dist-info METADATA file (its header only)."""
    fields = {}
    with open(meta, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip() or len(fields) == 2:
                break
            key, _, value = line.partition(":")
            if key in ("Name", "Version"):
                fields[key] = value.strip()
    return fields


def installed(current):
    """The distributions the current release has installed (name and version of each)."""
    dists = {}
    for meta in glob.glob(current + "/lib/python*/site-packages/*.dist-info/METADATA"):
        fields = dist_fields(meta)
        if len(fields) == 2:
            dists[fields["Name"]] = fields["Version"]
    return dists


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pool_hashes(pool, remember=True):
    """The pool's wheel hashes: a wheel is hashed again only once changed (size, mtime);
    ``remember``: write what was hashed to the cache file."""
    known_path = os.path.join(pool, ".sha256.json")
    try:
        with open(known_path) as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    hashes, changed = {}, False
    for path in sorted(glob.glob(pool + "/*.whl")):
        name = os.path.basename(path)
        st = os.stat(path)
        entry = known.get(name)
        if not entry or entry[:2] != [st.st_size, st.st_mtime_ns]:
            known[name] = entry = [st.st_size, st.st_mtime_ns, sha256(path)]
            changed = True
        hashes[name] = entry[2]
    if changed and remember:
        with open(known_path + ".new", "w") as f:
            json.dump(known, f)
        os.replace(known_path + ".new", known_path)
    return hashes


def read_extras(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def enabled_units(pattern):
    command = ["systemctl", "list-unit-files", "--no-legend", "--state=enabled", pattern]
    out = subprocess.run(command, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def health_url(conf_dir, default_port, path):
    conf = configparser.ConfigParser(interpolation=None, strict=False)
    for name in sorted(glob.glob(conf_dir + "/*.conf")):
        try:
            conf.read(name)
        except configparser.Error:
            pass
    if not conf.has_section("rest"):
        return None
    port = conf.get("rest", "port", fallback=default_port)
    url = conf.get("rest", "url", fallback="http://127.0.0.1:" + port)
    return url.rstrip("/") + path


def make_stage(stage, owner):
    """An empty staging directory, writable by the SSH user ``owner``."""
    shutil.rmtree(stage, ignore_errors=True)
    os.mkdir(stage, 0o755)
    user = pwd.getpwnam(owner)
    os.chown(stage, user.pw_uid, user.pw_gid)


def main(argv, env):
    release, owner, wait = argv[0], argv[1], float(argv[2])
    remember = argv[3:4] != ["no"]
    lock, busy = hold_switch_lock(env["BBQ_SWITCH_LOCK"], wait)
    state = {
        "current": read_current(env["BBQ_CURRENT"]),
        "releases": complete_releases(env["BBQ_RELEASES"]),
        "pool": pool_hashes(env["BBQ_POOL"], remember),
        "units": enabled_units(env["BBQ_UNITS"]),
        "health_url": health_url(env["BBQ_CONF_DIR"], env["BBQ_REST_PORT"], env["BBQ_HEALTH_PATH"]),
        "installed": installed(env["BBQ_CURRENT"]),
        "extras": read_extras(env["BBQ_EXTRAS_FILE"]),
        "switching": read_switching(env["BBQ_SWITCHING"]),
        "switch_busy": busy,
    }
    if release and release != state["current"]:
        make_stage(env["BBQ_STAGE"], owner)
    print(json.dumps(state))
    return lock  # held until the process exits


if __name__ == "__main__":
    main(sys.argv[1:], os.environ)
