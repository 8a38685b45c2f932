"""Stage 6, VERIFY: forecasts at held-out stations against their observations.

Entry points: :func:`verify` (in-memory inputs) and :func:`run_verify` (forecast stores and
the observation store on disk).
"""

from stratocast.verify.config import VerifyConfig
from stratocast.verify.matching import VerifyInputError
from stratocast.verify.run import VerifyResult, run_verify, verify

__all__ = ["VerifyConfig", "VerifyInputError", "VerifyResult", "run_verify", "verify"]
