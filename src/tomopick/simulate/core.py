"""``simulate_tomogram``: scene → imaging → a :class:`SimulationResult` (pure; no file I/O)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tomopick.data import ParticleSet, Picks, Tomogram, get_particle_set
from tomopick.simulate import imaging as im
from tomopick.simulate.config import SimulationConfig, randomized_config
from tomopick.simulate.scene import ICE_DENSITY, Scene, build_scene


@dataclass
class SimulationResult:
    """One simulated tomogram and its ground truth (arrays ``(z, y, x)`` of ``config.shape_zyx``).

    Attributes
    ----------
    tomogram
        float32 reconstruction, protein dark, standardised (mean 0, std 1).
    picks
        Ground truth: one row per particle with position (Å), orientation, ``run`` and ``instance_id``.
    instance_labels
        int32; 0 = background, ``k`` on the mask of the particle whose ``instance_id`` is ``k``.
    class_labels
        uint8; ``ParticleSpec.label`` on each particle's mask, 0 elsewhere.
    noiseless
        float32 specimen potential (protein bright, contrast units) or None (``keep_noiseless=False``).
    signal
        float32 noise-free reconstruction on the tomogram's scale (``tomogram − signal`` is the noise) or None.
    slab_mask, occupied
        Boolean volumes (kept with ``keep_noiseless``): inside the ice; covered by any object.
    segmentation, segmentation_instances
        With ``config.context``: uint8 semantic labels (0 background, 1 membrane, 2 lumen, 3 gold, 4 carbon;
        :data:`~tomopick.simulate.context.SEGMENT_CLASSES`) and int32 compartment instance ids; else None. The
        picks then carry ``compartment_id``, ``compartment_class`` and ``membrane_bound`` columns.
    params
        Every parameter (the config, the seed actually used, drawn values such as defocus and ice geometry,
        requested/placed counts, measured SNR, timings).
    particle_set
        The particle classes simulated.
    """

    tomogram: Tomogram
    picks: Picks
    instance_labels: np.ndarray
    class_labels: np.ndarray
    noiseless: np.ndarray | None
    params: dict[str, Any]
    particle_set: ParticleSet
    signal: np.ndarray | None = None
    slab_mask: np.ndarray | None = field(default=None, repr=False)
    occupied: np.ndarray | None = field(default=None, repr=False)
    segmentation: np.ndarray | None = field(default=None, repr=False)
    segmentation_instances: np.ndarray | None = field(default=None, repr=False)


SNR_DEFINITION = {
    "particles": "mean over particle-mask voxels of (noise-free tomogram - mean of empty ice)^2 / noise variance "
                 "in the ice",
    "slab": "variance of the noise-free tomogram in the ice / noise variance in the ice (scene without particles)",
}


def particle_signal_power(signal: np.ndarray, scene: Scene, slab: np.ndarray) -> tuple[float, str]:
    """Signal power that the SNR refers to.

    With particles: the mean squared contrast of ``signal`` over the particle masks relative to the mean of the
    empty ice (slab voxels not covered by any object) — independent of how many particles, vesicles or gold beads
    the scene holds. Without particles: the variance of ``signal`` inside the ice.

    Returns
    -------
    power, reference
        The power and ``"particles"`` or ``"slab"``.
    """
    inside = scene.instance_labels > 0
    if inside.any():
        empty = slab & ~scene.occupied if scene.occupied is not None else slab & ~inside
        if empty.any():
            m_bg, _ = im.masked_mean_var(signal, empty)
            m_in, v_in = im.masked_mean_var(signal, inside)
            return v_in + (m_in - m_bg) ** 2, "particles"
    _, v = im.masked_mean_var(signal, slab)
    return v, "slab"


def _seed_from(config: SimulationConfig, seed_or_rng: int | np.random.Generator | None) -> int:
    if seed_or_rng is None:
        return int(config.seed)
    if isinstance(seed_or_rng, np.random.Generator):
        return int(seed_or_rng.integers(0, 2**63 - 1))
    return int(seed_or_rng)


def _tilt_scheme(config: SimulationConfig, scene: Scene, rng: np.random.Generator) -> tuple[Any, float]:
    """The tilt series geometry and dose (ice thickness from the scene) and the defocus (µm) drawn or given."""
    vs = float(config.voxel_size_A)
    thickness_A = (scene.context["ice"]["thickness_A"] if scene.context.get("ice") else
                   config.shape_zyx[0] * vs)
    defocus_um = (config.defocus_um if config.defocus_um is not None
                  else float(rng.uniform(*config.defocus_range_um)))
    scheme = im.make_tilt_scheme(config.tilt_angles_deg, config.total_dose, defocus_um * 1e4,
                                 config.defocus_spread_um * 1e4, thickness_A, config.inelastic_mfp_A, vs, rng,
                                 alignment_error_A=config.alignment_error_A)
    return scheme, defocus_um


def _image_scene(config: SimulationConfig, scene: Scene, scheme: Any,
                 noise_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(signal, noise)`` reconstructions of the scene's potential with the ``fast`` or ``full`` imaging model."""
    vs = float(config.voxel_size_A)
    kw = dict(voltage_kV=config.voltage_kV, cs_mm=config.cs_mm, amplitude_contrast=config.amplitude_contrast,
              b_factor_A2=config.b_factor_A2, ctf_correction=config.ctf_correction, lowpass_A=config.lowpass_A,
              rng=noise_rng)
    if config.imaging == "fast":
        return im.image_fast(scene.potential, vs, scheme, **kw)
    return im.image_full(scene.potential, ICE_DENSITY, vs, scheme, **kw)


def _mix_at_snr(signal: np.ndarray, noise: np.ndarray, scene: Scene, slab: np.ndarray, snr: float,
                keep_noiseless: bool) -> tuple[np.ndarray, np.ndarray | None, str, float]:
    """Scale the noise to ``snr``, add the signal and standardise (in place, reusing ``noise``).

    Returns
    -------
    tomogram, signal, reference, measured
        The standardised tomogram; the signal on its scale (None unless ``keep_noiseless``); the SNR reference
        (see :func:`particle_signal_power`) and the SNR measured after scaling.
    """
    _, var_noise = im.masked_mean_var(noise, slab)
    signal_power, reference = particle_signal_power(signal, scene, slab)
    scale = np.sqrt(signal_power / (snr * var_noise)) if var_noise > 0 and signal_power > 0 else 0.0
    noise *= np.float32(scale)
    noise += signal  # noise now holds the tomogram
    tomo = noise
    mean, var = im.masked_mean_var(tomo, None)
    sd = np.sqrt(var) if var > 0 else 1.0
    tomo -= np.float32(mean)
    tomo /= np.float32(sd)
    measured = signal_power / (var_noise * scale * scale) if scale else float("inf")
    if keep_noiseless:
        signal -= np.float32(mean)
        signal /= np.float32(sd)
        return tomo, signal, reference, measured
    return tomo, None, reference, measured


def simulate_tomogram(config: SimulationConfig | None = None, seed_or_rng: int | np.random.Generator | None = None,
                      *, particle_set: ParticleSet | None = None) -> SimulationResult:
    """Simulate one tomogram with ground truth.

    Parameters
    ----------
    config
        All parameters (default: a CZII-like 184 × 630 × 630 tomogram at 10.012 Å, fast imaging).
    seed_or_rng
        An int seed, or a generator from which one seed is drawn (recorded in ``params["seed"]``); None uses
        ``config.seed``. Same seed and config → bit-identical arrays.
    particle_set
        Overrides ``config.particles`` (a preset name or YAML path) with an in-memory set.

    Returns
    -------
    SimulationResult
    """
    config = SimulationConfig() if config is None else config
    seed = _seed_from(config, seed_or_rng)
    pset = particle_set if particle_set is not None else get_particle_set(config.particles)
    # independent streams: the scene does not change when only imaging parameters change
    children = np.random.SeedSequence(seed).spawn(4)
    scene_rng, imaging_rng, noise_rng = (np.random.default_rng(s) for s in children[:3])
    requested = config
    randomized: dict[str, Any] = {}
    if config.randomize:
        config, randomized = randomized_config(config, np.random.default_rng(children[3]))
    t0 = time.perf_counter()
    scene: Scene = build_scene(config, pset, scene_rng)
    t_scene = time.perf_counter() - t0

    vs = float(config.voxel_size_A)
    scheme, defocus_um = _tilt_scheme(config, scene, imaging_rng)
    t1 = time.perf_counter()
    signal, noise = _image_scene(config, scene, scheme, noise_rng)
    t_imaging = time.perf_counter() - t1

    snr = (float(np.exp(imaging_rng.uniform(*np.log(config.snr_range)))) if config.snr_range is not None
           else float(config.snr))
    slab = scene.slab_mask()
    tomo, signal, reference, measured = _mix_at_snr(signal, noise, scene, slab, snr, config.keep_noiseless)

    params: dict[str, Any] = {
        "config": config.model_dump(mode="json"),
        "seed": seed,
        "randomized": randomized,
        "requested_config": requested.model_dump(mode="json", exclude_unset=True) if randomized else None,
        "particle_set": pset.model_dump(mode="json", exclude_none=True),
        "defocus_um": defocus_um,
        "tilt_angles_deg": [float(a) for a in scheme.angles_deg],
        "defocus_per_tilt_um": [float(d) / 1e4 for d in scheme.defocus_true_A],
        "alignment_shift_per_tilt_A": [[float(v) * vs for v in row] for row in scheme.shifts_vox],
        "snr": snr,
        "snr_reference": reference,
        "snr_definition": SNR_DEFINITION[reference],
        "snr_measured": float(measured),
        "scene": scene.context,
        "timings_s": {"scene": round(t_scene, 3), "imaging": round(t_imaging, 3)},
        "version": __import__("tomopick").__version__,
    }
    tomogram = Tomogram(tomo, (vs, vs, vs), source=f"simulated:{config.run_name}",
                        metadata={"run": config.run_name, "simulated": True, "seed": seed})
    return SimulationResult(
        tomogram=tomogram, picks=scene.picks, instance_labels=scene.instance_labels,
        class_labels=scene.class_labels, noiseless=scene.potential if config.keep_noiseless else None,
        params=params, particle_set=pset, signal=signal, slab_mask=slab if config.keep_noiseless else None,
        occupied=scene.occupied if config.keep_noiseless else None,
        segmentation=scene.segmentation, segmentation_instances=scene.segmentation_instances,
    )
