"""Promptable picking (ProPicker's approach): pick any particle from one example.

A *prompt* is a small sub-tomogram around one particle (:mod:`tomopick.prompt.promptfile`); a prompt encoder
(3D CNN, deep metric learning) maps it to a 32-d embedding that conditions the decoder of a FiLM U-Net
(:mod:`tomopick.prompt.networks`), which segments every copy of that particle in a tomogram
(:mod:`tomopick.prompt.picking`); :mod:`tomopick.prompt.training` trains both on simulated data.
The network ``"promptable-film-unet"`` is named in the model registry (``tomopick.models.registry.LAZY_BUILDERS``),
which imports :mod:`tomopick.prompt.networks` when it first builds one: a promptable checkpoint loads anywhere.
"""
