#!/usr/bin/env python3
"""Benchmark: stack create time on real Heat (Nova's fake virt driver, tests/fixtures/heat.py).

Starts the whole small cloud once (Keystone, Glance, Placement, Nova, Neutron, Heat,
RabbitMQ, MariaDB on 127.0.0.1), then, ROUNDS times each, alternating:

- ``plain``: a HOT template of 1 server + an ``OS::Heat::ResourceGroup`` of 3 servers (ports
  on the flat network, user data and metadata, no wait conditions): what Heat itself costs
  for 1 + 3 servers here;
- ``bbq``: ``bake stack create --wait`` of stacks/bbq.yaml with 3 workers (4 role servers +
  3 workers, their ports, security groups, wait conditions; every server's signal sent from
  its user data as soon as Nova lists it ACTIVE, as cloud-init would at once).

Each stack is deleted (and the delete timed) before the next. Prints every run, the medians,
the ratio bbq/plain per server, and the cloud's start-up time.

Usage: .venv/bin/python bench/bench_stack.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.heat import CLOUD_NAME, NETWORK, HeatCloud  # noqa: E402
from tests.stack.signals import Signaller  # noqa: E402

BAKE = Path(sys.executable).parent / "bake"
SPECS = ("bbq-datastore", "bbq-spark", "bbq-rest", "bbq-streaming")
PLAIN = """
heat_template_version: 2021-04-16
parameters:
  image: {type: string}
  network: {type: string}
resources:
  group:
    type: OS::Heat::ResourceGroup
    properties:
      count: 3
      resource_def:
        type: OS::Nova::Server
        properties:
          name: {list_join: ["-", [{get_param: OS::stack_name}, node, "%index%"]]}
          image: {get_param: image}
          flavor: m1.small
          networks: [{network: {get_param: network}}]
          metadata: {bbq_role: worker, bbq_stack: {get_param: OS::stack_name}}
          user_data_format: RAW
          user_data: "#cloud-config\\nhostname: node-%index%\\n"
  master:
    type: OS::Nova::Server
    properties:
      name: {list_join: ["-", [{get_param: OS::stack_name}, master]]}
      image: {get_param: image}
      flavor: m1.small
      networks: [{network: {get_param: network}}]
      metadata: {bbq_role: master, bbq_stack: {get_param: OS::stack_name}}
      user_data_format: RAW
      user_data: "#cloud-config\\nhostname: master\\n"
"""


def prepare(cloud: HeatCloud, work: Path) -> dict[str, str]:
    """Flavors, one tiny image per spec (bake_spec set as bake publish sets it)."""
    from glanceclient import client as glance_client
    from novaclient import client as nova_client

    session = cloud.session()
    nova = nova_client.Client("2.1", session=session, region_name="RegionOne")
    for name, ram, vcpus in (("m1.small", 2048, 1), ("m1.medium", 4096, 2), ("m1.large", 8192, 4)):
        nova.flavors.create(name, ram, vcpus, 10)
    glance = glance_client.Client("2", session=session, region_name="RegionOne")
    disk = work / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    images = {}
    for spec in SPECS:
        image = glance.images.create(
            name=f"{spec}-0.1.0", disk_format="qcow2", container_format="bare", bake_spec=spec
        )
        with open(disk, "rb") as data:
            glance.images.upload(image["id"], data)
        images[spec] = image["id"]
    return images


def bake(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [str(BAKE), *args], env=env, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise SystemExit(f"bake {' '.join(args[:3])} failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def run_plain(heat, name: str, image: str) -> float:
    started = time.monotonic()
    heat.stacks.create(
        stack_name=name, template=PLAIN, parameters={"image": image, "network": NETWORK}
    )
    while True:
        stack = heat.stacks.get(name)
        if stack.status in ("COMPLETE", "FAILED"):
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    if stack.status != "COMPLETE":
        raise SystemExit(f"plain stack {stack.stack_status}: {stack.stack_status_reason}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from heatclient import client as heat_client
    from novaclient import client as nova_client

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp, HeatCloud(Path(tmp)) as cloud:
        print(f"cloud up in {cloud.timings['start']:.0f}s", flush=True)
        images = prepare(cloud, Path(tmp))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
            "OS_CLIENT_CONFIG_FILE": str(cloud.clouds_yaml()),
            "OS_CLOUD": CLOUD_NAME,
        }
        session = cloud.session()
        heat = heat_client.Client("1", session=session, region_name="RegionOne")
        nova = nova_client.Client("2.3", session=session, region_name="RegionOne")
        times: dict[str, list[float]] = {"plain": [], "bbq": [], "delete": []}
        for i in range(args.rounds):
            name = f"plain{i}"
            times["plain"].append(run_plain(heat, name, images["bbq-spark"]))
            times["delete"].append(bake(env, "stack", "delete", name))
            name = f"bbq{i}"
            with Signaller(nova, name, interval=0.5):
                create = ["stack", "create", name, "--wait", "--workers", "3"]
                times["bbq"].append(bake(env, *create, "-P", f"network={NETWORK}"))
            times["delete"].append(bake(env, "stack", "delete", name))
            print(
                f"round {i + 1}: plain (1+3 servers) {times['plain'][-1]:.1f}s, "
                f"bbq (4+3 servers, wait conditions) {times['bbq'][-1]:.1f}s",
                flush=True,
            )
        plain, full = statistics.median(times["plain"]), statistics.median(times["bbq"])
        print(f"median create: plain 1+3 servers {plain:.1f}s, bbq 4+3 servers {full:.1f}s")
        print(f"median delete (either): {statistics.median(times['delete']):.1f}s")
        print(
            f"per server: plain {plain / 4:.2f}s, bbq {full / 7:.2f}s, ratio bbq/plain "
            f"{(full / 7) / (plain / 4):.2f}x"
        )


if __name__ == "__main__":
    main()
