"""The spawn benchmark's reading of where a start's time goes (benchmarks/phases.py), from
lines in the formats the hub (JupyterHub's log) and the launcher write."""

from __future__ import annotations

import calendar
import time

from benchmarks import phases
from benchmarks.spawn_latency import percentile

POSTED = time.mktime(time.strptime("2026-12-01 00:06:40", "%Y-%m-%d %H:%M:%S")) + 0.5
HUB_LOG = """\
[I 2026-12-01 00:06:40.100 JupyterHub spawner:473] alice: Submitted job 40 to partition jupyter
[I 2026-12-01 00:06:40.700 JupyterHub spawner:473] alice: Submitted job 41 to partition jupyter
[I 2026-12-01 00:06:40.900 JupyterHub spawner:473] bob: Running on node vm, starting Jupyter
[I 2026-12-01 00:06:41.000 JupyterHub spawner:473] alice: Running on node vm, starting Jupyter
[I 2026-12-01 00:06:42.800 JupyterHub spawner:421] alice: the launcher reported port 5000; routing
[I 2026-12-01 00:06:42.900 JupyterHub proxy:345] Adding user alice to proxy /user/alice/ => http
"""
UTC = calendar.timegm(time.strptime("2026-12-01T00:06:41", "%Y-%m-%dT%H:%M:%S"))
LOCAL_SHIFT = UTC - time.mktime(time.strptime("2026-12-01 00:06:41", "%Y-%m-%d %H:%M:%S"))


def launcher_stamp(seconds_after_posted: float) -> str:
    at = POSTED + seconds_after_posted + LOCAL_SHIFT  # the launcher writes UTC
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def test_each_phase_is_the_first_line_of_this_spawn_after_the_post() -> None:
    launcher = "".join(f"[hpcspawner-launcher {launcher_stamp(t)}] {m}\n" for t, m in [
        (0.8, "started (Python 3.11.2)"),
        (0.9, "starting /opt/x/jupyterhub-singleuser on /tmp/hpcspawner-x/server.sock; the "
              "hub reaches it through port 5000"),
        (2.1, "the server listens"), (2.4, "listening on vm:5000; reported")])
    got = phases.phases(HUB_LOG, launcher, "alice", POSTED, POSTED + 2.6)
    expected = {"submit returned": 0.2, "job seen running": 0.5, "launcher started": 0.8,
                "server started": 0.9, "server listening": 2.1, "report received": 2.3,
                "proxy route added": 2.4, "first answer through the proxy": 2.6}
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert abs(got[name] - value) < 0.002, (name, got[name])
    assert phases.job_id(HUB_LOG, "alice", POSTED) == "41"  # not job 40, before the POST


def test_medians_keep_the_order_of_a_start_and_skip_what_was_not_logged() -> None:
    runs = [{"submit returned": 0.1, "first answer through the proxy": 3.0},
            {"submit returned": 0.3, "job seen running": 0.4,
             "first answer through the proxy": 2.0},
            {"submit returned": 0.2, "first answer through the proxy": 4.0}]
    assert phases.medians(runs) == {"submit returned": 0.2, "job seen running": 0.4,
                                    "first answer through the proxy": 3.0}


def test_percentiles_interpolate_between_the_nearest_runs() -> None:
    values = [float(v) for v in range(10, 0, -1)]
    assert abs(percentile(values, 95) - 9.55) < 1e-9
    assert percentile(values, 50) == 5.5
    assert percentile([2.0], 95) == 2.0


def test_shares_split_a_start_into_hpcspawners_the_schedulers_and_the_servers_seconds() -> None:
    run = {"submit returned": 0.07, "launcher started": 0.37, "server started": 0.37,
           "server listening": 2.37, "first answer through the proxy": 2.42}
    got = phases.shares(run)
    assert list(got) == [phases.OURS, phases.SCHEDULER, phases.SERVER]
    assert abs(got[phases.SCHEDULER] - 0.30) < 1e-9
    assert abs(got[phases.SERVER] - 2.00) < 1e-9
    assert abs(got[phases.OURS] - 0.12) < 1e-9  # submit 0.07 + report, route, answer 0.05
    assert abs(sum(got.values()) - run["first answer through the proxy"]) < 1e-9
    del run["launcher started"]
    assert phases.shares(run) == {}  # a start whose launcher line is missing is left out


def test_each_target_is_said_met_or_not_against_the_floor_of_the_same_run() -> None:
    from benchmarks.spawn_latency import condor_targets, targets

    report = {"floor_p50": 2.0, "floor_p95": 2.2, "hpcspawner_p50": 2.5,
              "hpcspawner_p95": 2.9}
    lines = targets(report)
    assert "p50 ≤ 1.10 × floor p50: NOT met (1.25 ×" in lines[0]
    assert "p50 ≤ floor p50 + 0.3 s: NOT met (+0.50 s)" in lines[1]
    assert "p95 ≤ floor p95 + 0.8 s: met (+0.70 s" in lines[2]
    report = {"floor_p50": 2.0, "x_p50": 2.9, "cold": {"s": 3.5}}
    lines = condor_targets(report, "x")
    assert "warm p50 ≤ floor p50 + 1.0 s: met (+0.90 s" in lines[0]
    assert "cold (the user's first start on this hub): 3.50 s (+1.50 s" in lines[1]
