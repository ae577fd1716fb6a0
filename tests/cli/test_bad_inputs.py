"""Bad input through the real CLI (issue #11): every case must end with ONE line ``error: …`` (no traceback, no
second line), a non-zero exit status (2 for input errors), and leave the working folder exactly as it was — no
file created, removed or changed (tree snapshot with sizes, mtimes and hashes before and after).

Each case is ``argv_of(t)``: it builds its (tiny) inputs in the empty temporary folder ``t`` and returns the
command line. Most run in-process (``tomopick.cli.main.main``); the ``SUB`` ones run ``python -m tomopick.cli.main``
in a subprocess, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable

import mrcfile
import numpy as np
import pytest

from tomopick.cli.main import main
from tomopick.data import Picks
from tomopick.io import write_picks

ROOT = os.geteuid() == 0


# -- inputs ------------------------------------------------------------------------------------------------------
def mrc(t: Path, name: str = "t.mrc", shape=(8, 12, 12), vs: float = 10.0, data: np.ndarray | None = None) -> Path:
    path = t / name
    vol = np.random.default_rng(0).normal(size=shape).astype(np.float32) if data is None else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about the NaN volume on purpose
        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(vol)
            m.voxel_size = vs
    return path


def poked(t: Path, offset: int, fmt: str, value, name: str = "bad.mrc") -> Path:
    """A valid MRC whose header word at ``offset`` is overwritten (``fmt``: struct format)."""
    path = mrc(t, name)
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    return path


def cut(t: Path, size: int, name: str = "cut.mrc") -> Path:
    path = mrc(t, name)
    path.write_bytes(path.read_bytes()[:size])
    return path


def text(t: Path, name: str, content: str) -> Path:
    path = t / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def raw(t: Path, name: str, content: bytes) -> Path:
    path = t / name
    path.write_bytes(content)
    return path


def folder(t: Path, name: str) -> Path:
    (t / name).mkdir()
    (t / name / "keep.txt").write_text("keep me")
    return t / name


def nan_mrc(t: Path) -> Path:
    vol = np.ones((8, 12, 12), np.float32)
    vol[2, 3, 4] = np.nan
    return mrc(t, "nan.mrc", data=vol)


def picks(t: Path, name: str = "p.csv", names=("ribosome", "apo-ferritin"), run: str = "TS_1", **options) -> Path:
    xyz = np.array([[100.0, 120, 40], [30, 40, 50]])[: len(names)]
    return write_picks(Picks.from_arrays(xyz, list(names), run=run), t / name, **options)


STAR = "data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
KAGGLE = "id,experiment,particle_type,x,y,z\n"


def copick_json(t: Path, name: str = "p.json", **changes) -> Path:
    doc = {"pickable_object_name": "ribosome", "user_id": "u", "session_id": "0", "run_name": "TS_1",
           "voxel_spacing": 10.0, "unit": "angstrom",
           "points": [{"location": {"x": 1.0, "y": 2.0, "z": 3.0}, "instance_id": 0}], "trust_orientation": False}
    doc.update(changes)
    return text(t, name, json.dumps(doc))


def zarr_folder(t: Path, zattrs: str | None) -> Path:
    path = t / "t.zarr"
    path.mkdir()
    if zattrs is not None:
        (path / ".zattrs").write_text(zattrs)
        (path / ".zgroup").write_text('{"zarr_format": 2}')
    return path


def checkpoint(t: Path, kind: str) -> Path:
    import torch

    path = t / "m.pt"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "marker":
        torch.save({"format": "something-else", "version": 1, "state_dict": {}}, path)
    elif kind == "object":
        torch.save({"format": "tomopick-checkpoint", "obj": _Arbitrary()}, path)
    elif kind == "truncated":
        from tomopick.models.bundled import bundled_model_path

        data = bundled_model_path().read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "newer":
        torch.save({"format": "tomopick-checkpoint", "version": 99, "state_dict": {}, "config": {}}, path)
    elif kind == "mismatch":
        torch.save({"format": "tomopick-checkpoint", "version": 1, "state_dict": {},
                    "config": {"network": {"name": "unet", "hparams": {}}, "in_channels": 1, "out_channels": 3}},
                   path)
    return path


class _Arbitrary:
    pass


TRAIN_OK = "data: {kind: folder, path: data}\nparticles: czii\nepochs: 1\n"


def train_data(t: Path) -> Path:
    (t / "data").mkdir()
    mrc(t / "data", "t0.mrc")
    picks(t / "data", "t0.csv", run="t0")
    return t / "data"


def train_run(t: Path) -> Path:
    """An output folder that already holds a training run."""
    out = t / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"weights")
    (out / "config.yaml").write_text("epochs: 1\n")
    return out


def prompt_file(t: Path) -> Path:
    return raw(t, "r.prompt.npz", b"PK\x03\x04 not really a zip")


PROMPT_TRAIN_OK = "voxel_size_A: 10.0\nthreads: 1\n"


def tiny(t: Path) -> Path:
    return mrc(t, "tiny.mrc", shape=(16, 16, 16))


# -- cases -------------------------------------------------------------------------------------------------------
def case(case_id: str, argv_of: Callable[[Path], list], match: str | None = None, *, code: int = 2,
         sub: bool = False, marks=()):
    return pytest.param(argv_of, match, code, sub, id=case_id, marks=marks)


SUB = {"sub": True}
NOT_AS_ROOT = pytest.mark.skipif(ROOT, reason="root may write into read-only folders")

TOMOGRAMS = [
    case("tomo-missing", lambda t: ["info", t / "missing.mrc"], "file not found"),
    case("tomo-empty-file", lambda t: ["info", raw(t, "e.mrc", b"")], "file is empty"),
    case("tomo-short-header", lambda t: ["info", cut(t, 500)], "not an MRC file"),
    case("tomo-header-only", lambda t: ["info", cut(t, 1024)], "corrupt or truncated"),
    case("tomo-truncated-data", lambda t: ["info", cut(t, 1024 + 100)], "corrupt or truncated"),
    case("tomo-negative-nx", lambda t: ["info", poked(t, 0, "<i", -5)], "each must be at least 1"),
    case("tomo-negative-nz-min", lambda t: ["info", poked(t, 8, "<i", -2**31)], "each must be at least 1"),
    case("tomo-nz-zero", lambda t: ["info", poked(t, 8, "<i", 0)], "each must be at least 1"),
    case("tomo-mode-99", lambda t: ["info", poked(t, 12, "<i", 99)], "unsupported MRC mode 99"),
    case("tomo-mode-4-complex", lambda t: ["info", poked(t, 12, "<i", 4)], "unsupported MRC mode 4"),
    case("tomo-huge-dims", lambda t: ["info", poked(t, 0, "<i", 2**31 - 1)], "corrupt or truncated"),
    case("tomo-negative-ext-header", lambda t: ["info", poked(t, 92, "<i", -100)], "extended header"),
    case("tomo-huge-ext-header", lambda t: ["info", poked(t, 92, "<i", 10**9)], "corrupt or truncated"),
    case("tomo-bad-map-id", lambda t: ["info", poked(t, 208, "4s", b"XXXX")], "not an MRC file"),
    case("tomo-bad-machine-stamp", lambda t: ["info", poked(t, 212, "4s", b"\0\0\0\0")], "machine stamp"),
    case("tomo-random-bytes", lambda t: ["info", raw(t, "r.mrc", np.random.default_rng(1).bytes(3000))],
         "not an MRC file"),
    case("tomo-folder-not-file", lambda t: ["info", folder(t, "dir.mrc")], "is a folder"),
    case("tomo-mrc-named-tif", lambda t: ["info", mrc(t, "t.tif")], "TIFF"),
    case("tomo-text-named-tiff", lambda t: ["info", text(t, "t.tiff", "hello")], "TIFF"),
    case("tomo-zarr-empty-folder", lambda t: ["info", zarr_folder(t, None)], "zarr"),
    case("tomo-zarr-bad-zattrs", lambda t: ["info", zarr_folder(t, "{not json")], "malformed zarr metadata"),
    case("tomo-zarr-no-multiscales", lambda t: ["info", zarr_folder(t, "{}")], "multiscales"),
    case("tomo-voxel-size-zero", lambda t: ["info", mrc(t, vs=0.0)], "pass --voxel-size"),
    case("tomo-voxel-size-option-negative", lambda t: ["info", mrc(t), "--voxel-size", "-1"], "must be positive"),
    case("tomo-voxel-size-option-nan", lambda t: ["info", mrc(t), "--voxel-size", "nan"], "must be positive"),
    case("convert-truncated-to-zarr", lambda t: ["convert", cut(t, 1100), t / "new" / "o.zarr"],
         "corrupt or truncated"),
    case("convert-negative-dims-to-mrc", lambda t: ["convert", poked(t, 4, "<i", -3), t / "o.mrc"], "corrupt"),
    case("convert-missing-input", lambda t: ["convert", t / "nope.mrc", t / "o.zarr"], "file not found", **SUB),
    case("convert-tomogram-to-picks-name", lambda t: ["convert", mrc(t), t / "o.star"], "names a picks format"),
    case("prompt-extract-corrupt-tomogram",
         lambda t: ["prompt", "extract", cut(t, 1100), "--at", "1,1,1", "--out", t / "p.npz"], "corrupt"),
    case("prompt-extract-voxel-size-zero",
         lambda t: ["prompt", "extract", mrc(t, vs=0.0), "--at", "1,1,1", "--out", t / "p.npz"],
         "--tomogram-voxel-size"),
    case("prompt-extract-outside",
         lambda t: ["prompt", "extract", mrc(t), "--at", "99999,1,1", "--out", t / "p.npz"], "outside"),
    case("pick-nan-volume", lambda t: ["pick", nan_mrc(t), "--out", t / "p.csv", "-q"], "--allow-nonfinite"),
    case("pick-nan-volume-subprocess", lambda t: ["pick", nan_mrc(t), "--out", t / "p.csv", "-q"], "NaN", **SUB),
    case("pick-missing-tomogram", lambda t: ["pick", t / "no.mrc", "--out", t / "p.csv", "-q"], "not found"),
    case("pick-truncated-tomogram", lambda t: ["pick", cut(t, 1100), "--out", t / "p.csv", "-q"], "truncated"),
    case("pick-empty-tomogram", lambda t: ["pick", raw(t, "e.mrc", b""), "--out", t / "p.csv", "-q"], "empty"),
    case("pick-folder-as-tomogram", lambda t: ["pick", folder(t, "d.mrc"), "--out", t / "p.csv", "-q"], "folder"),
    case("pick-unknown-tomogram-extension", lambda t: ["pick", text(t, "t.xyz1", "x"), "--out", t / "p.csv"],
         "format"),
]

PICKS = [
    case("picks-empty-info", lambda t: ["info", raw(t, "e.csv", b"")], "file is empty"),
    case("picks-empty-evaluate", lambda t: ["evaluate", "--truth", picks(t), "--picks", raw(t, "e.csv", b"")],
         "file is empty"),
    case("picks-empty-star", lambda t: ["convert", raw(t, "e.star", b""), t / "o.csv"], "file is empty"),
    case("kaggle-missing-columns", lambda t: ["info", text(t, "k.csv", "id,experiment,particle_type,x,y\n0,TS,r,1,2\n")],
         "lacks column"),
    case("kaggle-non-numeric", lambda t: ["info", text(t, "k.csv", KAGGLE + "0,TS,ribosome,1,two,3\n")],
         "non-numeric"),
    case("kaggle-nan-coordinate", lambda t: ["info", text(t, "k.csv", KAGGLE + "0,TS,ribosome,1,nan,3\n")],
         "malformed CSV"),
    case("kaggle-inf-coordinate", lambda t: ["info", text(t, "k.csv", KAGGLE + "0,TS,ribosome,1,inf,3\n")],
         "malformed CSV"),
    case("kaggle-empty-class", lambda t: ["info", text(t, "k.csv", KAGGLE + "0,TS,,1,2,3\n")], "particle_type"),
    case("kaggle-binary", lambda t: ["info", raw(t, "k.csv", b"id,experiment\xff\xfe\x00\x01")], "CSV"),
    case("picks-unknown-class-convert",
         lambda t: ["convert", picks(t, names=("proteasome",)), t / "o.star", "--particles", "czii",
                    "--voxel-size", "10"], "unknown particle name(s) proteasome"),
    case("picks-unknown-class-info", lambda t: ["info", picks(t, names=("proteasome",)), "--particles", "czii"],
         "unknown particle name"),
    case("xyz-no-voxel-size", lambda t: ["convert", text(t, "x.csv", "1,2,3\n"), t / "o.star"], "pass --voxel-size"),
    case("xyz-wrong-columns", lambda t: ["info", text(t, "x.csv", "1,2\n3,4\n"), "--voxel-size", "10"], "columns"),
    case("xyz-negative-voxel-size", lambda t: ["info", text(t, "x.csv", "1,2,3\n"), "--voxel-size", "-2"],
         "must be positive"),
    case("xyz-evaluate-needs-convert",
         lambda t: ["evaluate", "--truth", picks(t), "--picks", text(t, "x.csv", "1,2,3\n")], "tomopick convert"),
    case("star-non-numeric", lambda t: ["info", text(t, "s.star", STAR + "1 2 x\n"), "--voxel-size", "1"], "STAR"),
    case("star-no-pixel-size", lambda t: ["convert", text(t, "s.star", STAR + "1 2 3\n"), t / "o.csv"],
         "pass --voxel-size"),
    case("star-no-coordinates", lambda t: ["info", text(t, "s.star", "data_x\nloop_\n_rlnFoo #1\n1\n")], "STAR"),
    case("star-garbage", lambda t: ["info", text(t, "s.star", "hello world\n")], "STAR"),
    case("star-relion5-needs-shape",
         lambda t: ["convert", picks(t, "p.csv", names=("ribosome",)), t / "o.star", "--format-out", "relion5"],
         "--tomo-shape"),
    case("star-relion5-evaluate-needs-convert",
         lambda t: ["evaluate", "--truth", picks(t), "--picks",
                    text(t, "r5.star", "data_particles\nloop_\n_rlnTomoName #1\n_rlnCenteredCoordinateXAngst #2\n"
                                       "_rlnCenteredCoordinateYAngst #3\n_rlnCenteredCoordinateZAngst #4\n"
                                       "TS_1 1 2 3\n")],
         "tomopick convert"),
    case("copick-malformed-json", lambda t: ["info", text(t, "p.json", '{"points": [')], "malformed JSON"),
    case("copick-not-object", lambda t: ["info", text(t, "p.json", "[1, 2]")], "copick"),
    case("copick-no-name", lambda t: ["info", copick_json(t, pickable_object_name=None)], "pass --particle"),
    case("copick-no-name-evaluate", lambda t: ["evaluate", "--truth", picks(t), "--picks",
                                               copick_json(t, pickable_object_name=None)], "pickable_object_name"),
    case("copick-point-without-location", lambda t: ["info", copick_json(t, points=[{"instance_id": 0}])], "point 0"),
    case("copick-bad-unit", lambda t: ["info", copick_json(t, unit="furlong")], "unsupported unit"),
    case("copick-bad-voxel-spacing", lambda t: ["info", copick_json(t, voxel_spacing="ten")], "voxel_spacing"),
    case("copick-binary", lambda t: ["info", raw(t, "p.json", b'\xff\xfe"points"\x00')], "JSON"),
    case("copick-two-classes-to-json", lambda t: ["convert", picks(t), t / "o.json"], "one particle class"),
    case("dynamo-too-few-columns", lambda t: ["info", text(t, "d.tbl", "1 2 3\n"), "--voxel-size", "1"], "Dynamo"),
    case("imod-garbage", lambda t: ["info", raw(t, "m.mod", b"IMOD garbage"), "--voxel-size", "1"], "IMOD"),
    case("picks-unknown-extension", lambda t: ["convert", picks(t), t / "o.unknown"], "--format-out"),
    case("picks-format-in-unknown", lambda t: ["convert", picks(t), t / "o.star", "--format-in", "bogus"],
         "unknown format 'bogus'"),
    case("picks-format-out-unknown", lambda t: ["convert", picks(t), t / "o.star", "--format-out", "bogus"],
         "bogus"),
    case("picks-format-out-tomogram", lambda t: ["convert", picks(t), t / "o.x", "--format-out", "mrc"],
         "is a tomogram format"),
    case("copick-uri-unknown-key", lambda t: ["info", f"copick://{t}/proj?colour=red"], "unknown copick URI key"),
    case("uri-unknown-scheme", lambda t: ["info", "s3://bucket/p.json"], "unknown URI scheme"),
    case("evaluate-missing-truth", lambda t: ["evaluate", "--truth", t / "none.csv", "--picks", picks(t)],
         "not found"),
    case("evaluate-unknown-metric", lambda t: ["evaluate", "--truth", picks(t), "--picks", picks(t, "q.csv"),
                                               "--metric", "bogus"], "metric"),
    case("evaluate-unknown-particles",
         lambda t: ["evaluate", "--truth", picks(t), "--picks", picks(t, "q.csv"), "--particles", "nosuchset"],
         "unknown particle set"),
    case("evaluate-folder-without-picks",
         lambda t: ["evaluate", "--truth", picks(t), "--picks", text(t, "pk/.hidden", "not picks").parent],
         "no pick files"),
    case("evaluate-negative-beta", lambda t: ["evaluate", "--truth", picks(t), "--picks", picks(t, "q.csv"),
                                              "--beta", "-1"], "beta"),
    case("evaluate-negative-distance", lambda t: ["evaluate", "--truth", picks(t), "--picks", picks(t, "q.csv"),
                                                  "--distance-A", "-5"], "distance"),
    case("info-tomo-shape-not-numbers", lambda t: ["info", picks(t), "--tomo-shape", "a,b,c"], "Z,Y,X"),
    case("info-tomo-shape-zero", lambda t: ["info", picks(t), "--tomo-shape", "0,10,10"], "positive"),
    case("info-tomo-shape-two", lambda t: ["info", picks(t), "--tomo-shape", "10,10"], "three"),
]

CONFIGS = [
    case("train-config-missing", lambda t: ["train", t / "none.yaml", "--out", t / "run"], "not found"),
    case("train-yaml-syntax", lambda t: ["train", text(t, "c.yaml", "data: [unclosed\n"), "--out", t / "run"],
         "malformed YAML"),
    case("train-not-mapping", lambda t: ["train", text(t, "c.yaml", "- a\n- b\n"), "--out", t / "run"], "mapping"),
    case("train-empty-config", lambda t: ["train", raw(t, "c.yaml", b""), "--out", t / "run"], None),
    case("train-unknown-key", lambda t: ["train", text(t, "c.yaml", TRAIN_OK + "colour: red\n"), "--out", t / "r"],
         "colour"),
    case("train-bad-value", lambda t: ["train", text(t, "c.yaml", TRAIN_OK.replace("epochs: 1", "epochs: -3")),
                                       "--out", t / "run"], "epochs"),
    case("train-bad-type", lambda t: ["train", text(t, "c.yaml", TRAIN_OK + "patch_size: big\n"),
                                      "--out", t / "run"], "patch_size"),
    case("train-unknown-network", lambda t: [train_data(t) and "train",
                                             text(t, "c.yaml", TRAIN_OK + "network: {name: gpt}\n"),
                                             "--out", t / "run", "-q"], "gpt"),
    case("train-data-missing", lambda t: ["train", text(t, "c.yaml", TRAIN_OK), "--out", t / "run"], "not found"),
    case("train-data-corrupt-mrc",
         lambda t: [train_data(t) and cut(t / "data", 1100, "t0.mrc") and "train", text(t, "c.yaml", TRAIN_OK),
                    "--out", t / "run", "-q"], "corrupt or truncated"),
    case("train-data-bad-picks",
         lambda t: [train_data(t) and text(t / "data", "t0.csv", KAGGLE + "0,t0,ribosome,1,x,3\n") and "train",
                    text(t, "c.yaml", TRAIN_OK), "--out", t / "run", "-q"], "non-numeric"),
    case("train-data-subprocess", lambda t: ["train", text(t, "c.yaml", TRAIN_OK), "--out", t / "run"], "not found",
         **SUB),
    case("train-particles-missing-yaml",
         lambda t: ["train", text(t, "c.yaml", TRAIN_OK.replace("czii", "nope.yaml")), "--out", t / "run"],
         "nope.yaml"),
    case("train-resume-nothing", lambda t: ["train", text(t, "c.yaml", TRAIN_OK), "--out", folder(t, "run"),
                                            "--resume"], "nothing to resume"),
    case("simulate-yaml-syntax", lambda t: ["simulate", "--out", t / "sim", "--config", text(t, "s.yaml", "a: [\n")],
         "malformed YAML"),
    case("simulate-unknown-key", lambda t: ["simulate", "--out", t / "sim", "--config",
                                            text(t, "s.yaml", "colour: red\n")], "colour"),
    case("simulate-bad-value", lambda t: ["simulate", "--out", t / "sim", "--config",
                                          text(t, "s.yaml", "voxel_size_A: -1\n")], "voxel_size_A"),
    case("simulate-config-missing", lambda t: ["simulate", "--out", t / "sim", "--config", t / "none.yaml"],
         "not found"),
    case("simulate-zero-n", lambda t: ["simulate", "--out", t / "sim", "--n", "0"], "--n"),
    case("simulate-bad-counts", lambda t: ["simulate", "--out", t / "sim", "--counts", "ribosome:3"], "--counts"),
    case("simulate-bad-format", lambda t: ["simulate", "--out", t / "sim", "--format", "tiff"], "tiff"),
    case("simulate-negative-shape", lambda t: ["simulate", "--out", t / "sim", "--shape", "-4", "32", "32"],
         "shape"),
    case("simulate-bad-imaging", lambda t: ["simulate", "--out", t / "sim", "--imaging", "blurry"], "imaging"),
    case("prompt-train-yaml-syntax", lambda t: ["prompt", "train", text(t, "p.yaml", "a: [\n"), "--out", t / "m.pt"],
         "malformed YAML"),
    case("prompt-train-unknown-key", lambda t: ["prompt", "train", text(t, "p.yaml", PROMPT_TRAIN_OK + "colour: 1\n"),
                                                "--out", t / "m.pt"], "colour"),
    case("prompt-train-bad-value", lambda t: ["prompt", "train", text(t, "p.yaml", "voxel_size_A: -10\n"),
                                              "--out", t / "m.pt"], "voxel_size_A"),
    case("particles-bad-yaml", lambda t: ["particles", text(t, "set.yaml", "particles: [\n")], "YAML"),
    case("particles-bad-radius", lambda t: ["particles", text(t, "set.yaml", "name: s\nparticles:\n"
                                                                             "  - {name: a, radius_A: -5}\n")],
         "radius"),
    case("convert-particles-missing", lambda t: ["convert", picks(t), t / "o.star", "--particles", t / "n.yaml",
                                                 "--voxel-size", "10"], "n.yaml"),
]

CHECKPOINTS = [
    case("pick-model-missing", lambda t: ["pick", tiny(t), "--model", t / "none.pt", "--out", t / "p.csv"],
         "not found"),
    case("pick-model-text", lambda t: ["pick", tiny(t), "--model", checkpoint(t, "text"), "--out", t / "p.csv"],
         "would run code on load: refused"),
    case("pick-model-object", lambda t: ["pick", tiny(t), "--model", checkpoint(t, "object"), "--out", t / "p.csv"],
         "would run code on load: refused"),
    case("pick-model-marker", lambda t: ["pick", tiny(t), "--model", checkpoint(t, "marker"), "--out", t / "p.csv"],
         "not a tomopick checkpoint"),
    case("pick-model-truncated",
         lambda t: ["pick", tiny(t), "--model", checkpoint(t, "truncated"), "--out", t / "p.csv"],
         "not a tomopick checkpoint"),
    case("pick-model-newer", lambda t: ["pick", tiny(t), "--model", checkpoint(t, "newer"), "--out", t / "p.csv"],
         "newer"),
    case("pick-model-mismatch",
         lambda t: ["pick", tiny(t), "--model", checkpoint(t, "mismatch"), "--out", t / "p.csv"], "network"),
    case("pick-model-text-subprocess",
         lambda t: ["pick", tiny(t), "--model", checkpoint(t, "text"), "--out", t / "p.csv"], "refused", **SUB),
    case("calibrate-model-text",
         lambda t: ["calibrate", tiny(t), "--truth", picks(t), "--model", checkpoint(t, "text"), "--out", t / "c.pt"],
         "refused"),
    case("finetune-model-text",
         lambda t: ["finetune", tiny(t), "--prompt", prompt_file(t), "--picks", picks(t), "--model",
                    checkpoint(t, "text"), "--out", t / "f.pt"], None),
    case("train-init-from-text",
         lambda t: ["train", text(t, "c.yaml", TRAIN_OK + f"init_from: {checkpoint(t, 'text')}\n"), "--out", t / "r"],
         "refused"),
]

OPTIONS = [
    case("pick-threshold-text", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--threshold", "high"],
         "--threshold"),
    case("pick-threshold-out-of-range", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--threshold", "7"],
         "threshold"),
    case("pick-roi-two-numbers", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--roi", "64,64"], "--roi"),
    case("pick-roi-too-small", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--roi", "2,2,2"], "--roi"),
    case("pick-peak-method-unknown", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--peak-method", "magic"],
         "magic"),
    case("pick-mode-unknown", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--mode", "magic"], "magic"),
    case("pick-overlap-out-of-range", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--overlap", "1.5"],
         "overlap"),
    case("pick-batch-size-zero", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--batch-size", "0"],
         "--batch-size"),
    case("pick-distance-negative", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--distance", "-1"],
         "--distance"),
    case("pick-adapt-norm-above-one", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--adapt-norm", "2"],
         "--adapt-norm 2.0"),
    case("pick-voxel-size-negative", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--voxel-size", "-10"],
         "--voxel-size"),
    case("pick-unknown-output-format", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--format", "bogus"],
         "bogus"),
    case("pick-tta-with-prompt", lambda t: ["pick", tiny(t), "--out", t / "p.csv", "--prompt", prompt_file(t),
                                            "--tta"], "--tta"),
    case("prompt-extract-at-two-numbers",
         lambda t: ["prompt", "extract", mrc(t), "--at", "1,2", "--out", t / "p.npz"], "--at expects"),
    case("prompt-extract-size-zero",
         lambda t: ["prompt", "extract", mrc(t), "--at", "1,2,3", "--out", t / "p.npz", "--size", "0"], "box"),
    case("convert-levels-zero", lambda t: ["convert", mrc(t), t / "o.zarr", "--levels", "0"], "levels"),
    case("convert-levels-text", lambda t: ["convert", mrc(t), t / "o.zarr", "--levels", "many"], "--levels"),
    case("unknown-option", lambda t: ["convert", picks(t), t / "o.csv", "--colour", "red"], "No such option"),
    case("unknown-option-subprocess", lambda t: ["info", "--colour"], "No such option", **SUB),
    case("missing-argument", lambda t: ["convert", picks(t)], "Missing argument"),
    case("unknown-command", lambda t: ["frobnicate"], "No such command"),
    case("calibrate-beta-zero", lambda t: ["calibrate", tiny(t), "--truth", picks(t), "--out", t / "c.pt",
                                           "--beta", "0"], "beta"),
]

OUTPUTS = [
    case("convert-output-exists", lambda t: ["convert", picks(t), text(t, "o.csv", "keep")], "--overwrite"),
    case("convert-folder-in-place-of-file",
         lambda t: ["convert", picks(t, "p.star", voxel_size_A=10.0), folder(t, "out.csv"), "--overwrite"],
         "will not replace a folder by a file"),
    case("convert-folder-in-place-of-file-subprocess",
         lambda t: ["convert", picks(t, "p.star", voxel_size_A=10.0), folder(t, "out.csv"), "--overwrite"],
         "will not replace a folder", **SUB),
    case("convert-file-in-place-of-zarr-folder", lambda t: ["convert", mrc(t), text(t, "o.zarr", "x"), "--overwrite"],
         "will not replace a file by a folder"),
    case("convert-folder-in-place-of-mrc", lambda t: ["convert", mrc(t), folder(t, "o.mrc"), "--overwrite"],
         "will not replace a folder by a file"),
    case("convert-zarr-exists", lambda t: ["convert", mrc(t), folder(t, "o.zarr")], "--overwrite"),
    case("convert-parent-is-file", lambda t: ["convert", picks(t), text(t, "f", "") / "sub" / "o.csv"],
         "cannot create output folder"),
    case("convert-parent-read-only",
         lambda t: ["convert", picks(t), (folder(t, "ro").chmod(0o555) or t / "ro") / "o.csv"], "not writable",
         marks=NOT_AS_ROOT),
    case("info-is-read-only", lambda t: ["info", picks(t, names=("proteasome",)), "--particles", "czii"],
         "proteasome"),
    case("evaluate-report-exists",
         lambda t: ["evaluate", "--truth", picks(t), "--picks", picks(t, "q.csv"), "--report", folder(t, "rep")],
         "--overwrite"),
    case("evaluate-report-is-a-file",
         lambda t: ["evaluate", "--truth", picks(t), "--picks", picks(t, "q.csv"), "--report", text(t, "rep", "x"),
                    "--overwrite"], "file"),
    case("pick-output-exists", lambda t: ["pick", tiny(t), "--out", text(t, "p.csv", "keep")], "--overwrite"),
    case("pick-output-parent-is-file", lambda t: ["pick", tiny(t), "--out", text(t, "f", "") / "p.csv"],
         "is a file"),
    case("prompt-extract-output-exists",
         lambda t: ["prompt", "extract", mrc(t), "--at", "1,1,1", "--out", text(t, "p.npz", "keep")], "--overwrite"),
    case("prompt-extract-output-folder",
         lambda t: ["prompt", "extract", mrc(t), "--at", "1,1,1", "--out", folder(t, "p.npz"), "--overwrite"],
         "folder"),
    case("simulate-output-is-file", lambda t: ["simulate", "--out", text(t, "sim", "x"), "--n", "1"], "sim"),
    case("simulate-overwrite-file-with-folder",
         lambda t: ["simulate", "--out", text(t, "sim", "x"), "--n", "1", "--overwrite"], "not a folder"),
    case("simulate-output-not-a-simulation", lambda t: ["simulate", "--out", folder(t, "sim"), "--n", "1",
                                                        "--overwrite"], "sim"),
    case("train-output-holds-a-run", lambda t: ["train", text(t, "c.yaml", TRAIN_OK), "--out", train_run(t)],
         "--overwrite"),
    case("train-output-is-file", lambda t: ["train", text(t, "c.yaml", TRAIN_OK), "--out", text(t, "run", "x")],
         "run"),
    case("calibrate-output-exists",
         lambda t: ["calibrate", tiny(t), "--truth", picks(t), "--out", text(t, "c.pt", "keep")], "--overwrite"),
    case("finetune-output-exists",
         lambda t: ["finetune", tiny(t), "--prompt", prompt_file(t), "--picks", picks(t), "--out",
                    text(t, "f.pt", "keep")], "--overwrite"),
]

ALL_CASES = TOMOGRAMS + PICKS + CONFIGS + CHECKPOINTS + OPTIONS + OUTPUTS


# -- the check ---------------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: kind, size, mtime and content hash (files)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.isfile(path) else ""
            out[os.path.relpath(path, root)] = ("file", st.st_size, st.st_mtime_ns, st.st_mode, digest)
    return out


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` with Python's default warning filters: a warning printed to stderr counts as a line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        with pytest.raises(SystemExit) as exc:
            main(argv)
    out = capsys.readouterr()
    err = out.err + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return int(exc.value.code if isinstance(exc.value.code, int) else 1), out.out, err


def run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TOMOPICK_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "tomopick.cli.main", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("argv_of,match,expected_code,sub", ALL_CASES)
def test_bad_input(tmp_path, capsys, monkeypatch, argv_of, match, expected_code, sub):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # relative defaults (e.g. train's output folder) land here too
    monkeypatch.delenv("TOMOPICK_DEBUG", raising=False)
    argv = [str(a) for a in argv_of(work)]
    before = snapshot(work)
    try:
        code, out, err = run_subprocess(argv, work) if sub else run_in_process(argv, capsys)
    finally:
        after = snapshot(work)
        for dirpath, dirnames, _ in os.walk(work):  # undo read-only folders so that pytest can clean up
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
    text_out = (out + err).strip()
    lines = [line for line in text_out.splitlines() if line.strip()]
    assert "Traceback" not in text_out, text_out
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line:\n{text_out}"
    assert code == expected_code, f"exit {code}: {text_out}"
    if match is not None:
        assert match in lines[0], lines[0]
    assert after == before, _describe(before, after)


def _describe(before: dict, after: dict) -> str:
    created = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"created {created}, removed {removed}, changed {changed}"


def test_enough_cases():
    assert len(ALL_CASES) >= 80
    assert sum(1 for c in ALL_CASES if c.values[3]) >= 3  # a few through a real subprocess

