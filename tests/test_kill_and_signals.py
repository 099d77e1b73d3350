"""Real processes: SIGKILL at random moments (training and mid-write), Ctrl-C once (save, exit 130) and twice (abort).

Exactness bound after two SIGKILLs and resumes: 0 (bitwise equal parameters to an uninterrupted run, CPU).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_crash_resume import BATCH, scalar_steps

from agents.run.checkpoint import LATEST, PREVIOUS, CheckpointError, load_payload, load_policy
from agents.train import cli as train
from agents.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


CLI = ["--env-id", "mnemo/CartPoleNoVel-v1", "--num-envs", "4", "--num-steps", "64", "--bptt-len", "8",
       "--num-minibatches", "2", "--update-epochs", "2", "--eval-episodes", "0", "--no-progress", "--seed", "5",
       "--checkpoint-every", "256"]


def _latest_step(run: Path) -> int:
    try:
        _, meta = load_payload(run / "checkpoints" / LATEST)
    except CheckpointError:
        return -1
    return meta["counters"]["global_step"]


def _start(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for_step(proc: subprocess.Popen, run: Path, step: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _latest_step(run) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    total = 4096
    config, _ = train.resolve_config([*CLI, "--total-steps", str(total), "--run-dir", str(tmp_path / "straight")])
    straight = Trainer(config)
    straight.train()

    run = tmp_path / "run"
    rng = random.Random(1)
    kills = 0
    args = [*CLI, "--total-steps", str(total), "--run-dir", str(run)]
    for threshold in (768, 2304):
        proc = _start(args)
        _wait_for_step(proc, run, threshold)
        time.sleep(rng.uniform(0.0, 0.15))  # anywhere: collecting, updating, writing a checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += proc.returncode == -signal.SIGKILL
        assert _latest_step(run) >= threshold  # always a loadable latest checkpoint
        args = ["--resume", str(run)]
    proc = _start(args)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert kills == 2

    resumed, _ = load_policy(run)
    for key, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    steps = [s for s, _ in scalar_steps(run, "charts/learning_rate")]
    assert steps == list(range(BATCH, total + 1, BATCH))  # TensorBoard: no gaps, no duplicates
    assert json.loads((run / "summary.json").read_text())["total_steps"] == total


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_first_ctrl_c_saves_and_exits_130_and_the_run_resumes(tmp_path):
    """With async envs and the signal sent to the whole process group, as Ctrl-C in a terminal does."""
    run = tmp_path / "run"
    proc = _start([*CLI, "--async-envs", "--total-steps", "1000000", "--run-dir", str(run)], start_new_session=True)
    _wait_for_step(proc, run, 512)
    workers = _children(proc.pid)
    assert len(workers) >= 4
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Stopped by SIGINT" in err and f"--resume {run}" in err
    step = _latest_step(run)
    assert step >= 512 and step % BATCH == 0
    assert not (run / "summary.json").exists()
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "async workers outlived the run"
    assert train.main(["--resume", str(run), "--total-steps", str(step + BATCH)]) == 0
    assert _latest_step(run) == step + BATCH


def test_second_ctrl_c_aborts_and_leaves_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    # Long iterations (4096 steps), so that the second Ctrl-C comes while the first waits for the iteration.
    proc = _start([*CLI, "--num-steps", "1024", "--checkpoint-every", "4096", "--total-steps", "1000000",
                   "--run-dir", str(run)])
    _wait_for_step(proc, run, 4096)  # the second iteration has just begun
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)  # two signals at once coalesce into one; a person presses twice
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Aborted" in err
    assert _latest_step(run) == 4096


def _write_forever(path: str, first: int) -> None:
    from agents.run.checkpoint import atomic_torch_save

    for i in range(first, 10**9):
        atomic_torch_save({"i": i, "x": torch.full((6_000_000,), float(i))}, path, keep_previous=PREVIOUS)


def test_sigkill_while_writing_never_leaves_a_broken_checkpoint(tmp_path):
    import multiprocessing

    from agents.run.checkpoint import remove_stale_temp_files

    path = tmp_path / LATEST
    rng = random.Random(0)
    leftovers, first = 0, 0
    for _ in range(4):
        # fork: the child needs no imports, it only writes (no torch threads involved).
        proc = multiprocessing.get_context("fork").Process(target=_write_forever, args=(str(path), first))
        proc.start()
        while not list(tmp_path.glob(f".{LATEST}.*.tmp")):  # the writer is at work
            assert proc.is_alive()
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        leftovers += bool(list(tmp_path.glob(".*.tmp")))  # killed mid-write
        for name in (LATEST, PREVIOUS):
            if (tmp_path / name).exists():
                data = torch.load(tmp_path / name, weights_only=True)
                assert torch.equal(data["x"], torch.full((6_000_000,), float(data["i"])))
        if path.exists():  # absent only when the kill landed in the very first write (a slow, loaded machine)
            first = torch.load(path, weights_only=True)["i"] + 1
        remove_stale_temp_files(tmp_path)
    assert leftovers >= 1, "no kill landed inside a write; the test proved nothing"


SELF_PLAY_CLI = ["--env-id", "toy_multiagent_envs:make_cue_duel", "--self-play", "--snapshot-every", "256",
                 "--swap-every", "256", "--pool-size", "3", "--num-envs", "4", "--num-steps", "32",
                 "--hidden-size", "16", "--bptt-len", "8", "--num-minibatches", "2", "--update-epochs", "2",
                 "--eval-episodes", "0", "--no-progress", "--seed", "5", "--checkpoint-every", "128"]


@pytest.mark.slow
def test_sigkill_of_a_self_play_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Self-play (a toy duel, tests/toy_multiagent_envs.py): the policy, the opponent pool and every rating
    after a SIGKILL at a random moment and a resume are bitwise those of an uninterrupted run."""
    pytest.importorskip("pettingzoo")
    total = 3072
    straight_run = tmp_path / "straight"
    # The uninterrupted run in this process: only the killed run needs to be a process of its own.
    assert train.main([*SELF_PLAY_CLI, "--total-steps", str(total), "--run-dir", str(straight_run)]) == 0
    run = tmp_path / "run"
    proc = _start([*SELF_PLAY_CLI, "--total-steps", str(total), "--run-dir", str(run)])
    _wait_for_step(proc, run, 1024)
    time.sleep(random.Random(2).uniform(0.0, 0.15))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    proc = _start(["--resume", str(run)])
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    straight, _ = load_policy(straight_run)
    resumed, _ = load_policy(run)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    a, b = (load_payload(r / "checkpoints" / LATEST)[0]["collector"]["self_play"] for r in (straight_run, run))
    assert a["pool"]["records"] == b["pool"]["records"] and a["pool"]["learner_rating"] == b["pool"]["learner_rating"]
    for sid, weights in a["pool"]["networks"].items():
        assert all(torch.equal(t, b["pool"]["networks"][sid][n]) for n, t in weights.items())
    summaries = [json.loads((r / "summary.json").read_text())["self_play"] for r in (straight_run, run)]
    assert summaries[0] == summaries[1] and summaries[0]["games_against_snapshots"] > 0
