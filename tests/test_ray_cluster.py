"""A two-node Ray cluster on one machine trains the T-maze through ``--ray-address``.

Two raylets (a head and a worker node, one CPU each) from ``ray.cluster_utils.Cluster``: Ray's own way of
emulating a multi-node cluster on one host. Unlike two ``ray start`` calls, it stops exactly the processes
it started (``ray stop`` stops every Ray process on the machine). ``train.py`` runs as a separate driver
that joins the cluster by address, as it would on a real cluster; the actors spread over both nodes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_node_cluster_trains_tmaze_to_its_threshold(tmp_path):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = cluster.address
        run = tmp_path / "run"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        result = subprocess.run(
            [sys.executable, "train.py", "--env-id", "mnemo/TMaze-v0", "--backend", "ray", "--ray-address",
             address, "--num-workers", "2", "--envs-per-worker", "8", "--total-steps", "40000", "--seed",
             "1", "--eval-episodes", "40", "--eval-mode", "greedy", "--no-progress", "--run-dir", str(run)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        config = json.loads((run / "config.json").read_text())
    finally:
        cluster.shutdown()
    assert config["run"]["backend"] == "ray" and config["run"]["ray_address"] == address
    assert summary["eval_return_mean"] >= 3.8, summary
