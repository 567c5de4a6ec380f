"""DistributedDataParallel on CPU: two gloo ranks under torchrun train a few steps in sync."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.models import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.timeout(120)
def test_two_cpu_ranks_train_in_sync(tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    repo_root = str(WORKER.parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(WORKER), str(out_dir)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]

    rows = [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]
    end = rows[-1]
    assert end["event"] == "end" and end["step"] == 4
    checksums = end["param_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    # Only rank 0 writes: one log row per logged step, one checkpoint.
    assert [r["step"] for r in rows if r["event"] == "train"] == [2, 4]
    assert sorted(p.name for p in out_dir.glob("*.pt")) == ["last.pt"]
    checkpoint = load_checkpoint(out_dir / "last.pt")
    assert checkpoint["extra"]["world_size"] == 2 and checkpoint["extra"]["step"] == 4
    assert len(checkpoint["train_state"]["rng"]) == 2
    # Each rank draws its own M-per-class batches (rank-dependent seed): 4 steps x 24 items each.
    items = [json.loads((out_dir / f"rank{rank}_items.json").read_text()) for rank in (0, 1)]
    assert len(items[0]) == len(items[1]) == 4 * 24
    assert items[0] != items[1]
