"""Batch picking on Dask (#16): the same picks as the plain loop, resumable after ``kill -9`` of the driver (at 5
moments) or of a worker, failed runs listed and retried, finished runs skipped, the SLURM job script.

One 2-worker ``LocalCluster`` (worker processes) serves the module through ``--scheduler``; the drivers run as
subprocesses (``python -m tomopick.cli.main pick …``) so that they can be killed. One of the killed drivers runs
the default path (``--workers``: a cluster of its own), and its worker processes must die with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.inference.options import PickOptions
from tomopick.io import read_picks, write_tomogram
from tomopick.workflows.batch import (BatchOptions, ClusterConfig, load_cluster_config, run_batch, slurm_job_script,
                                      work_folder)
from tomopick.workflows.pick import pick

from _batch_toy import THRESHOLD, make_model, make_tomograms

N_RUNS = 8
OPTIONS = PickOptions.make(threshold=THRESHOLD, threads=1)
CLI_OPTIONS = ["-t", str(THRESHOLD), "--threads", "1", "-q"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Model, 8 tomograms of 56³ and the plain loop's picks file (the uninterrupted reference)."""
    root = tmp_path_factory.mktemp("batch")
    model = make_model(root / "model.pt")
    inputs = make_tomograms(root / "tomos", N_RUNS, size=56)
    reference = pick(inputs, model, options=OPTIONS, out=root / "plain.csv")
    assert len(reference.picks) >= 3 * N_RUNS  # a few picks in every tomogram: rows to compare
    return {"root": root, "model": model, "inputs": inputs, "plain": root / "plain.csv",
            "plain_picks": reference.picks}


@pytest.fixture(scope="module")
def cluster(toy, tmp_path_factory):
    import dask
    from distributed import Client, LocalCluster

    # no work stealing: a task moved between workers would count as an extra attempt in the retries test
    with dask.config.set({"distributed.scheduler.work-stealing": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=40) as lc, Client(lc) as client:
        # workers import torch and MONAI up front (once per process; the first unit would otherwise pay it)
        client.run(lambda: [__import__(m) for m in ("tomopick.workflows.batch", "tomopick.models.registry")])
        warm = run_batch(toy["inputs"][:2], toy["model"], options=OPTIONS, out=tmp_path_factory.mktemp("w") / "w.csv",
                         batch=BatchOptions.make(scheduler=lc.scheduler_address))  # load the model on each worker
        assert warm.errors == []
        yield {"address": lc.scheduler_address, "client": client}


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "tomopick.cli.main", "pick", *args]


def rows(path: Path) -> list[tuple]:
    frame = read_picks(path).frame
    return [tuple(r) for r in frame[["run", "particle", "x_A", "y_A", "z_A", "score"]].itertuples(index=False)]


def assert_same_as_plain(out: Path, toy) -> None:
    got = rows(out)
    assert len(set(got)) == len(got), "duplicate picks"
    assert got == rows(toy["plain"])  # same rows, same order
    assert out.read_bytes() == toy["plain"].read_bytes()  # and the very same file


def units_done(out: Path) -> int:
    units = work_folder(out) / "units"
    return len(list(units.glob("TS_*.json"))) if units.is_dir() else 0


def idle(client, timeout=60.0) -> None:
    """Wait until the cluster runs no task."""
    end = time.monotonic() + timeout
    while any(client.processing().values()):
        assert time.monotonic() < end, "the cluster stayed busy"
        time.sleep(0.05)


def wait_until(condition, proc, timeout=60.0) -> bool:
    """Poll until ``condition()`` or the process ends; True when the condition was met first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise AssertionError("timed out waiting for the driver")


# -- the same picks as the plain loop; failures listed; resumption --------------------------------------------
def test_batch_matches_plain_loop_and_loads_model_once_per_worker(toy, cluster, tmp_path):
    out = tmp_path / "picks.csv"
    report = run_batch(toy["inputs"], toy["model"], options=OPTIONS, out=out,
                       batch=BatchOptions.make(scheduler=cluster["address"]))
    assert report.errors == [] and report.computed == N_RUNS and report.resumed == 0
    assert_same_as_plain(out, toy)
    # the dashboard address is reported, and served (bokeh is in the distributed extra)
    import urllib.request

    assert report.dashboard.startswith("http://")
    with urllib.request.urlopen(report.dashboard, timeout=20) as page:
        assert page.status == 200
    assert not work_folder(out).exists()  # removed once every run succeeded
    assert list(tmp_path.iterdir()) == [out]  # nothing else left behind
    # the model was loaded once per worker process, not per tomogram
    assert 1 <= len(report.model_loads) <= 2 and set(report.model_loads.values()) == {1}
    # the same command again: the output exists and the batch is finished, so it is refused like the plain loop
    with pytest.raises(TomopickError, match="output exists"):
        run_batch(toy["inputs"], toy["model"], options=OPTIONS, out=out,
                  batch=BatchOptions.make(scheduler=cluster["address"]))


def test_failed_runs_listed_kept_units_and_rerun_redoes_only_them(toy, cluster, tmp_path):
    inputs = [tmp_path / p.name for p in toy["inputs"]]
    for src, dst in zip(toy["inputs"], inputs):
        shutil.copy2(src, dst)
    bad = inputs[3]
    vol = np.asarray(Tomogram.from_array(np.zeros((56, 56, 56), np.float32), 10.0).data)
    vol[5, 5, 5] = np.nan
    write_tomogram(Tomogram.from_array(vol, 10.0), bad, overwrite=True)
    out = tmp_path / "out" / "picks.csv"
    batch = BatchOptions.make(scheduler=cluster["address"], retries=2)
    report = run_batch(inputs, toy["model"], options=OPTIONS, out=out, batch=batch)
    assert [e.run for e in report.errors] == ["TS_03"]
    assert "NaN" in report.errors[0].error and str(bad) in report.errors[0].input
    assert report.computed == N_RUNS - 1 and report.resumed == 0
    # retries: the failing run was attempted 1 + 2 times (Dask's task retries)
    def attempts(dask_scheduler=None):
        log = [t for t in dask_scheduler.transition_log if str(t[0]).startswith("tomopick-pick-TS_03-")]
        failed = {t[0] for t in log if t[2] == "erred"}  # this batch's task (earlier tests ran TS_03 too)
        return [sum(1 for t in log if t[0] == key and t[2] == "processing") for key in failed]
    assert cluster["client"].run_on_scheduler(attempts) == [3]
    # the finished runs are written (run column tells which) and kept as units for the rerun
    assert sorted(set(read_picks(out).runs)) == sorted(f"TS_{i:02d}" for i in range(N_RUNS) if i != 3)
    assert units_done(out) == N_RUNS - 1
    # fix the input; the very same command redoes only that run, and replaces its own earlier output
    shutil.copy2(toy["inputs"][3], bad)
    again = run_batch(inputs, toy["model"], options=OPTIONS, out=out, batch=batch)
    assert again.errors == [] and again.resumed == N_RUNS - 1 and again.computed == 1
    assert rows(out) == rows(toy["plain"])
    assert not work_folder(out).exists()


def test_changed_options_or_inputs_redo_exactly_the_affected_units(toy, cluster, tmp_path):
    inputs = [tmp_path / p.name for p in toy["inputs"][:4]]
    for src, dst in zip(toy["inputs"], inputs):
        shutil.copy2(src, dst)
    vol = np.zeros((56, 56, 56), np.float32)
    vol[0, 0, 0] = np.inf
    write_tomogram(Tomogram.from_array(vol, 10.0), inputs[3], overwrite=True)  # fails: the units stay
    out = tmp_path / "picks.csv"
    batch = BatchOptions.make(scheduler=cluster["address"])
    first = run_batch(inputs, toy["model"], options=OPTIONS, out=out, batch=batch)
    assert [e.run for e in first.errors] == ["TS_03"] and first.computed == 3
    # other options, same output: no unit matches (their keys hold the options); a different command does not
    # own the output, so it needs --overwrite
    other = OPTIONS.model_copy(update={"threshold": 0.375})
    with pytest.raises(TomopickError, match="output exists"):
        run_batch(inputs, toy["model"], options=other, out=out, batch=batch)
    redo = run_batch(inputs, toy["model"], options=other, out=out, batch=batch, overwrite=True)
    assert redo.resumed == 0 and redo.computed == 3 and [e.run for e in redo.errors] == ["TS_03"]
    # an input touched (mtime: its identity changed) and the bad one fixed: those two are redone, two skipped
    os.utime(inputs[1], ns=(time.time_ns(), time.time_ns()))
    shutil.copy2(toy["inputs"][3], inputs[3])
    last = run_batch(inputs, toy["model"], options=other, out=out, batch=batch)
    assert last.errors == [] and last.resumed == 2 and last.computed == 2
    expected = pick(toy["inputs"][:4], toy["model"], options=other).picks.frame
    assert read_picks(out).frame[["run", "x_A", "y_A", "z_A"]].equals(expected[["run", "x_A", "y_A", "z_A"]])


def test_copick_and_folder_outputs_match_the_plain_loop(toy, cluster, tmp_path):
    from tomopick.io import read_tomogram
    from tomopick.io.copick_project import CopickProject

    batch = BatchOptions.make(scheduler=cluster["address"])
    for name in ("plain", "batch"):
        project = CopickProject.create(tmp_path / name, _particles(toy))
        for path in toy["inputs"][:3]:
            project.write_tomogram(path.stem, read_tomogram(path), tomo_type="wbp")
    uri = {name: f"copick://{tmp_path / name}" for name in ("plain", "batch")}
    pick(uri["plain"], toy["model"], options=OPTIONS, out=uri["plain"], user_id="tomopick", session_id="1")
    report = run_batch(uri["batch"], toy["model"], options=OPTIONS, out=uri["batch"], batch=batch,
                       user_id="tomopick", session_id="1")
    assert report.errors == [] and report.computed == 3
    got = CopickProject.open(tmp_path / "batch").read_picks(user_id="tomopick").frame
    want = CopickProject.open(tmp_path / "plain").read_picks(user_id="tomopick").frame
    assert len(got) > 0 and got.equals(want)
    assert not work_folder(uri["batch"]).exists()
    # a folder: one file per input, each the plain loop's
    pick(toy["inputs"][:3], toy["model"], options=OPTIONS, out=f"{tmp_path / 'plain_dir'}/")
    run_batch(toy["inputs"][:3], toy["model"], options=OPTIONS, out=f"{tmp_path / 'batch_dir'}/", batch=batch,
              save_scores=tmp_path / "scores")
    maps = sorted(p.name for p in (tmp_path / "scores").iterdir())  # written by the workers: 3 runs × 2 classes
    assert maps == sorted(f"TS_0{i}_{c}_scores.ome.zarr" for i in range(3) for c in ("apo-ferritin", "ribosome"))
    assert read_tomogram(tmp_path / "scores" / maps[0]).shape == (56, 56, 56)
    names = sorted(p.name for p in (tmp_path / "plain_dir").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "batch_dir").iterdir()) and len(names) == 3
    for n in names:  # (STAR files carry their creation time in a comment: compared by rows)
        assert rows(tmp_path / "batch_dir" / n) == rows(tmp_path / "plain_dir" / n)


def test_ensemble_batch_matches_the_plain_loop(toy, cluster, tmp_path):
    from tomopick.inference.ensemble import EnsembleSpec

    second = tmp_path / "second.pt"
    shutil.copy2(toy["model"], second)
    spec = EnsembleSpec([toy["model"], second], "0.7,0.3")
    pick(toy["inputs"][:2], spec, options=OPTIONS, out=tmp_path / "plain.csv")
    report = run_batch(toy["inputs"][:2], spec, options=OPTIONS, out=tmp_path / "batch.csv",
                       batch=BatchOptions.make(scheduler=cluster["address"]))
    assert report.errors == [] and report.computed == 2
    assert rows(tmp_path / "batch.csv") == rows(tmp_path / "plain.csv") and len(rows(tmp_path / "plain.csv")) > 0


def test_template_matching_batch_matches_the_plain_loop(toy, cluster, tmp_path):
    """``tomopick match --workers`` runs the same units: a planted template found in 2 tomograms, the batch's
    picks file equal to :func:`tomopick.workflows.match.match`'s."""
    from tomopick.data.rotations import random_rotations
    from tomopick.match.options import MatchOptions
    from tomopick.match.template import rotate_volume
    from tomopick.workflows.batch import run_match_batch
    from tomopick.workflows.match import match

    rng = np.random.default_rng(7)
    g = np.arange(15) - 7
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    template = np.zeros((15, 15, 15), np.float32)  # three balls: no rotational symmetry
    for (cx, cy, cz), r in (((3.5, 0, 0), 2.5), ((-3.0, 0, 0), 1.5), ((0, 3.0, 0), 2.0)):
        template += (np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) <= r).astype(np.float32)
    write_tomogram(Tomogram.from_array(template, 10.0), tmp_path / "template.mrc")
    inputs = []
    for i in range(2):
        vol = rng.normal(size=(28, 40, 40)).astype(np.float32)
        for rot, (cz, cy, cx) in zip(random_rotations(2, rng), ((12, 12, 12), (14, 26, 26))):
            vol[cz - 7:cz + 8, cy - 7:cy + 8, cx - 7:cx + 8] -= 3.0 * rotate_volume(template, rot)
        write_tomogram(Tomogram.from_array(vol, 10.0), tmp_path / f"M_{i}.mrc")
        inputs.append(tmp_path / f"M_{i}.mrc")
    options = MatchOptions(step_deg=30.0, tilt_range_deg=None, threads=1)
    plain = match(inputs, tmp_path / "template.mrc", particle="blob", radius_A=50.0, options=options,
                  out=tmp_path / "plain.csv")
    assert len(plain.picks) >= 4
    report = run_match_batch(inputs, tmp_path / "template.mrc", particle="blob", radius_A=50.0, options=options,
                             out=tmp_path / "batch.csv", batch=BatchOptions.make(scheduler=cluster["address"]))
    assert report.errors == [] and report.computed == 2
    assert (tmp_path / "batch.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()


def _particles(toy):
    from tomopick.data import ParticleSet
    from tomopick.models.checkpoint import read_checkpoint_payload

    return ParticleSet.model_validate(read_checkpoint_payload(toy["model"])["config"]["particles"])


# -- kill -9 ---------------------------------------------------------------------------------------------------
def test_kill_driver_at_five_moments_then_rerun_gives_the_uninterrupted_picks(toy, cluster, tmp_path):
    """Five kills, each at a different stage; one of them of a driver running its own ``--workers`` cluster,
    whose worker processes must die with it. Then the same command: the uninterrupted picks, no duplicates."""
    import psutil

    out = tmp_path / "picks.csv"
    cmd = cli([*map(str, toy["inputs"]), "-m", str(toy["model"]), *CLI_OPTIONS, "--out", str(out),
               "--scheduler", cluster["address"]])
    own_cluster = cli([*map(str, toy["inputs"]), "-m", str(toy["model"]), *CLI_OPTIONS, "--out", str(out),
                       "--workers", "1"])  # the same batch on a LocalCluster of its own (not part of the key)
    rng = np.random.default_rng(16)
    manifest = work_folder(out) / "manifest.json"
    n0 = 0
    moments = {  # name -> condition(start time); each kill lands 0-50 ms after its condition (random)
        "starting (imports)": lambda t0, delay=rng.uniform(0.2, 1.5): time.monotonic() - t0 > delay,
        "manifest written (connecting, submitting)": lambda t0: manifest.exists(),
        "first unit of this attempt": lambda t0: units_done(out) >= n0 + 1,
        "second unit of this attempt": lambda t0: units_done(out) >= n0 + 2,
        "output written (assembling, removing the work folder)": lambda t0: out.exists(),
    }
    plan = list(moments.items()) + [  # spares, should a driver finish before its kill lands
        (f"spare {i}: at a random time", lambda t0, delay=rng.uniform(0.5, 4.0): time.monotonic() - t0 > delay)
        for i in range(3)]
    killed = []
    for name, condition in plan:
        if len(killed) == 5:
            break
        idle(cluster["client"])  # tasks orphaned by the last kill have finished: units counted afresh
        n0 = units_done(out)
        t0 = time.monotonic()
        own = name == "first unit of this attempt"
        proc = subprocess.Popen(own_cluster if own else cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if wait_until(lambda: condition(t0), proc, timeout=120):
            time.sleep(rng.uniform(0.0, 0.05))
        children = psutil.Process(proc.pid).children(recursive=True) if own and proc.poll() is None else []
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if own and proc.returncode == -signal.SIGKILL:
            assert children, "the driver's own cluster has worker processes"
            gone, alive = psutil.wait_procs(children, timeout=20)  # they watch their parent and exit with it
            assert alive == [], alive
        if proc.returncode == -signal.SIGKILL:
            killed.append((name, n0, units_done(out)))
        else:  # finished before the kill landed: it must have succeeded with the full output
            assert proc.returncode == 0, proc.stderr
            assert_same_as_plain(out, toy)
            out.unlink()
    print("kills (moment, units before, units after):", *killed, sep="\n  ")
    assert len(killed) == 5 and len({k[0] for k in killed}) == 5, killed
    # re-run the very same command until it reports success (the batch may already be complete: then the
    # output is refused like any existing output, and it must already be the full, correct output)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode == 2:
        assert "output exists" in done.stderr and not work_folder(out).exists()
    else:
        assert done.returncode == 0, done.stderr
    assert_same_as_plain(out, toy)
    assert not work_folder(out).exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p != out]
    assert leftovers == [], leftovers


def test_kill_a_worker_mid_batch_loses_nothing(toy, cluster, tmp_path):
    out = tmp_path / "picks.csv"
    client = cluster["client"]
    cmd = cli([*map(str, toy["inputs"]), "-m", str(toy["model"]), *CLI_OPTIONS, "--out", str(out),
               "--scheduler", cluster["address"]])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: units_done(out) >= 1, proc)
    busy = [w for w, keys in client.processing().items() if any("tomopick-pick" in str(k) for k in keys)]
    assert busy, "no worker is picking"
    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
    os.kill(pid, signal.SIGKILL)  # the nanny restarts it; Dask reruns its unit elsewhere
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert_same_as_plain(out, toy)


# -- options, errors, SLURM -----------------------------------------------------------------------------------
def test_batch_option_errors_are_one_line(toy, tmp_path, capsys):
    from tomopick.cli.main import main

    base = [str(toy["inputs"][0]), "-m", str(toy["model"]), "--out", str(tmp_path / "p.csv")]
    bad_yaml = tmp_path / "slurm.yaml"
    bad_yaml.write_text("queue: gpu\ncores: zero\n")
    cases = [
        (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "with --scheduler"),
        (["--cluster", "slurm", "--cluster-config", str(bad_yaml)], f"{bad_yaml}: cores"),
        (["--cluster-config", str(bad_yaml)], "--cluster-config is for --cluster slurm"),
        (["--cluster", "pbs"], "--cluster 'pbs'"),
        (["--workers", "0"], "--workers"),
        (["--workers", "1", "--where", "score > 0.5"], "--where: not available with --workers"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["pick", *base, *extra])
        err = capsys.readouterr().err
        assert exc.value.code == 2, (extra, err)
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "p.csv").exists() and not work_folder(tmp_path / "p.csv").exists()


def test_slurm_job_script_carries_the_yaml_numbers(tmp_path):
    config_file = tmp_path / "slurm.yaml"
    config_file.write_text("queue: gpu-short\naccount: cryoet\nwalltime: '02:30:00'\nmemory: 32GB\ncores: 8\n"
                           "gpus: 1\nprocesses: 1\njobs: 3\njob_script_prologue: ['module load cuda']\n")
    config = load_cluster_config(config_file)
    assert config == ClusterConfig(queue="gpu-short", account="cryoet", walltime="02:30:00", memory="32GB", cores=8,
                                   gpus=1, processes=1, jobs=3, job_script_prologue=["module load cuda"])
    script = slurm_job_script(config)
    lines = script.splitlines()
    assert "#SBATCH -p gpu-short" in lines
    assert "#SBATCH -A cryoet" in lines
    assert "#SBATCH -t 02:30:00" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert "#SBATCH --mem=30G" in lines  # dask-jobqueue: 32 GB = 29.8 GiB, rounded to whole GiB
    assert "#SBATCH --gres=gpu:1" in lines
    assert "module load cuda" in lines
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nthreads 8" in worker and "--memory-limit 29.80GiB" in worker
    assert "--resources tomopick_run=1" in worker  # one run at a time per worker; torch gets the 8 cores


@pytest.mark.slow
def test_real_slurm_batch(toy, tmp_path):
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed here (no sbatch/slurmctld; slurm-wlm cannot be installed without "
                    "network): the job script is tested instead")
    config = tmp_path / "slurm.yaml"
    config.write_text("walltime: '00:10:00'\nmemory: 2GB\ncores: 1\njobs: 1\n")
    out = tmp_path / "picks.csv"
    done = subprocess.run(cli([*map(str, toy["inputs"][:2]), "-m", str(toy["model"]), *CLI_OPTIONS, "--out",
                               str(out), "--cluster", "slurm", "--cluster-config", str(config)]),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert rows(out) == [r for r in rows(toy["plain"]) if r[0] in {"TS_00", "TS_01"}]
