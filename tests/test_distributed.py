"""FGM and R-Drop under DDP (two CPU processes, gloo): no hang, replicas stay identical, one all-reduce per step,
and the eval loss is the mean loss."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


def test_fgm_and_rdrop_under_ddp_sync_once_per_step_and_keep_replicas_equal(tiny_model, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(REPO / "tests" / "distributed_fgm.py"), tiny_model, str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    for mode in ("plain", "fgm_rdrop"):
        assert ranks[0][mode]["steps"] == 3
        # Gradients were averaged: both replicas took identical optimizer steps.
        assert ranks[0][mode]["checksum"] == pytest.approx(ranks[1][mode]["checksum"], abs=1e-9)
        # The Trainer's eval loss over both processes is the plain mean loss (5.24's own loss path doubled it).
        assert ranks[0][mode]["eval_loss"] == pytest.approx(ranks[0][mode]["eval_loss_by_hand"], rel=1e-4)
    # FGM's extra backward and R-Drop's doubled batch add no all-reduce: the clean backward is not synced.
    assert ranks[0]["fgm_rdrop"]["all_reduces"] == ranks[0]["plain"]["all_reduces"] > 0
    assert ranks[0]["plain"]["checksum"] != pytest.approx(ranks[0]["fgm_rdrop"]["checksum"], abs=1e-6)
