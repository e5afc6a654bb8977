"""The bbq-cleanup element: which kernel modules go, and every switch documented."""

from __future__ import annotations

import re
import subprocess

from tests.bake.conftest import REPO

ELEMENT = REPO / "elements" / "bbq-cleanup"
SCRIPT = ELEMENT / "finalise.d" / "90-bbq-cleanup"


def dependents(modules_dep: str, dirs: str, tmp_path) -> set[str]:
    """Run the element's own ``dependents`` shell function on a modules.dep."""
    (tmp_path / "modules.dep").write_text(modules_dep)
    text = SCRIPT.read_text()
    function = re.search(r"^dependents\(\) \{\n.*?^\}\n", text, re.M | re.S).group(0)
    result = subprocess.run(
        ["bash", "-c", f'{function}\ndependents "$0" {dirs}', str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_listed_dirs_and_every_module_depending_on_them_go(tmp_path):
    modules_dep = (
        "kernel/sound/core/snd.ko:\n"
        "kernel/sound/pci/snd-hda.ko: kernel/sound/core/snd.ko\n"
        "kernel/drivers/gpu/drm/drm.ko:\n"
        "kernel/drivers/gpu/drm/i915/i915.ko: kernel/drivers/gpu/drm/drm.ko "
        "kernel/drivers/media/cec/cec.ko\n"
        "kernel/drivers/media/cec/cec.ko:\n"
        "kernel/drivers/gpu/drm/display/helper.ko: kernel/drivers/media/cec/cec.ko\n"
        "kernel/drivers/gpu/drm/virtio/virtio-gpu.ko: kernel/drivers/gpu/drm/drm.ko\n"
        "kernel/drivers/x/uses-helper.ko: kernel/drivers/gpu/drm/display/helper.ko\n"
        "kernel/drivers/net/virtio_net.ko:\n"
        "kernel/drivers/soundwire/x.ko:\n"
    )
    gone = dependents(modules_dep, "sound drivers/media drivers/gpu/drm/i915", tmp_path)
    assert gone == {
        "kernel/sound/core/snd.ko",
        "kernel/sound/pci/snd-hda.ko",
        "kernel/drivers/gpu/drm/i915/i915.ko",
        "kernel/drivers/media/cec/cec.ko",
        "kernel/drivers/gpu/drm/display/helper.ko",  # needs cec
        "kernel/drivers/x/uses-helper.ko",  # needs what needed cec
    }


def test_every_switch_is_documented():
    environment = (ELEMENT / "environment.d" / "10-bbq-cleanup.bash").read_text()
    switches = set(re.findall(r"^export (DIB_BBQ_CLEANUP\w*)=", environment, re.M))
    assert len(switches) >= 9
    readme = (ELEMENT / "README.rst").read_text()
    script = SCRIPT.read_text()
    for switch in switches:
        assert switch in readme, f"{switch} is not described in README.rst"
        name = switch.removeprefix("DIB_BBQ_CLEANUP_")
        if switch not in ("DIB_BBQ_CLEANUP", "DIB_BBQ_CLEANUP_KERNEL_MODULE_DIRS"):
            assert re.search(rf"\bon {name}\b", script), switch
