"""Training-state checkpoints with torch.distributed.checkpoint (DCP): resumable and re-shardable.

Layout under ``<out>/checkpoints/``::

    step-00000200/          one complete checkpoint
        .metadata, *.distcp   model + optimizer (DCP: each rank writes its shards)
        meta.json             step, world size, micro-batch, train config
        rank-00000.json ...   per rank: loader (sampler) state and RNG states
        COMPLETE              written last, by rank 0
    .tmp-step-00000300/     a save in progress (ignored; removed by the next save)

Atomic: every rank writes into the temporary directory; after a barrier rank 0 writes
``COMPLETE`` and renames the directory into place, so a crash while saving leaves the previous
checkpoints untouched and loading only ever considers directories with the marker.

Re-sharding: DCP stores tensors with their global shapes, so a checkpoint written by N ranks
(DDP or FSDP) loads into M ranks with either strategy. RNG states are per rank: rank r takes
rank r's states when it existed, else it is seeded from (seed, rank). The data position
follows the rule in :func:`loader_state_for`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import pickletools
import random
import re
import shutil
import stat
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from stratocast.config import quote
from stratocast.errors import StratocastError
from stratocast.train.config import CheckpointConfig as CheckpointConfig
from stratocast.train.parallel import DistInfo

COMPLETE = "COMPLETE"
_PREFIX = "step-"
_TMP_PREFIX = ".tmp-step-"


class ResumeError(StratocastError, RuntimeError):
    pass


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{_PREFIX}{step:08d}"


def complete_steps(root: Path) -> list[int]:
    """Steps of the complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    steps = [
        int(p.name[len(_PREFIX) :])
        for p in root.iterdir()
        if p.name.startswith(_PREFIX) and (p / COMPLETE).is_file()
    ]
    return sorted(steps)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def loader_state_for(
    saved: list[dict[str, int]], saved_batch: int, batch: int, rank: int, world_size: int
) -> dict[str, int]:
    """The sampler state rank ``rank`` of ``world_size`` resumes from.

    Same world size and micro-batch: each rank takes its own saved state (exact). Otherwise:
    the epoch's permutation depends only on (seed, epoch), and after ``p`` batches per rank
    the ranks together consumed exactly its first ``p x saved_batch x saved_world`` samples. The
    new ranks continue the same epoch at the first of those not yet consumed, rounded down to
    a whole new global batch (``batch x world_size``): no sample is skipped, at most one global
    batch minus one is seen twice, and none when the global batch is unchanged.
    """
    if len(saved) == world_size and saved_batch == batch:
        return dict(saved[rank])
    epochs = {s["epoch"] for s in saved}
    if len(epochs) != 1:
        raise ResumeError(f"ranks were saved in different epochs {sorted(epochs)}")
    consumed = min(s["position"] for s in saved) * saved_batch * len(saved)
    return {"epoch": epochs.pop(), "position": consumed // (batch * world_size)}


# --- Reading checkpoints that may not be ours -------------------------------------------------
#
# A checkpoint directory is data: anyone who can write under the run's output directory (or a
# copied run) can plant one, and training resumes the newest complete one automatically. DCP
# itself unpickles twice while loading: ``.metadata`` with plain ``pickle.load`` and every
# non-tensor value (optimizer hyper-parameters) with ``torch.load(weights_only=False)``. Both
# can run any code. So loading goes through a reader and a planner that never unpickle without
# an allow-list:
#
# * ``.metadata``: size-capped, its opcodes scanned with pickletools first (nothing executed:
#   persistent ids and extension-registry opcodes are refused, and protocol <= 3 ``GLOBAL``
#   names are checked against the allow-list right there), then unpickled by an Unpickler whose
#   ``find_class`` returns only DCP's own metadata dataclasses, torch.Size / dtypes / layouts
#   and paths. ``find_class`` is the only way a pickle can reach a callable (GLOBAL,
#   STACK_GLOBAL, INST, OBJ and EXT all resolve through it), so no other code can run. The
#   result must then be a ``Metadata`` whose storage entries name plain files of this
#   directory (no path escapes) with non-negative offsets and no transforms.
# * non-tensor values: ``torch.load(weights_only=True)`` (primitives, tuples, tensors only).
#
# The sha256 digests in ``DIGESTS`` (written at save time, checked before DCP opens anything)
# catch torn and bit-flipped files and name them; they are integrity, not security: whoever
# plants a directory can plant matching digests, which is why the reader above is the guard.

DIGESTS = "digests.json"
_MAX_JSON_BYTES = 64 * 2**20  # meta.json and rank files: a few KB
_MAX_METADATA_BYTES = 512 * 2**20  # a 10^4-rank FSDP checkpoint of a large model stays far below
_DCP_METADATA = "torch.distributed.checkpoint.metadata"
_ALLOWED_GLOBALS = frozenset(
    {
        *(
            (_DCP_METADATA, name)
            for name in (
                "Metadata",
                "MetadataIndex",
                "StorageMeta",
                "TensorProperties",
                "TensorStorageMetadata",
                "BytesStorageMetadata",
                "ChunkStorageMetadata",
                "_MEM_FORMAT_ENCODING",
            )
        ),
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),
        ("collections", "OrderedDict"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PureWindowsPath"),
    }
)
# Opcodes that reach code other than through find_class, or that no DCP metadata contains.
_REFUSED_OPCODES = frozenset({"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"})


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _ALLOWED_GLOBALS:
        return True
    return module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, where: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        if not _allowed(module, name):
            raise ResumeError(
                f"{self._where}: refusing to load: its pickle references {module}.{name}, "
                "which is not part of checkpoint metadata (a crafted or foreign file)"
            )
        return super().find_class(module, name)


def _scan_pickle(data: bytes, where: Path) -> None:
    """Walk the opcodes without executing any: refuse the ones with no place in metadata."""
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name in _REFUSED_OPCODES:
                raise ResumeError(f"{where}: refusing to load: pickle opcode {op.name} at {pos}")
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                module, _, name = arg.partition(" ")
                if not _allowed(module, name):
                    raise ResumeError(
                        f"{where}: refusing to load: its pickle references {module}.{name} at "
                        f"byte {pos}, which is not part of checkpoint metadata"
                    )
    except ValueError as err:  # pickletools: truncated or malformed stream
        raise ResumeError(f"{where}: not a readable checkpoint metadata file: {err}") from None


def _check_metadata(md: Any, where: Path) -> Metadata:
    if not isinstance(md, Metadata) or not isinstance(md.state_dict_metadata, dict):
        raise ResumeError(f"{where}: holds {type(md).__name__}, not DCP checkpoint metadata")
    storage = md.storage_data
    if not isinstance(storage, dict):
        raise ResumeError(f"{where}: storage table is {type(storage).__name__}, not a dict")
    for key, info in storage.items():
        rel = getattr(info, "relative_path", None)
        ok = (
            isinstance(info, _StorageInfo)
            and isinstance(rel, str)
            and rel == Path(rel).name
            and rel not in ("", ".", "..")
            and isinstance(info.offset, int)
            and isinstance(info.length, int)
            and info.offset >= 0
            and info.length >= 0
            and not info.transform_descriptors
        )
        if ok and not (where.parent / str(rel)).is_file():
            raise ResumeError(f"{where}: storage entry names {rel}, which is not in {where.parent}")
        if not ok:
            raise ResumeError(
                f"{where}: storage entry {quote(getattr(key, 'fqn', key))} -> {quote(info)} is "
                "not a plain file of this checkpoint at a non-negative offset"
            )
    return md


def _read_capped(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. A planted name can be a link to
    /dev/zero or a FIFO: reading those would never end, so only regular files are read, and
    never more than ``limit + 1`` bytes of them."""
    try:
        with path.open("rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ResumeError(f"{path}: not a regular file")
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ResumeError(f"{path}: missing (checkpoint incomplete)") from None
    except OSError as err:
        raise ResumeError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise ResumeError(f"{path}: more than {limit} bytes, more than it ever needs")
    return data


def read_metadata_safely(path: Path) -> Metadata:
    """Read a DCP ``.metadata`` file without letting it run code (see above)."""
    data = _read_capped(path, _MAX_METADATA_BYTES)
    _scan_pickle(data, path)
    try:
        md = _RestrictedUnpickler(data, path).load()
    except ResumeError:
        raise
    except Exception as err:  # a damaged stream raises almost anything; name the file
        raise ResumeError(f"{path}: not a readable checkpoint metadata file: {err}") from None
    return _check_metadata(md, path)


class SafeFileSystemReader(FileSystemReader):
    """DCP's file reader, handed metadata already read by :func:`read_metadata_safely`.

    Read beforehand rather than inside: DCP catches a failing ``read_metadata``, logs its
    traceback and retries with rank-local files, so the refusal would arrive buried.
    """

    def __init__(self, path: Path, metadata: Metadata) -> None:
        super().__init__(path)
        self._metadata = metadata

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        md = self._metadata
        if getattr(md, "storage_meta", None) is None:
            md.storage_meta = StorageMeta()
        assert md.storage_meta is not None
        md.storage_meta.load_id = self.load_id
        return md


class SafeLoadPlanner(DefaultLoadPlanner):
    """Non-tensor values (optimizer hyper-parameters) through ``weights_only`` unpickling."""

    def __init__(self, path: Path, metadata: Metadata) -> None:
        super().__init__()
        self._path = path
        self._storage = metadata.storage_data

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            obj = torch.load(value, weights_only=True)
        except Exception as err:  # UnpicklingError for anything outside the weights allow-list
            text = str(err)
            why = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            info = self._storage.get(read_item.storage_index)
            where = self._path / str(getattr(info, "relative_path", "?"))
            raise ResumeError(
                f"{where}: refusing to load value {read_item.dest_index.fqn!r}: "
                + (
                    f"its pickle references {why.group(1)}, outside the weights-only allow-list"
                    if why
                    else quote(text.splitlines()[0] if text else type(err).__name__)
                )
            ) from None
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


def _dcp_failure(err: BaseException) -> BaseException:
    """The first rank's own exception inside DCP's CheckpointException (else ``err``)."""
    failures = getattr(err, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        if isinstance(first, tuple) and first and isinstance(first[0], BaseException):
            return first[0]
    return err


def _digest_files(path: Path) -> dict[str, Path]:
    """The files a checkpoint consists of (everything but the marker and the digests)."""
    return {
        p.name: p
        for p in sorted(path.iterdir())
        if p.is_file() and p.name not in (COMPLETE, DIGESTS)
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            h.update(block)
    return h.hexdigest()


def write_digests(path: Path) -> None:
    table = {
        name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for name, p in _digest_files(path).items()
    }
    (path / DIGESTS).write_text(json.dumps({"files": table}, indent=1))


def verify_digests(path: Path) -> None:
    """Every listed file present with its size and sha256, and no file that is not listed."""
    digests = path / DIGESTS
    if not digests.is_file():
        warnings.warn(
            f"{path}: no {DIGESTS} (a checkpoint from before digests were written); "
            "loading it without an integrity check",
            stacklevel=2,
        )
        return
    try:
        table = json.loads(_read_capped(digests, _MAX_JSON_BYTES))["files"]
        expected = {str(k): (str(v["sha256"]), int(v["bytes"])) for k, v in table.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ResumeError(f"{digests}: unreadable digest table: {err}") from None
    present = _digest_files(path)
    unlisted = sorted(set(present) - set(expected))
    if unlisted:
        raise ResumeError(f"{present[unlisted[0]]}: not listed in {DIGESTS} (planted or foreign)")
    for name, (sha, size) in expected.items():
        p = path / name
        if name != Path(name).name or not p.is_file():
            raise ResumeError(f"{p}: listed in {DIGESTS} but missing")
        if p.stat().st_size != size:
            raise ResumeError(f"{p}: {p.stat().st_size} bytes, {size} when saved (truncated?)")
        if _sha256(p) != sha:
            raise ResumeError(f"{p}: sha256 differs from the one saved (corrupted)")


@dataclass
class Restored:
    step: int
    meta: dict[str, Any]
    loader_state: dict[str, int]
    rng_state: dict[str, Any] | None  # None: this rank did not exist when it was saved


@dataclass
class _Pending:
    step: int
    tmp: Path
    future: Future[Any] | None


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns on every call without a process group; one process is a supported case."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_capped(path, _MAX_JSON_BYTES))
    except (ValueError, UnicodeDecodeError) as err:
        raise ResumeError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ResumeError(f"{path}: holds {type(data).__name__}, expected an object")
    return data


class Checkpointer:
    """Saves and restores the whole training state; every rank calls every method."""

    def __init__(self, root: Path, cfg: CheckpointConfig, dist_info: DistInfo) -> None:
        self.root = root
        self.cfg = cfg
        self.dist = dist_info
        self._pending: _Pending | None = None
        self.use_async = cfg.async_save and dist_info.device.type == "cuda"

    def _barrier(self) -> None:
        if self.dist.distributed:
            dist.barrier()

    def save(
        self,
        step: int,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader_state: dict[str, int],
        meta: dict[str, Any],
    ) -> None:
        self.wait()
        tmp = self.root / f"{_TMP_PREFIX}{step:08d}"
        if self.dist.is_main:
            for stale in self.root.glob(f"{_TMP_PREFIX}*"):
                shutil.rmtree(stale)  # a save that crashed: never complete, never loaded
            tmp.mkdir(parents=True)
        self._barrier()
        model_sd, optim_sd = get_state_dict(module, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        rank_file = tmp / f"rank-{self.dist.rank:05d}.json"
        rank_file.write_text(json.dumps({"loader": loader_state, "rng": _rng_state()}))
        if self.dist.is_main:
            full_meta = {**meta, "step": step, "world_size": self.dist.world_size}
            (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1))
        if self.use_async:
            response = dcp.async_save(state, checkpoint_id=tmp)
            # Newer torch answers with staging and upload futures; the upload is what counts.
            future: Future[Any] = getattr(response, "upload_completion", response)  # type: ignore[arg-type]
            self._pending = _Pending(step, tmp, future)
        else:
            with _quiet_single_process():
                dcp.save(state, checkpoint_id=tmp)
            self._pending = _Pending(step, tmp, None)
            self.wait()

    def wait(self) -> None:
        """Finish the save in flight (if any): all ranks done → marker → rename → prune."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.future is not None:
            pending.future.result()
        self._barrier()
        if self.dist.is_main:
            write_digests(pending.tmp)  # every rank's files are on disk after the barrier
            (pending.tmp / COMPLETE).write_text(f"{pending.step}\n")
            final = checkpoint_dir(self.root, pending.step)
            if final.exists():  # the same step saved again after a roll back
                shutil.rmtree(final)
            pending.tmp.rename(final)
            for old in complete_steps(self.root)[: -self.cfg.keep]:
                shutil.rmtree(checkpoint_dir(self.root, old))
        self._barrier()

    def restore(
        self,
        step: int,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
    ) -> Restored:
        path = checkpoint_dir(self.root, step)
        if not (path / COMPLETE).is_file():
            have = complete_steps(self.root)
            raise ResumeError(
                f"no complete checkpoint for step {step} in {self.root}; complete ones: {have}"
            )
        verify_digests(path)  # before DCP (or anything else) opens a file of it
        meta = _read_json(path / "meta.json")
        try:
            saved_world = int(meta["world_size"])
            saved_batch = int(meta["batch_size"])
        except (KeyError, TypeError, ValueError) as err:
            raise ResumeError(f"{path / 'meta.json'}: no valid {err} entry") from None
        metadata = read_metadata_safely(path / ".metadata")
        reader = SafeFileSystemReader(path, metadata)
        model_sd, optim_sd = get_state_dict(module, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        try:
            with _quiet_single_process():  # fills the two dicts in place, resharded to this run
                dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner(path, metadata))
        # DCP wraps every rank's failure in a CheckpointException (a BaseException).
        except (Exception, CheckpointException) as err:
            cause = _dcp_failure(err)
            if isinstance(cause, ResumeError):
                raise cause from None
            first = str(cause).strip().splitlines()
            raise ResumeError(
                f"cannot load checkpoint {path}: {type(cause).__name__}: "
                f"{quote(first[0] if first else '', 300)}"
            ) from None
        set_state_dict(module, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
        ranks = [_read_json(path / f"rank-{r:05d}.json") for r in range(saved_world)]
        try:
            loader = loader_state_for(
                [r["loader"] for r in ranks],
                saved_batch,
                batch_size,
                self.dist.rank,
                self.dist.world_size,
            )
        except (KeyError, TypeError) as err:
            raise ResumeError(f"{path}: a rank file has no valid loader state ({err})") from None
        rng = ranks[self.dist.rank]["rng"] if self.dist.rank < saved_world else None
        return Restored(step=step, meta=meta, loader_state=loader, rng_state=rng)

    def drop_after(self, step: int) -> list[int]:
        """Roll back: delete the checkpoints newer than ``step`` (rank 0), return their steps."""
        later = [s for s in complete_steps(self.root) if s > step]
        if self.dist.is_main:
            for s in later:
                shutil.rmtree(checkpoint_dir(self.root, s))
        self._barrier()
        return later
