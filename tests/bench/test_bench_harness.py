"""The benchmark harness's pure helpers (bench/common.py, bench/accuracy.py): splits, RESULTS.md sections,
tables, and the measured subprocess. The benchmarks themselves are far too slow for CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import accuracy  # noqa: E402
import common  # noqa: E402


def test_split_runs_is_sorted_train_val_test():
    names = [f"sim_{i:03d}" for i in (4, 0, 3, 1, 2, 5)]
    train, val, test = accuracy.split_runs(names, 2, 1, 2)
    assert train == ["sim_000", "sim_001"]
    assert val == ["sim_002"]
    assert test == ["sim_004", "sim_005"]


@pytest.mark.parametrize("n", [(0, 1, 1), (1, 0, 1), (1, 1, 0), (2, 2, 3)])
def test_split_runs_refuses_empty_or_too_many(n):
    with pytest.raises(ValueError):
        accuracy.split_runs(["a", "b", "c", "d", "e", "f"], *n)


def test_replace_section_keeps_other_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmarks\n\n## simulate\n\nsim text\n\n## accuracy\n\nold\n\n## pick\n\npick text\n")
    common.replace_section(path, "accuracy", "## accuracy\n\nnew 1\nnew 2\n")
    assert path.read_text() == ("# Benchmarks\n\n## simulate\n\nsim text\n\n## accuracy\n\nnew 1\nnew 2\n\n"
                                "## pick\n\npick text\n")
    # appended when absent, and a heading with parentheses is matched literally
    common.replace_section(path, "speed (tomopick vs octopi)", "## speed (tomopick vs octopi)\n\nfast\n")
    common.replace_section(path, "speed (tomopick vs octopi)", "## speed (tomopick vs octopi)\n\nfaster\n")
    text = path.read_text()
    assert text.endswith("## pick\n\npick text\n\n## speed (tomopick vs octopi)\n\nfaster\n")
    assert text.count("## speed") == 1
    with pytest.raises(ValueError):
        common.replace_section(path, "accuracy", "no heading")


def test_markdown_table_formats_cells():
    text = common.markdown_table([{"a": 0.12345, "b": None}, {"a": "x", "b": 3}], [("a", "A"), ("b", "B")])
    assert text.splitlines() == ["| A | B |", "|---|---|", "| 0.123 | – |", "| x | 3 |"]


def test_add_octopi_weights_copies_tomopick_weight(tmp_path):
    cfg = tmp_path / "copick_config.json"
    cfg.write_text(json.dumps({"pickable_objects": [
        {"name": "ribosome", "metadata": {"tomopick": {"weight": 1.0}}},
        {"name": "beta-amylase", "metadata": {"tomopick": {"weight": 0.0}}},
        {"name": "membrane", "metadata": {}}]}))
    assert accuracy.add_octopi_weights(cfg) == {"ribosome": 1.0, "beta-amylase": 0.0}
    objs = json.loads(cfg.read_text())["pickable_objects"]
    assert [o["metadata"].get("weight") for o in objs] == [1.0, 0.0, None]
    assert objs[0]["metadata"]["tomopick"] == {"weight": 1.0}


def test_run_measured_reports_rc_time_and_rss(tmp_path):
    # a child that holds ~200 MB resident for 1.5 s (long enough for the 0.1 s sampler under load), then exits 3
    code = "import time, sys; b = bytearray(200 * 1024**2); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5); sys.exit(3)"
    res = common.run_measured([sys.executable, "-c", code], tmp_path / "log.txt", sample_s=0.1, echo=False)
    assert res["rc"] == 3
    assert res["wall_s"] >= 1.45  # at least the child's own sleep; load only lengthens it (no upper bound)
    assert 0.2 <= res["maxrss_GB"] < 1.0
    assert 0.15 <= res["tree_peak_GB"] <= res["maxrss_GB"] + 0.05
    assert (tmp_path / "log.txt").read_text().startswith("$ ")


def test_run_measured_timeout_kills_the_process_group(tmp_path):
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    res = common.run_measured([sys.executable, "-c", code], tmp_path / "log.txt", timeout_s=0.5, sample_s=0.1,
                              echo=False)
    assert res["timed_out"] is True
    assert res["rc"] != 0
    assert res["wall_s"] < 30  # killed before the child's own 30 s sleep would end, however loaded the machine
