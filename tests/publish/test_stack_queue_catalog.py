"""`bake stack create -P create_queue=true` on a cloud whose catalog has no messaging
service (the Keystone + Glance of tests/publish: a real catalog without Zaqar): one line
naming the way out, exit 2, before anything is sent to Heat."""

from __future__ import annotations

import types

import pytest

from bake.cloud import stack
from bake.errors import EXIT_BAD_INPUT


def test_no_messaging_service_is_one_line_and_exit_2(cloud):
    assert not cloud.has_service("messaging")  # the real catalog: Keystone and Glance only
    heat = types.SimpleNamespace(cloud=cloud)  # queue_endpoint asks only the catalog
    with pytest.raises(stack.StackError) as raised:
        stack.queue_endpoint(heat, {"create_queue": "true"})
    assert raised.value.exit_code == EXIT_BAD_INPUT
    [line] = raised.value.lines()
    assert line.startswith("create_queue: the catalog has no messaging service (Zaqar)")
    assert line.endswith("pass -P zaqar_url=URL of a Zaqar the servers can reach")
    # a queue not asked for, or a Zaqar given, needs no messaging service
    for params in ({"create_queue": "false"}, {}, {"create_queue": "yes", "zaqar_url": "u"}):
        assert stack.queue_endpoint(heat, params) == {}
    # an update: the stack's current parameters count as given
    current = {"create_queue": "True", "zaqar_url": "http://127.0.0.1:8888"}
    assert stack.queue_endpoint(heat, {}, current) == {}
    with pytest.raises(stack.StackError):
        stack.queue_endpoint(heat, {"create_queue": "1"}, {"zaqar_url": ""})
