"""The post-training quantization pipeline behind :func:`src.quantlib.quantize`.

Equalise (optional) -> convert -> calibrate -> refine (optional PaC, then optional learned rounding with
block reconstruction), after NVIDIA modelopt's
``mtq.quantize(model, config, forward_loop)``: one call takes a float model and settings and
gives the fake-quantized model. ``eval.py`` (PTQ) and QAT's initialisation both go through it.
"""
import copy

from src.data.calib_data import batches_of
from src.quantlib.calibrate import CalibrationConfig, calibrate
from src.quantlib.equalize import equalize
from src.quantlib.pac import pixel_aware_calibration
from src.quantlib.reconstruct import reconstruct


# Eight parameters: the model, its copy and the log are not settings; the settings are already
# grouped into the four dataclasses, one per stage.
def quantize(fp_net, qcfg, patches, calib=None, pac=None, qnet=None, log=None, recon=None):
    """The quantized model of ``fp_net``.

    - ``fp_net``: the float model (deploy form); with ``calib.equalize`` it is equalised in place
      (its float function is unchanged, exactly in real arithmetic), so it stays the reference.
    - ``qcfg``: :class:`~src.quantlib.quant_layers.QuantConfig` (bit widths, scopes).
    - ``patches``: float32 array (N, n_colors, h, w), unlabeled LR images in [0, 1]; calibrated on
      in batches of ``calib.batch`` and drawn from by PaC.
    - ``calib``: :class:`~src.quantlib.calibrate.CalibrationConfig` (observer method and options;
      default DBDC).
    - ``pac``: :class:`~src.quantlib.pac.PaCConfig` to refine the bounds with pixel-aware
      calibration against ``fp_net``, or None.
    - ``qnet``: a second float copy of the model to quantize in place (e.g. loaded from the same
      checkpoint); None: a deep copy of ``fp_net``.
    - ``log``: ``log(str)`` for progress lines, or None.
    - ``recon``: :class:`~src.quantlib.reconstruct.ReconConfig` to fit the weights' rounding and the
      activation bounds block by block against ``fp_net`` after calibration (and PaC), or None.

    Returns the quantized model (``qnet`` when given). ``ValueError`` for an unknown method, a
    scope pattern matching no layer, a model without conv pairs to equalise, or layer mismatches.
    """
    calib = calib or CalibrationConfig()
    log = log or (lambda *_: None)
    qnet = copy.deepcopy(fp_net) if qnet is None else qnet
    batches = batches_of(patches, int(calib.batch))
    if calib.equalize and calib.equalize_if_pairs and not list(fp_net.equalization_pairs()):
        log(f"{type(fp_net).__name__} declares no conv pairs to equalise: calibrating without equalisation")
    elif calib.equalize:
        scales = equalize(fp_net, batches, others=(qnet,))
        log(f"equalised the activation ranges of {len(scales)} conv pairs")
    calibrate(qnet, batches, calib, qcfg)
    if pac is not None:
        pixel_aware_calibration(qnet, fp_net, patches, pac, log=log)
    if recon is not None:
        reconstruct(qnet, fp_net, patches, recon, log=log)
    return qnet


__all__ = ["quantize"]
