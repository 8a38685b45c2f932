"""Stage 6, VERIFY: forecasts at held-out stations against their observations.

Entry points: :func:`verify` (in-memory inputs) and :func:`run_verify` (forecast stores and
the observation store on disk).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratocast.verify.config import VerifyConfig
from stratocast.verify.matching import VerifyInputError

if TYPE_CHECKING:
    from stratocast.verify.run import VerifyResult, run_verify, verify

__all__ = ["VerifyConfig", "VerifyInputError", "VerifyResult", "run_verify", "verify"]

_RUN = {"VerifyResult", "run_verify", "verify"}


def __getattr__(name: str) -> Any:
    # The verify run (scipy.stats, matplotlib) only when used: every CLI command imports
    # VerifyConfig through this package to read its config, and most never verify.
    if name in _RUN:
        from stratocast.verify import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
