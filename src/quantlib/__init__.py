"""Quantization library: fake quantizers, calibrators (observers) and model conversion.

Status: fake quantizers, MinMax / percentile / OMSE / DBDC calibration and
``quantize_model`` are implemented and unit-tested; pixel-aware calibration
(PaC), QAT, the eval.py integration and the PTQ sweep are not written yet.
"""
