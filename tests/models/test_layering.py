"""Forecasting needs nothing from training: rollout and checkpoints live beside the models."""

from __future__ import annotations

import subprocess
import sys


def test_infer_imports_nothing_from_train() -> None:
    code = (
        "import sys, stratocast.infer.forecast, stratocast.models.checkpoint;"
        "print(sorted(m for m in sys.modules if m.startswith('stratocast.train')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
