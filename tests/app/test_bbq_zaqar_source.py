"""The Zaqar source's reader against a real Zaqar (no Spark): claims of the prefetched batch
are recorded like those Spark has, and a restarted reader releases them, so nothing is lost
and nothing read twice once committed."""

import json

from bbq import testing
from bbq.sources import ZaqarStreamReader


def test_prefetched_claims_are_recorded_and_released_on_restart(zaqar_server, tmp_path):
    queue = zaqar_server.new_queue()
    n = 50
    sent = [{"body": json.dumps({"id": f"p-{i}", "service": "web", "value": i})} for i in range(n)]
    zaqar_server.client().queue(queue).post(sent)
    claims_file = tmp_path / "claims.json"
    options = {
        "url": zaqar_server.url,
        "queue": queue,
        "project_id": "bbq-tests",
        "claim_limit": "10",
        "max_batch_messages": "10",
        "claims_file": str(claims_file),
    }
    reader = ZaqarStreamReader(options)
    rows, end = reader.read({"batch": 0})
    first = [json.loads(value)["id"] for value, _, _ in rows]
    assert len(first) == 10 and end == {"batch": 1}
    # The next batch is claimed meanwhile, and recorded with the one Spark is processing.
    testing.wait_until(lambda: reader.pending_claims() == 2, 30, what="prefetch")
    assert len(json.loads(claims_file.read_text())) == 2
    assert zaqar_server.queue_depth(queue)["claimed"] == 20

    reader.commit(end)  # batch 1 done: its messages go; the prefetched ones stay claimed
    testing.wait_until(
        lambda: zaqar_server.queue_depth(queue)["total"] == n - 10, 30, what="batch 1 deleted"
    )
    testing.wait_until(lambda: reader.pending_claims() == 1, 30, what="claims file updated")
    assert len(json.loads(claims_file.read_text())) == 1

    # The reader dies with a prefetched batch; its successor releases that claim at once
    # (no waiting for the claim to expire) and reads every message left exactly once.
    again = ZaqarStreamReader(options)
    start, later = {"batch": 1}, []
    for _ in range(20):
        rows, end = again.read(start)
        later += [json.loads(value)["id"] for value, _, _ in rows]
        if end != start:
            again.commit(end)
            start = end
        if len(later) >= n - 10:
            break
    assert sorted(first + later) == sorted(f"p-{i}" for i in range(n))
    testing.wait_until(
        lambda: zaqar_server.queue_depth(queue)["total"] == 0, 30, what="queue drained"
    )
