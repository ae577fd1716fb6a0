"""Shared helpers of the tomopick benchmarks (``bench/accuracy.py``, ``bench/speed.py``).

* :func:`machine_info` — CPU model, cores, RAM, versions and load, for the results tables;
* :func:`run_measured` — run one command in a subprocess and measure its wall time, its peak RSS (``os.wait4``
  rusage: the largest single process of the tree) and the peak summed RSS of its whole process tree (sampled from
  ``/proc``), with the load average sampled during the run;
* :func:`replace_section` — replace one ``## heading`` section of ``bench/RESULTS.md``, leaving the others alone;
* :func:`evaluate_json` — score picks with ``tomopick evaluate --json``.

Nothing here imports tomopick, torch or octopi: the harness drives every tool through its command line (or a
small child script) so that each measurement is of a fresh process.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parent.parent
TOMOPICK_PY = Path(sys.executable)
TOMOPICK_CLI = Path(sys.executable).parent / "tomopick"
OCTOPI_PY = Path(os.environ.get("OCTOPI_PYTHON", "/work/octopi-venv/bin/python"))


# -- machine -----------------------------------------------------------------------------------------------------
def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            return m.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total_GB() -> float:
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        return kb / 1024**2
    except (OSError, AttributeError):
        return float("nan")


def _version(python: Path, module: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(octopi: bool = True) -> dict[str, Any]:
    """CPU model (``lscpu``), logical cores (all / available to this process), RAM (GiB), OS, Python and the
    versions of torch, tomopick and (if ``octopi``) octopi in their own environments, and the load average now."""
    info: dict[str, Any] = {
        "cpu": _lscpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "ram_GiB": round(_mem_total_GB(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": _version(TOMOPICK_PY, "torch"),
        "tomopick": _version(TOMOPICK_PY, "tomopick"),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "gpu": "none (CPU only)",
    }
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        info["git"] = head or "?"
    except (OSError, subprocess.SubprocessError):
        info["git"] = "?"
    if octopi:
        info["octopi"] = _version(OCTOPI_PY, "octopi") if OCTOPI_PY.exists() else "not installed"
        info["octopi_torch"] = _version(OCTOPI_PY, "torch") if OCTOPI_PY.exists() else "-"
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One Markdown line describing the machine."""
    text = (f"{info['cpu']}, {info['cores_available']} of {info['cores']} logical cores available, "
            f"{info['ram_GiB']} GiB RAM, {info['os']}, {info['gpu']}; Python {info['python']}, torch {info['torch']}, "
            f"tomopick {info['tomopick']} (git {info['git']})")
    if "octopi" in info:
        text += f", octopi {info['octopi']} (torch {info['octopi_torch']}, own venv)"
    return text


# -- measured subprocess -----------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            except OSError:
                continue
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def tree_rss_bytes(pid: int) -> int:
    """Summed resident set size (bytes) of ``pid`` and all its descendants, from ``/proc`` (0 once it is gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            m = re.search(r"VmRSS:\s+(\d+)\s+kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        if m:
            total += int(m.group(1)) * 1024
        todo += _children(p)
    return total


def run_measured(cmd: Sequence[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout_s: float | None = None, sample_s: float = 0.5, echo: bool = True) -> dict[str, Any]:
    """Run ``cmd`` (stdout + stderr → ``log``) and measure it.

    Returns
    -------
    dict
        ``cmd`` (shell-quoted), ``rc``, ``wall_s``, ``maxrss_GB`` (peak RSS of the largest single process of the
        tree, from the kernel's rusage via ``os.wait4``), ``tree_peak_GB`` (peak of the summed RSS of the process
        tree, sampled every ``sample_s``), ``user_s``/``sys_s`` CPU time, ``load_before``, ``load_mean``,
        ``load_max`` (1-minute load average sampled during the run), ``timed_out``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    text = shlex.join(str(c) for c in cmd)
    if echo:
        print(f"$ {text}", flush=True)
    load_before = os.getloadavg()[0]
    started = time.strftime("%H:%M:%S UTC", time.gmtime())
    with open(log, "w") as fh:
        fh.write(f"$ {text}\n")
        fh.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=full_env,
                                cwd=None if cwd is None else str(cwd), start_new_session=True)
        peak = [0]
        loads: list[float] = []
        done = threading.Event()
        timed_out = [False]

        def sampler() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
                loads.append(os.getloadavg()[0])
                if timeout_s is not None and time.perf_counter() - t0 > timeout_s and not timed_out[0]:
                    timed_out[0] = True
                    try:
                        os.killpg(proc.pid, signal.SIGTERM)
                    except OSError:
                        pass
                done.wait(sample_s)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        thread.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"cmd": text, "started": started, "rc": proc.returncode, "wall_s": round(wall, 2),
              "maxrss_GB": round(usage.ru_maxrss / 1024**2, 3), "tree_peak_GB": round(peak[0] / 1024**3, 3),
              "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
              "load_before": round(load_before, 2),
              "load_mean": round(sum(loads) / len(loads), 2) if loads else round(load_before, 2),
              "load_max": round(max(loads), 2) if loads else round(load_before, 2),
              "timed_out": timed_out[0], "log": str(log)}
    if echo:
        print(f"  rc {result['rc']}, {result['wall_s']:.1f} s, peak RSS {result['maxrss_GB']:.2f} GB "
              f"(tree {result['tree_peak_GB']:.2f} GB), load {result['load_mean']:.1f}", flush=True)
    return result


def tail(path: Path, n: int = 15) -> str:
    """The last ``n`` lines of a log file."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def last_error_line(path: Path) -> str:
    """The last line of a log that looks like an error (``...Error: ...``), else its last non-empty line."""
    lines = [ln.strip() for ln in tail(path, 200).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"(Error|Exception|error:)", ln):
            return ln[:300]
    return lines[-1][:300] if lines else "(empty log)"


# -- results -----------------------------------------------------------------------------------------------------
def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section that starts with the line ``## {heading}`` (up to the next ``## `` heading) in the
    Markdown file ``path`` by ``text``, or append ``text`` if there is no such section. Other sections are kept
    byte for byte. ``text`` must start with that heading line."""
    if not text.startswith(f"## {heading}"):
        raise ValueError(f"section text must start with '## {heading}'")
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    body = text.rstrip("\n") + "\n"
    if pattern.search(old):
        new = pattern.sub(lambda m: body + ("\n" if m.end() < len(old) else ""), old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + body
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A Markdown table; ``columns`` are ``(key, header)``; floats get 3 decimals, ``None`` → ``–``."""
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3f}"
        return str(v)

    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def evaluate_json(truth: str | Path, picks: str | Path, runs: Sequence[str], log: Path, *,
                  truth_user: str = "curation", sweep: bool = False) -> dict[str, Any]:
    """Score ``picks`` against ``truth`` (copick project) on ``runs`` with ``tomopick evaluate --json`` (CZII
    metric); returns the parsed JSON plus the command line under ``"cmd"``."""
    cmd = [str(TOMOPICK_CLI), "evaluate", "-t", str(truth), "--truth-user", truth_user,
           "-p", str(picks), "--runs", ",".join(runs), "--json"] + (["--sweep"] if sweep else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(f"$ {shlex.join(cmd)}\n{out.stdout}\n{out.stderr}")
    if out.returncode != 0:
        raise RuntimeError(f"tomopick evaluate failed ({out.returncode}): {out.stderr.strip()[-300:]}")
    data = json.loads(out.stdout)
    data["cmd"] = short_cmd(shlex.join(cmd))
    return data


def tomopick_cmd(*args: str) -> list[str]:
    """The ``tomopick`` command of this interpreter's environment with ``args``."""
    return [str(TOMOPICK_CLI), *args]


def short_cmd(cmd: str) -> str:
    """A command line as shown in RESULTS.md: interpreters and the repository path shortened."""
    cmd = cmd.replace(str(TOMOPICK_CLI), "tomopick").replace(str(TOMOPICK_PY), "python")
    cmd = cmd.replace(str(OCTOPI_PY), "$OCTOPI_PYTHON")
    return cmd.replace(str(REPO) + "/", "")

