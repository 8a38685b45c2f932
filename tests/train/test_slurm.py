"""The sbatch script writer, the per-node launcher, and (slow) a real single-node Slurm.

The real-Slurm tests start munged, slurmctld and slurmd as root from Debian's ``slurm-wlm``
and ``munge`` (``.ci/run`` installs them when it can) and skip with the reason otherwise.
They take about 60-90 s on the 2-core development machine: daemons ~5 s, the tiny job ~2 s,
the stand-in preemption round trip ~20 s, the real trainer's ~40 s.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from stratocast.cli.main import main as cli_main
from stratocast.train.preempt import REQUEUE_EXIT_CODE
from stratocast.train.slurm import SlurmError, SlurmJob, exit_code_of, write_sbatch

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def _config(tmp_path: Path, nodes: int = 1, procs: int = 1, **train: object) -> Path:
    raw = yaml.safe_load(DEMO.read_text())
    raw["train"]["parallel"] = {"nodes": nodes, "procs_per_node": procs}
    raw["train"].update(train)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _job(cfg: Path, tmp_path: Path, **kw: object) -> SlurmJob:
    base: dict[str, object] = dict(config=cfg, nodes=2, gpus_per_node=4, chdir=tmp_path)
    base.update(kw)
    return SlurmJob(**base)  # type: ignore[arg-type]


def test_script_asks_slurm_for_the_configured_job(tmp_path: Path) -> None:
    cfg = _config(tmp_path, nodes=2, procs=4)
    job = _job(cfg, tmp_path, time="04:00:00", partition="gpu", account="wx", signal_lead_s=300)
    text = write_sbatch(job, tmp_path / "train.sbatch").read_text()
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=04:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=wx",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={tmp_path}/slurm-logs/%x-%j.out",
        f"#SBATCH --error={tmp_path}/slurm-logs/%x-%j.err",
        f"REQUEUE_EXIT_CODE={REQUEUE_EXIT_CODE}",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "rdzv_port=$(( 29500 + ${SLURM_RESTART_COUNT:-0} % 100 ))",
        "trap forward_usr1 USR1",
        'scontrol requeue "$SLURM_JOB_ID"',
    ):
        assert line in text.splitlines() or line in text, line
    srun = text[text.index("srun ") : text.index("step_pid=$!")]
    for arg in (
        "--kill-on-bad-exit=1",
        "-m stratocast.train.slurm",
        "--nnodes=$SLURM_NNODES",
        "--nproc-per-node=4",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=$head_node:$rdzv_port",
        f"-m stratocast.cli.main train --config {cfg.resolve()} --no-progress",
    ):
        assert arg in srun, arg
    assert srun.rstrip().endswith("&")  # backgrounded, so the USR1 trap runs while it trains
    assert (tmp_path / "slurm-logs").is_dir()
    subprocess.run(["bash", "-n", str(tmp_path / "train.sbatch")], check=True)


def test_cpu_nodes_run_procs_per_node_without_gpu_request(tmp_path: Path) -> None:
    cfg = _config(tmp_path, nodes=1, procs=2)
    job = _job(cfg, tmp_path, nodes=1, gpus_per_node=0, procs_per_node=2)
    text = write_sbatch(job, tmp_path / "cpu.sbatch").read_text()
    assert "--gpus-per-node" not in text
    assert "--nproc-per-node=2" in text
    subprocess.run(["bash", "-n", str(tmp_path / "cpu.sbatch")], check=True)


def test_job_that_disagrees_with_the_config_is_refused_naming_both(tmp_path: Path) -> None:
    cfg = _config(tmp_path, nodes=1, procs=1)
    with pytest.raises(SlurmError, match=r"1 node\(s\) x 1 .* 2 node\(s\) x 4 process\(es\) = 8"):
        write_sbatch(_job(cfg, tmp_path), tmp_path / "x.sbatch")
    assert not (tmp_path / "x.sbatch").exists()


def test_override_trains_with_an_adjusted_copy_of_the_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path, nodes=1, procs=1)
    out = write_sbatch(_job(cfg, tmp_path, override_parallel=True), tmp_path / "o.sbatch")
    derived = tmp_path / "o.config.yaml"
    assert f"--config {derived}" in out.read_text()
    par = yaml.safe_load(derived.read_text())["train"]["parallel"]
    assert (par["nodes"], par["procs_per_node"]) == (2, 4)
    assert yaml.safe_load(cfg.read_text())["train"]["parallel"]["nodes"] == 1  # untouched


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"nodes": 0}, "--nodes"),
        ({"time": "4h"}, "--time"),
        ({"signal_lead_s": 0}, "--signal-lead-s"),
        ({"procs_per_node": 2}, "one process per GPU"),
    ],
)
def test_bad_options_are_named(tmp_path: Path, kw: dict[str, object], match: str) -> None:
    with pytest.raises(SlurmError, match=match):
        write_sbatch(_job(_config(tmp_path, 2, 4), tmp_path, **kw), tmp_path / "b.sbatch")


def test_cli_writes_the_script_and_reports_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the script's default log dir is relative to the cwd
    cfg = _config(tmp_path, nodes=1, procs=2)
    out = tmp_path / "cli.sbatch"
    argv = ["slurm", "--config", str(cfg), "--nodes", "1", "--gpus-per-node", "0"]
    assert cli_main([*argv, "--procs-per-node", "2", "--out", str(out)]) == 0
    assert "--nproc-per-node=2" in out.read_text()
    assert cli_main([*argv, "--procs-per-node", "3", "--out", str(out)]) == 2
    assert "train.parallel is 1 node(s) x 2" in capsys.readouterr().err


def test_launcher_exit_code_is_the_workers_common_code() -> None:
    def fail(code: int) -> SimpleNamespace:
        return SimpleNamespace(exitcode=code)

    assert exit_code_of({0: fail(143), 1: fail(143)}) == 143
    assert exit_code_of({0: fail(143), 1: fail(1)}) == 1  # disagreeing ranks: a failure
    # the agent SIGTERMs the rank still exiting once the first one has exited with 143
    assert exit_code_of({0: fail(-15), 1: fail(143)}) == 143
    assert exit_code_of({0: fail(-9), 1: fail(-15)}) == 1  # nobody exited normally
    assert exit_code_of({0: fail(-9)}) == 1  # killed by a signal: never "requeue me"


STAND_IN = textwrap.dedent(
    """
    # Stand-in trainer: STEPS steps of 0.2 s; on USR1/TERM it "checkpoints" the step at the
    # next step boundary and exits with the requeue code; a restart resumes from it.
    import json, os, signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1]); steps = int(sys.argv[2]); code = int(sys.argv[3])
    rank = int(os.environ["RANK"])
    got = []
    for s in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(s, lambda n, f: got.append(n))
    ckpt = out / "ckpt.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    print(f"rank {rank} starts at step {step}", flush=True)
    with (out / f"started-{rank}").open("a") as f:
        f.write(f"{step}\\n")
    while step < steps:
        time.sleep(0.2)
        step += 1
        if got:
            if rank == 0:
                ckpt.write_text(json.dumps({"step": step}))
            print(f"rank {rank}: signal {got}, checkpoint at step {step}", flush=True)
            sys.exit(code)
    if rank == 0:
        (out / "final.json").write_text(json.dumps({"step": step}))
    """
)


def test_launcher_passes_usr1_to_workers_and_their_exit_code_back(tmp_path: Path) -> None:
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    cmd = [sys.executable, "-m", "stratocast.train.slurm", "--standalone", "--nproc-per-node=2"]
    cmd += [str(tmp_path / "stand_in.py"), str(tmp_path), "1000", str(REQUEUE_EXIT_CODE)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)  # only the agent: it must pass it on, not die
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == REQUEUE_EXIT_CODE, out
    assert "rank 1: signal" in out


# --- a real single-node Slurm ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _rendezvous_ports(count: int = 2) -> int:
    """A base port with ``count`` free ports from it, below the ephemeral range.

    The generated script takes base + restart count on each restart. Kernel-chosen ports sit
    next to each other (the cluster's slurmctld/slurmd ports come from ``_free_port`` too): a
    base from bind(0) once had base + 1 taken by slurmd, and the restarted rendezvous client
    hung on it for 60 s. Ports below 32768 are never handed out by bind(0) here.
    """
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free rendezvous ports found in 20000..32000")


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]

    def run(self, *cmd: str) -> str:
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: {res.stderr or res.stdout}")
        return res.stdout

    def job(self, job_id: str) -> dict[str, str]:
        fields: dict[str, str] = {}
        for tok in self.run("scontrol", "-o", "show", "job", job_id).split():
            key, _, value = tok.partition("=")
            fields.setdefault(key, value)
        return fields

    def wait(self, job_id: str, until: set[str], timeout: float = 180) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info["JobState"] in until:
                return info
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not in {until} after {timeout} s: {info}")

    def release_requeued(self, job_id: str) -> None:
        # Slurm holds a requeued job for the credential lifetime + 1 s (BeginTime) before it
        # may run again: started earlier, slurmd refuses it ("Job credential revoked"). The
        # test cluster sets cred_expire=5 (default 120 s), so the hold is ~6 s here.
        deadline = time.monotonic() + 120
        while (info := self.job(job_id))["Restarts"] == "0":
            if info["JobState"] in {"COMPLETED", "FAILED", "CANCELLED"}:
                raise AssertionError(f"job {job_id} ended without a requeue: {info}")
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not requeued after 120 s: {info}")
            time.sleep(0.5)


_SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "scontrol", "munged", "mungekey")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = [b for b in _SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(
            f"Slurm not installed ({', '.join(missing)} missing): apt-get install -y "
            "slurm-wlm munge"
        )
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm test runs its daemons as root")
    root = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    munge = root / "munge"
    munge.mkdir(mode=0o700)
    subprocess.run(["mungekey", "-c", "-k", str(munge / "key")], check=True)
    conf = root / "slurm.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            ClusterName=stratotest
            SlurmctldHost={host}
            SlurmctldPort={_free_port()}
            SlurmdPort={_free_port()}
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={munge}/socket,cred_expire=5
            SlurmUser=root
            SlurmdUser=root
            StateSaveLocation={root}/state
            SlurmdSpoolDir={root}/spool
            SlurmctldPidFile={root}/slurmctld.pid
            SlurmdPidFile={root}/slurmd.pid
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core
            MpiDefault=none
            JobRequeue=1
            ReturnToService=2
            SchedulerType=sched/builtin
            JobAcctGatherType=jobacct_gather/none
            AccountingStorageType=accounting_storage/none
            InactiveLimit=0
            MinJobAge=600
            KillWait=30
            NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
            PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
            """
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs = [
        _start(
            [
                "munged",
                "-F",
                "-f",
                f"--key-file={munge}/key",
                f"--socket={munge}/socket",
                f"--pid-file={munge}/pid",
                f"--seed-file={munge}/seed",
                f"--log-file={munge}/log",
            ],
            env,
            root / "munged.out",
        )
    ]
    time.sleep(1)
    procs.append(_start(["slurmctld", "-D", "-i"], env, root / "slurmctld.log"))
    procs.append(_start(["slurmd", "-D"], env, root / "slurmd.log"))
    cluster = Cluster(root, env)
    try:
        deadline = time.monotonic() + 30
        while "idle" not in _try(cluster, "sinfo", "-h", "-o", "%T"):
            if time.monotonic() > deadline:
                logs = "".join(p.read_text()[-2000:] for p in root.glob("*.log"))
                pytest.fail(f"single-node Slurm did not come up in 30 s:\n{logs}")
            time.sleep(0.5)
        yield cluster
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def _try(cluster: Cluster, *cmd: str) -> str:
    res = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=30)
    return res.stdout


def _submit(cluster: Cluster, script: Path) -> str:
    return cluster.run("sbatch", "--parsable", str(script)).strip().split(";")[0]


@pytest.mark.slow
def test_slurm_runs_a_tiny_job(slurm: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "tiny.sbatch"
    script.write_text(
        f"#!/bin/bash\n#SBATCH --output={tmp_path}/tiny.out\necho hello $SLURM_JOB_ID\n"
    )
    job = _submit(slurm, script)
    info = slurm.wait(job, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=60)
    assert info["JobState"] == "COMPLETED"
    assert (tmp_path / "tiny.out").read_text().strip() == f"hello {job}"


def _log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted((tmp_path / "slurm-logs").glob("*")))


@pytest.mark.slow
def test_generated_script_requeues_on_usr1_and_the_rerun_resumes(
    slurm: Cluster, tmp_path: Path
) -> None:
    """The script's signal → trap → srun → launcher → trainer → exit code → requeue path,
    with the stand-in trainer above (the real one: the next test)."""
    cfg = _config(tmp_path, nodes=1, procs=2)
    job = _job(cfg, tmp_path, nodes=1, gpus_per_node=0, procs_per_node=2, port=_rendezvous_ports())
    script = write_sbatch(job, tmp_path / "train.sbatch")
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    text = script.read_text()
    real = f"-m stratocast.cli.main train --config {cfg.resolve()} --no-progress"
    assert real in text
    script.write_text(
        text.replace(real, f"{tmp_path}/stand_in.py {tmp_path} 40 {REQUEUE_EXIT_CODE}")
    )
    job_id = _submit(slurm, script)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a few steps in
    slurm.run("scancel", "--signal=USR1", "--batch", job_id)  # what --signal=B:USR1@… sends
    slurm.release_requeued(job_id)
    info = slurm.wait(job_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=120)
    log = _log(tmp_path)
    assert info["JobState"] == "COMPLETED", (info, log)
    assert info["Restarts"] == "1", log
    assert "SIGUSR1: asking the trainers to checkpoint" in log
    assert f"trainers checkpointed (exit {REQUEUE_EXIT_CODE}): requeueing" in log
    ckpt = int(yaml.safe_load((tmp_path / "ckpt.json").read_text())["step"])
    assert 0 < ckpt < 40
    starts = [int(x) for x in (tmp_path / "started-0").read_text().split()]
    assert starts == [0, ckpt]  # the rerun resumed from the checkpoint
    assert yaml.safe_load((tmp_path / "final.json").read_text())["step"] == 40


def _trainer_exits_with_requeue_code() -> bool:
    # TODO(lead): drop this guard once `stratocast train` turns Preempted into its exit code.
    import inspect

    from stratocast.cli import main as cli
    from stratocast.cli import stages

    return "Preempted" in inspect.getsource(cli) + inspect.getsource(stages)


@pytest.mark.slow
def test_real_trainer_checkpoints_on_usr1_is_requeued_and_finishes(
    slurm: Cluster, tmp_path: Path, tiny_shards: tuple[Path, object]
) -> None:
    if not _trainer_exits_with_requeue_code():
        pytest.skip("`stratocast train` does not yet exit with the requeue code on preemption")
    work = tmp_path / "work"
    work.mkdir()
    (work / "shards").symlink_to(tiny_shards[0])
    steps = 40
    cfg = _config(
        tmp_path,
        nodes=1,
        procs=2,
        model={"name": "obs2grid", "hidden": 8, "blocks": 1, "kernel_widths_km": [800.0]},
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-20T18",
        steps=steps,
        batch_size=2,
        history=2,
        rollout=1,
        log_every=1,
        precision="fp32",
        checkpoint={"every": 5},
    )
    job = _job(cfg, tmp_path, nodes=1, gpus_per_node=0, procs_per_node=2, port=_rendezvous_ports())
    script = write_sbatch(replace_workdir(job, str(work)), tmp_path / "train.sbatch")
    job_id = _submit(slurm, script)
    metrics = work / "train" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # signal once training is under way
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 8:
            break
        time.sleep(0.2)
    slurm.run("scancel", "--signal=USR1", "--batch", job_id)
    slurm.release_requeued(job_id)
    info = slurm.wait(job_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=240)
    log = _log(tmp_path)
    assert info["JobState"] == "COMPLETED", (info, log)
    assert info["Restarts"] == "1", log
    assert f"trainers checkpointed (exit {REQUEUE_EXIT_CODE}): requeueing" in log
    from stratocast.train.dcp_checkpoint import complete_steps

    assert complete_steps(work / "train" / "checkpoints")[-1] == steps
    records = [yaml.safe_load(x) for x in metrics.read_text().splitlines()]
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == sorted(set(train_steps))  # the redone steps replaced, not repeated
    assert train_steps[-1] == steps
    assert (work / "train" / "model.pt").is_file()


def replace_workdir(job: SlurmJob, workdir: str) -> SlurmJob:
    from dataclasses import replace

    return replace(job, workdir=workdir)
