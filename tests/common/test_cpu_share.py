from __future__ import annotations

import subprocess
import sys

import torch

from unpaired_sr.common.cpu_share import CpuShare, available_cores


def test_the_cores_are_split_between_the_trainings_alive(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("unpaired_sr.common.cpu_share.available_cores", lambda: 4)
    threads_before = torch.get_num_threads()
    share = CpuShare(folder=tmp_path)
    assert share.trainings() == 1 and share.threads() == 4
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / str(other.pid)).touch()  # a second training registers
        (tmp_path / "999999999").touch()  # one that ended without cleaning up
        assert share.trainings() == 2 and share.threads() == 2
        assert not (tmp_path / "999999999").exists()
        assert share.rebalance() == 2 and torch.get_num_threads() == 2
    finally:
        other.kill()
        other.wait()
    assert share.trainings() == 1 and share.threads() == 4  # its cores come back
    share.close()
    assert list(tmp_path.iterdir()) == []
    assert CpuShare(fixed_threads=3, folder=tmp_path).threads() == 3 and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's (or torchrun's) limit stays a limit
    capped = CpuShare(folder=tmp_path)
    assert capped.threads() == 2
    capped.close()
    torch.set_num_threads(threads_before)
    assert available_cores() >= 1
