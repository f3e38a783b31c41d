"""start() failing half-way and stop() called anyway, as the runner's cleanup does."""

from __future__ import annotations

import asyncio

import pytest

from pykubemark.kube import Client, KubeConfig
from pykubemark.measure import ApiResponsiveness, Context, EtcdMetrics, MeasurementError
from pykubemark.report.output import Output


def context(tmp_path, **extra) -> Context:
    # Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    client = Client(KubeConfig(server="http://127.0.0.1:9", ssl_context=None))
    return Context(client, Output(tmp_path, "t"), **extra)


@pytest.mark.parametrize("make", [
    lambda ctx: EtcdMetrics(ctx),           # no etcd URL: etcd is not local
    lambda ctx: ApiResponsiveness(ctx),      # the apiserver does not answer
])
def test_failed_start_is_a_measurement_error_and_stop_still_works(tmp_path, make):
    async def scenario():
        ctx = context(tmp_path)
        m = make(ctx)
        with pytest.raises(MeasurementError, match=m.name):
            await m.start()
        await m.stop()
        await m.stop()
        await ctx.client.close()
        return m

    m = asyncio.run(scenario())
    assert not list(tmp_path.glob(f"{m.name}_*.json"))  # nothing measured, nothing claimed
    assert all(s.verdict == "no data" for s in m.slos())
