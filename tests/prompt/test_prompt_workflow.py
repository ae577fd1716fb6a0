"""The commands end to end on a tiny scene: prompt extract (CLI), pick with prompts, fine-tune, train recipe."""

from __future__ import annotations

import numpy as np
import pytest

from prompt_fixtures import POSITIONS, ball_rod_scene
from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError

VS = 10.0  # Å per voxel of the test scene and the tiny model


def run_cli(args: list[str]) -> int:
    """``tomopick ARGS`` in-process; returns the exit status."""
    from tomopick.cli.main import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """The ball/rod scene (seed 10) as MRC + its ground truth."""
    from tomopick.io import write_tomogram

    folder = tmp_path_factory.mktemp("prompt_wf")
    scene = ball_rod_scene(10)
    path = write_tomogram(Tomogram.from_array(scene.volume * 3.0 + 7.0, VS), folder / "scene10.mrc")
    return folder, path, scene


@pytest.fixture(scope="module")
def checkpoint(trained_tiny, tmp_path_factory):
    from tomopick.models import save_checkpoint
    from tomopick.workflows.prompt import promptable_config

    cfg = promptable_config({"embed_dim": 8, "encoder_channels": [4, 8, 16], "unet_channels": [4, 8, 16]},
                            voxel_size_A=VS, prompt_box=17, patch_size=(24, 24, 24))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", trained_tiny[0], cfg)


def test_prompt_extract_cli_cuts_the_exact_normalised_box(scene_files, capsys):
    from tomopick.inference.normalize import normalize_robust
    from tomopick.prompt.promptfile import read_prompt

    folder, mrc, scene = scene_files
    out = folder / "p.npz"
    assert run_cli(["prompt", "extract", str(mrc), "--at", "80,80,80", "--size", "17", "--voxel-size", "10",
                    "--out", str(out), "--radius", "40"]) == 0
    p = read_prompt(out)
    assert "wrote" in capsys.readouterr().out
    # centre voxel (8, 8, 8) with a 17³ box at the tomogram's own voxel size = voxels 0…16, globally normalised
    expected = normalize_robust(scene.volume * 3.0 + 7.0)[:17, :17, :17]
    assert np.allclose(p.subtomogram, expected, atol=1e-5)
    assert p.xyz_A.tolist() == [80.0, 80.0, 80.0] and p.particle == "p" and p.meta["radius_A"] == 40.0
    # --voxels gives the same prompt; outside the tomogram is a one-line error (exit 2)
    assert run_cli(["prompt", "extract", str(mrc), "--at", "8,8,8", "--voxels", "--size", "17",
                    "--out", str(folder / "v.npz")]) == 0
    assert np.array_equal(read_prompt(folder / "v.npz").subtomogram, p.subtomogram)
    assert run_cli(["prompt", "extract", str(mrc), "--at", "9000,0,0", "--out", str(folder / "x.npz")]) == 2
    assert "outside the tomogram" in capsys.readouterr().err


def test_pick_with_prompts_finds_the_particles(scene_files, checkpoint):
    from tomopick.io import read_picks
    from tomopick.workflows.prompt import extract_prompt, pick_with_prompts

    folder, mrc, scene = scene_files
    rod = int(np.flatnonzero(scene.kinds == 1)[0])
    z, y, x = POSITIONS[rod]
    prompt = extract_prompt(mrc, (x * VS, y * VS, z * VS), folder / "rod.npz", size=17, radius_A=40.0,
                            particle="rod", overwrite=True)
    out = folder / "picks.csv"
    picks = pick_with_prompts(mrc, [prompt], model=checkpoint, out=out, method="cc", threshold=0.5, roi=16,
                              stride=8, overwrite=True)
    assert picks.particles == ["rod"] and set(picks.runs) == {"scene10"}
    truth = np.asarray(POSITIONS, dtype=float)[:, ::-1] * VS  # x, y, z in Å
    d = np.linalg.norm(picks.xyz_A[:, None] - truth[None], axis=2)
    # every pick sits on a particle (within 15 Å = 1.5 voxels) and the prompted rods are all found
    assert np.all(d.min(axis=1) <= 15.0)
    rods = np.flatnonzero(scene.kinds == 1)
    assert np.all(d[:, rods].min(axis=0) <= 15.0)
    assert np.all((picks.scores >= 0.5) & (picks.scores <= 1.0))
    back = read_picks(out)
    assert np.allclose(back.xyz_A, picks.xyz_A, atol=1e-3)
    # local maxima give the same particles
    lm = pick_with_prompts(mrc, [prompt], model=checkpoint, method="localmax", threshold=0.5, roi=16, stride=8,
                           out=f"{folder}/per_run/", overwrite=True)
    assert np.all(np.linalg.norm(lm.xyz_A[:, None] - truth[None], axis=2).min(axis=1) <= 15.0)
    assert len(read_picks(folder / "per_run" / "scene10.csv")) == len(lm)


def test_pick_cli_with_prompt_dispatches_to_the_promptable_picker(scene_files, checkpoint, capsys):
    from tomopick.io import read_picks
    from tomopick.workflows.prompt import extract_prompt

    folder, mrc, scene = scene_files
    ball = int(np.flatnonzero(scene.kinds == 0)[0])
    z, y, x = POSITIONS[ball]
    prompt = extract_prompt(mrc, (x * VS, y * VS, z * VS), folder / "ball.npz", size=17, particle="ball",
                            overwrite=True)
    out = folder / "cli_picks.csv"
    assert run_cli(["pick", "--prompt", str(prompt), "--model", str(checkpoint), str(mrc), "--out", str(out),
                    "--roi", "16", "--stride", "8", "--radius", "40", "-t", "ball=0.5", "--quiet"]) == 0
    picks = read_picks(out)
    assert picks.particles == ["ball"] and f"{len(picks)} picks written" in capsys.readouterr().out
    truth = np.asarray(POSITIONS, dtype=float)[:, ::-1] * VS
    assert np.all(np.linalg.norm(picks.xyz_A[:, None] - truth[None], axis=2).min(axis=1) <= 15.0)
    assert run_cli(["pick", "--prompt", str(prompt), "--model", str(checkpoint), str(mrc), "--out",
                    str(folder / "x.csv"), "--tta"]) == 2
    assert "not supported with --prompt" in capsys.readouterr().err


def test_pick_errors_are_one_line(scene_files, checkpoint, tmp_path):
    from tomopick.workflows.prompt import pick_with_prompts

    _, mrc, _ = scene_files
    with pytest.raises(TomopickError, match="no prompts"):
        pick_with_prompts(mrc, [], model=checkpoint)
    with pytest.raises(TomopickError, match="ships no promptable model|missing"):
        pick_with_prompts(mrc, [tmp_path / "p.npz"], model=None)


def test_finetune_writes_a_checkpoint_with_its_card(scene_files, checkpoint):
    from tomopick.io import write_picks
    from tomopick.models import load_checkpoint
    from tomopick.workflows.prompt import extract_prompt

    folder, mrc, scene = scene_files
    rods = scene.centres_zyx_vox[scene.kinds == 1]
    picks_path = write_picks(Picks.from_voxels(rods, VS, "rod", run="scene10"), folder / "few.csv", overwrite=True)
    z, y, x = rods[0]
    prompt = extract_prompt(mrc, (x * VS, y * VS, z * VS), folder / "rod2.npz", size=17, particle="rod",
                            overwrite=True)
    out = folder / "ft.pt"
    assert run_cli(["finetune", str(mrc), "--prompt", str(prompt), "--picks", str(picks_path), "--model",
                    str(checkpoint), "--out", str(out), "--steps", "3", "--patch", "24", "--radius", "40"]) == 0
    card = load_checkpoint(out).card["finetuned"]
    assert card["n_picks"] == 4 and card["steps"] == 3 and card["particle"] == "rod"


def test_train_recipe_smoke(tmp_path):
    """The whole recipe with tiny settings: checkpoint, model card with held-out metrics, half-precision weights."""
    import yaml

    from tomopick.models import load_checkpoint
    from tomopick.prompt.recipe import PromptTrainConfig
    from tomopick.workflows.prompt import train_promptable

    raw = {
        "prompt_box": 17, "embed_dim": 8, "encoder_channels": [4, 8], "unet_channels": [4, 8], "threads": 1,
        "kinds": ["sphere:40", "rod:120,25", "shell:60"], "held_out": ["ellipsoid:60,40,30", "dumbbell:60"],
        "encoder": {"steps": 2, "kinds_per_batch": 3, "views_per_kind": 2},
        "segmenter": {"steps": 2, "patch": 16, "batch": 1, "prompts_per_patch": 2, "prompts_per_kind": 2,
                      "scenes": {"n_tomograms": 1, "shape_zyx": [24, 48, 48], "kinds_per_tomogram": 3,
                                 "count_per_kind": [2, 3], "n_vesicles": 0, "n_fiducials": 0, "n_clutter": 0}},
        "evaluation": {"n_tomograms": 1, "n_seen_kinds": 2, "roi": 16, "stride": 16, "thresholds": [0.5],
                       "scenes": {"n_tomograms": 1, "shape_zyx": [24, 48, 48], "count_per_kind": [2, 2],
                                  "n_vesicles": 0, "n_fiducials": 0, "n_clutter": 0}},
    }
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = train_promptable(cfg_path, tmp_path / "m.pt")
    loaded = load_checkpoint(out)
    card = loaded.card
    assert card["held_out_kinds"] == ["ellipsoid:60,40,30", "dumbbell:60"]
    assert set(card["metrics"]["held_out"]) <= {"ellipsoid:60,40,30", "dumbbell:60"}
    assert all(0.0 <= v <= 1.0 for v in card["metrics"]["f1"].values())
    assert loaded.config["trained_kinds"] == raw["kinds"] and loaded.config["prompt"]["box"] == 17
    # continue from it: encoder untouched (0 steps), segmenter trained further
    raw2 = {**raw, "init_checkpoint": str(out), "encoder": {**raw["encoder"], "steps": 0},
            "evaluation": {**raw["evaluation"], "n_tomograms": 0}}
    out2 = train_promptable(_write(tmp_path / "r2.yaml", raw2), tmp_path / "m2.pt")
    again = load_checkpoint(out2).model
    import torch

    assert all(torch.equal(v, loaded.model.encoder.state_dict()[k]) for k, v in again.encoder.state_dict().items())
    assert any(not torch.equal(v, loaded.model.segmenter.state_dict()[k])
               for k, v in again.segmenter.state_dict().items() if v.is_floating_point())
    with pytest.raises(TomopickError, match="at least two"):
        PromptTrainConfig.from_yaml(_write(tmp_path / "bad.yaml", {**raw, "held_out": ["dumbbell:60"]}))


def _write(path, raw):
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return path
