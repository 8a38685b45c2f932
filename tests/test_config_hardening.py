"""A config file is input like any other: alias bombs, binary files, huge values and absurd
counts are refused with one short message naming the file (and line, or key, and bound)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from stratocast.cli.run_config import RunConfig, load_run
from stratocast.config import (
    MAX_CONFIG_BYTES,
    MAX_EXPANDED_NODES,
    QUOTE_CHARS,
    STEPS_MAX,
    ConfigError,
    load_config,
    quote,
    read_yaml,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"


def _bomb(levels: int = 9, width: int = 9) -> str:
    """The classic 'billion laughs': each anchor lists the previous one ``width`` times."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _demo_text(key: str, value: str) -> str:
    """The demo config's text with the value of its (one) ``  key:`` line replaced; fails
    loudly if the demo config no longer has exactly one such line."""
    text = DEMO.read_text()
    pattern = re.compile(rf"(?m)^(  {key}:) [^#\n]*")
    assert len(pattern.findall(text)) == 1, f"demo config: not one '{key}:' line"
    return pattern.sub(rf"\g<1> {value} ", text)


def _demo_with(tmp_path: Path, tail: str, head: str = "") -> Path:
    """The demo config with ``head`` prepended and ``tail`` appended (YAML text)."""
    p = tmp_path / "run.yaml"
    p.write_text(head + DEMO.read_text() + tail)
    return p


def test_alias_bomb_as_train_steps_is_refused_before_building_it(tmp_path: Path) -> None:
    # 9^9 = 387 M leaves from ~600 bytes; as the issue's `train.steps: *bomb`.
    text = _bomb() + _demo_text("steps", "*a8")
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(RunConfig, path)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    msg = str(info.value)
    assert f"expand to more than {MAX_EXPANDED_NODES} nodes" in msg and str(path) in msg
    assert len(msg) < 300 and "\n" not in msg
    assert peak < 20 * 2**20, f"{peak / 2**20:.1f} MiB to refuse a {len(text)}-byte file"
    assert elapsed < 5, elapsed


def test_alias_bomb_through_the_cli_is_one_short_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb() + _demo_text("steps", "*a8"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-m", "stratocast.cli.main", "train", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and len(proc.stderr) < 400, proc.stderr[:1000]
    assert "alias bomb" in proc.stderr
    # The whole CLI process (torch imported) stays small; the expansion used 8.9 GB.
    if peak_kib > before:
        assert peak_kib < 2 * 2**20, f"{peak_kib / 2**20:.2f} GiB"


def test_aliases_a_person_writes_still_work(tmp_path: Path) -> None:
    head = 'dates: &train_start "2000-01-01T00"\n'
    path = _demo_with(tmp_path, "", head)
    data = read_yaml(path)
    assert data["dates"] == "2000-01-01T00"
    path.write_text(
        DEMO.read_text().replace(
            'train_start: "2000-01-01T00"', 'train_start: &s "2000-01-01T00"', 1
        )
    )
    cfg, _ = load_run(path)
    assert cfg.train.train_start == "2000-01-01T00"


def test_recursive_alias_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=r"rec\.yaml:1:4: recursive YAML alias"):
        read_yaml(path)


def test_absurd_counts_are_refused_with_the_bound(tmp_path: Path) -> None:
    path = _demo_with(tmp_path, "")
    path.write_text(_demo_text("steps", "100000000000000000000"))
    with pytest.raises(ConfigError) as info:
        load_run(path)
    msg = str(info.value)
    assert "train.steps" in msg and f"less than or equal to {STEPS_MAX}" in msg
    assert "100000000000000000000" in msg  # the value as given, it is short
    path.write_text(_demo_text("horizon_hours", "1000000"))
    with pytest.raises(ConfigError, match=r"forecast\.horizon_hours: .*less than or equal to 8784"):
        load_run(path)


def test_bad_values_are_quoted_truncated(tmp_path: Path) -> None:
    huge = "x" * 100_000
    path = tmp_path / "run.yaml"
    path.write_text(DEMO.read_text().replace("batch_size: 8", f"batch_size: {huge}"))
    with pytest.raises(ConfigError) as info:
        load_run(path)
    msg = str(info.value)
    assert "train.batch_size" in msg and "(100000 chars)" in msg
    assert len(msg) < QUOTE_CHARS + 400


def test_quote_never_builds_a_huge_repr() -> None:
    shared: list[object] = ["lol"] * 10
    for _ in range(12):  # 10^12 leaves if expanded
        shared = [shared] * 10
    t0 = time.perf_counter()
    text = quote(shared)
    assert time.perf_counter() - t0 < 1 and len(text) <= QUOTE_CHARS + 3


def test_binary_config_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04\x00\x00\x08\x00\xff\xfe binary")
    with pytest.raises(ConfigError, match=r"model\.pt: not a UTF-8 text file \(byte 8: "):
        read_yaml(path)


def test_nul_byte_is_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_text("workdir: runs/x\ncache_dir: a\x00b\n")
    with pytest.raises(ConfigError, match=r"nul\.yaml:2:13: .*unacceptable character"):
        read_yaml(path)


def test_syntax_error_is_one_line_with_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"cannot parse YAML in {path}:")


def test_oversized_or_unreadable_config_files(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError, match=rf"big\.yaml: {MAX_CONFIG_BYTES + 1} bytes"):
        read_yaml(big)
    with pytest.raises(ConfigError, match="is a directory"):
        read_yaml(tmp_path)


def test_demo_config_still_loads() -> None:
    cfg, _ = load_run(DEMO)
    assert yaml.safe_load(DEMO.read_text())["train"]["steps"] == cfg.train.steps


@pytest.mark.parametrize(
    ("section", "key", "value", "bound"),
    [
        ("ingest", "workers", 10**9, "4096"),
        ("verify", "bootstrap_samples", 10**12, "10000000"),
        ("verify", "init_chunk_size", 10**9, "65536"),
        ("shards", "shard_steps", 10**9, "100000"),
        ("world.network", "n_metar", 10**9, "100000"),
    ],
)
def test_counts_in_every_section_are_bounded(
    section: str, key: str, value: int, bound: str
) -> None:
    """The other sections' counts carry bounds too; the message names key and bound."""
    from stratocast.cli.run_config import RunConfig
    from stratocast.config import parse_config, read_yaml

    raw = read_yaml(DEMO)
    node = raw
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*less than or equal to {bound}"):
        parse_config(RunConfig, raw, str(DEMO))
