"""Quantization library (fake-quant PTQ and QAT for SR networks; PTQ4SR placement).

Public API:

- :func:`quantize` (``pipeline.py``): float model + :class:`QuantConfig` + calibration patches
  (+ :class:`CalibrationConfig`, optional :class:`PaCConfig`) -> fake-quantized model: optional
  cross-layer equalisation (``equalize.py``), conversion (``quant_layers.py``), calibration by
  an observer (``calibrate.py``, ``observers.py``: MinMax, percentile, OMSE, DBDC) and optional
  pixel-aware calibration (``pac.py``; each step a compiled graph, ``pac_step.py``). ``eval.py`` (PTQ, ``--quant_method``; ``dbdc_pac`` is
  DBDC + PaC), QAT's initialisation (``train.py --qat True``) and ``scripts/ptq_sweep.py``
  all go through it.
- :func:`reconstruct` (``reconstruct.py``): learned rounding (AdaRound) and activation bounds fitted
  block by block to the float model (BRECQ, QDrop); ``quantize(..., recon=ReconConfig())``, ``eval.py
  --quant_method dbdc_recon``.
- :class:`FakeQuant` (``fake_quant.py``): the quantizer with learnable bounds (LSQ gradients),
  on the affine grid of ``grid.py`` (step, zero point, clamp; numpy and MindSpore forms),
  which the exporters also use for their integer tensors.
- :func:`restrict_quantization` (``calibrate.py``): a calibrated model with only the quantizers a
  :class:`QuantConfig` keeps switched on (one calibration, any per-layer subset; used by
  ``scripts/quant_sensitivity.py``).
- ``calib_data.py``: unlabeled calibration patches from an image folder.
- ``recipes``: the settings ``dbdc_pac`` uses per bit width when its options are left at ``auto``.
"""
from src.quantlib.calibrate import CalibrationConfig, restrict_quantization
from src.quantlib.fake_quant import FakeQuant
from src.quantlib.observers import OBSERVERS
from src.quantlib.pac import PaCConfig
from src.quantlib.pipeline import quantize
from src.quantlib.quant_layers import QuantConfig
from src.quantlib.reconstruct import ReconConfig, reconstruct
from src.quantlib import recipes  # per-bit-width defaults of the calibration options

__all__ = ["quantize", "QuantConfig", "CalibrationConfig", "PaCConfig", "FakeQuant", "OBSERVERS", "recipes", "ReconConfig", "reconstruct",
           "restrict_quantization"]
