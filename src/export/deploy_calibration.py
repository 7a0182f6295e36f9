"""The deployment sites of a network and their calibration: its mobile float graph is built
(:func:`src.export.onnx.profiles.build_onnx`) and read by :func:`src.export.deploy_sites.find_sites`."""
import numpy as np

from src.export.deploy_sites import DeployUnsupported, find_sites
from src.export.onnx.profiles import build_onnx
from src.data.calib_data import batches_of
from src.quantlib.calibrate import CalibrationConfig
from src.quantlib.deploy import calibrate_sites, install_sites
from src.quantlib.observers import observer_class


def deploy_sites(fp_net, example):
    """The Site list of the float deploy-form ``fp_net`` (traced in the mobile profile at the NCHW
    float32 ``example``'s shape). :class:`DeployUnsupported` for a graph the simulation cannot
    express or the mobile profile cannot build (then no full-integer file exists either)."""
    try:
        model = build_onnx(fp_net, None, np.ascontiguousarray(example[:1], np.float32), "mobile", "none")
    except ValueError as exc:
        raise DeployUnsupported(f"no mobile graph: {str(exc).splitlines()[0]}") from None
    return [site for site, _ in find_sites(model, fp_net)]


def calibrate_missing_grids(fp_net, q_net, patches, method="dbdc"):
    """Install the deployment sites of ``fp_net`` in the 8-bit quantized ``q_net`` (a checkpoint calibrated
    with PTQ4SR's placement) and calibrate them on ``patches`` (float32 (N, C, h, w) LR in [0, 1]) with the
    ``method`` observer; conv bounds are kept. Returns how many sites got bounds."""
    sites = deploy_sites(fp_net, patches[:1])
    install_sites(q_net, sites)
    calib = CalibrationConfig(method)
    bounds = calibrate_sites(q_net, batches_of(patches, calib.batch),
                             lambda _site: observer_class(method).from_settings(8, calib), fp_net)
    return len(bounds)
