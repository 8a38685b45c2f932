"""A checkpoint directory is data: nothing in one may run code, and damage is named.

DCP itself unpickles ``.metadata`` with plain ``pickle.load`` and non-tensor values with
``torch.load(weights_only=False)``; these tests plant payloads in both places (each would write
a marker file when run) and check that resuming refuses them, names the file, and that the
marker never appears.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.distributed.checkpoint.filesystem import _StorageInfo

from stratocast.shards.layout import Manifest
from stratocast.train.dcp_checkpoint import (
    COMPLETE,
    DIGESTS,
    CheckpointConfig,
    Checkpointer,
    ResumeError,
    checkpoint_dir,
    read_metadata_safely,
    write_digests,
)
from stratocast.train.parallel import DistInfo

REPO = Path(__file__).resolve().parents[2]


class _Payload:
    """Pickles to ``exec(code)``: what an attacker plants. Unpickling it runs ``code``."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (self.code,))


class _DottedPayload:
    """Reaches a callable through an allowed module by a dotted name (protocol 4)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, str]]:
        return (Path.write_text, (self.marker, "ran"))


def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    return model, opt


def _saved(root: Path) -> tuple[Checkpointer, nn.Module, torch.optim.Optimizer]:
    ckpt = Checkpointer(root, CheckpointConfig(async_save=False), DistInfo())
    model, opt = _model()
    ckpt.save(2, model, opt, {"epoch": 0, "position": 1}, {"batch_size": 2})
    return ckpt, model, opt


def test_a_clean_checkpoint_round_trips_through_the_safe_reader(tmp_path: Path) -> None:
    ckpt, model, opt = _saved(tmp_path)
    path = checkpoint_dir(tmp_path, 2)
    digests = json.loads((path / DIGESTS).read_text())["files"]
    assert {".metadata", "meta.json", "rank-00000.json"} <= set(digests)
    assert any(n.endswith(".distcp") for n in digests)
    fresh, fresh_opt = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), None
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=5.0)
    restored = ckpt.restore(2, fresh, fresh_opt, batch_size=2)
    assert restored.loader_state == {"epoch": 0, "position": 1}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("payload", [_Payload, _DottedPayload])
def test_a_crafted_metadata_pickle_is_refused_and_never_runs(tmp_path: Path, payload: type) -> None:
    ckpt, _, _ = _saved(tmp_path / "ck")
    path = checkpoint_dir(tmp_path / "ck", 2)
    marker = tmp_path / "PWNED"
    (path / ".metadata").write_bytes(pickle.dumps(payload(marker), protocol=4))
    write_digests(path)  # a planter can plant matching digests: they are no defence alone
    model, opt = _model()
    with pytest.raises(ResumeError, match=r"\.metadata: refusing to load: .*(exec|write_text)"):
        ckpt.restore(2, model, opt, batch_size=2)
    with pytest.raises(ResumeError, match="refusing to load"):
        read_metadata_safely(path / ".metadata")
    assert not marker.exists()


def test_protocol_0_global_is_refused_by_the_scan_before_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    bad = tmp_path / ".metadata"
    bad.write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    with pytest.raises(ResumeError, match=r"(__builtin__|builtins)\.exec at byte 0"):
        read_metadata_safely(bad)
    assert not marker.exists()


def test_a_non_tensor_value_with_a_payload_is_refused(tmp_path: Path) -> None:
    """Metadata made only of allowed classes, pointing a non-tensor value (the learning rate)
    at a planted torch.save of a payload: DCP would torch.load it with weights_only=False."""
    ckpt, _, _ = _saved(tmp_path / "ck")
    path = checkpoint_dir(tmp_path / "ck", 2)
    marker = tmp_path / "PWNED"
    buf = io.BytesIO()
    torch.save(_Payload(marker), buf)
    (path / "evil.distcp").write_bytes(buf.getvalue())
    md = read_metadata_safely(path / ".metadata")
    key = next(k for k in md.storage_data if k.fqn == "optim.param_groups.0.lr")
    md.storage_data[key] = _StorageInfo("evil.distcp", 0, len(buf.getvalue()))
    (path / ".metadata").write_bytes(pickle.dumps(md))
    write_digests(path)
    model, opt = _model()
    with pytest.raises(
        ResumeError, match=r"evil\.distcp: refusing to load value .optim.param_groups.0.lr.: .*exec"
    ):
        ckpt.restore(2, model, opt, batch_size=2)
    assert not marker.exists()


def test_storage_entries_cannot_point_outside_the_checkpoint(tmp_path: Path) -> None:
    _saved(tmp_path / "ck")
    path = checkpoint_dir(tmp_path / "ck", 2)
    md = read_metadata_safely(path / ".metadata")
    key = next(iter(md.storage_data))
    md.storage_data[key] = _StorageInfo("../../../etc/passwd", 0, 10)
    (path / ".metadata").write_bytes(pickle.dumps(md))
    with pytest.raises(ResumeError, match="is not a plain file of this checkpoint"):
        read_metadata_safely(path / ".metadata")


def test_a_flipped_byte_in_a_shard_is_named_by_its_digest(tmp_path: Path) -> None:
    ckpt, _, _ = _saved(tmp_path)
    path = checkpoint_dir(tmp_path, 2)
    shard = next(path.glob("*.distcp"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    model, opt = _model()
    with pytest.raises(ResumeError, match=rf"{shard.name}: sha256 differs"):
        ckpt.restore(2, model, opt, batch_size=2)
    shard.write_bytes(bytes(data[:100]))
    with pytest.raises(ResumeError, match=rf"{shard.name}: 100 bytes, {len(data)} when saved"):
        ckpt.restore(2, model, opt, batch_size=2)
    (path / "extra.distcp").write_bytes(b"x")
    with pytest.raises(ResumeError, match=r"extra\.distcp: not listed"):
        ckpt.restore(2, model, opt, batch_size=2)


def test_a_damaged_meta_json_is_named(tmp_path: Path) -> None:
    ckpt, _, _ = _saved(tmp_path)
    path = checkpoint_dir(tmp_path, 2)
    (path / DIGESTS).unlink()  # an old-style checkpoint: loads with a warning, no digests
    (path / "meta.json").write_text("{not json")
    model, opt = _model()
    with (
        pytest.warns(UserWarning, match="no digests.json"),
        pytest.raises(ResumeError, match=r"meta\.json: not valid JSON"),
    ):
        ckpt.restore(2, model, opt, batch_size=2)


def test_stratocast_train_refuses_a_planted_checkpoint(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """The attack end to end: a run directory with a planted, 'complete' checkpoint whose
    ``.metadata`` is a payload; `stratocast train` resumes it automatically."""
    work = tmp_path / "run"
    (work / "train" / "checkpoints").mkdir(parents=True)
    os.symlink(tiny_shards[0], work / "shards")
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["workdir"] = str(work)
    cfg["train"].update(
        model={"name": "obs2grid", "hidden": 8, "blocks": 1, "kernel_widths_km": [800.0]},
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-17T18",
        steps=4,
        batch_size=4,
        precision="fp32",
        tensorboard=False,
    )
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    planted = checkpoint_dir(work / "train" / "checkpoints", 2)
    planted.mkdir()
    marker = tmp_path / "PWNED"
    (planted / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    (planted / "meta.json").write_text(json.dumps({"step": 2, "world_size": 1, "batch_size": 4}))
    (planted / "rank-00000.json").write_text(json.dumps({"loader": {"epoch": 0, "position": 1}}))
    (planted / COMPLETE).write_text("2\n")
    write_digests(planted)
    cmd = [sys.executable, "-m", "stratocast.cli.main", "train", "--config", str(cfg_path)]
    proc = subprocess.run(
        [*cmd, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert not marker.exists(), "the planted payload ran"
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("stratocast train: error: ")
    assert f"{planted / '.metadata'}: refusing to load" in lines[-1]
    shutil.rmtree(planted)


def test_a_planted_link_to_an_endless_device_is_refused(tmp_path: Path) -> None:
    """``.metadata`` -> /dev/zero would be read forever (its size is 0): refused unread."""
    if not Path("/dev/zero").exists():
        pytest.skip("/dev/zero absent")
    ckpt, _, _ = _saved(tmp_path)
    path = checkpoint_dir(tmp_path, 2)
    (path / DIGESTS).unlink()
    (path / ".metadata").unlink()
    (path / ".metadata").symlink_to("/dev/zero")
    model, opt = _model()
    with pytest.warns(UserWarning), pytest.raises(ResumeError, match=r"\.metadata: not a regular"):
        ckpt.restore(2, model, opt, batch_size=2)
