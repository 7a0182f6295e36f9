"""Published x3 numbers of ABPN / ETDS / ECBSR from ../shared weights converted by the project."""
import os

import pytest

from conftest import requires_shared, shared_dir
from model_utils.config import get_config
from src.weights.convert_cli import main as convert_main
from src.engine.evaluate import run_evaluation

PUBLISHED = {  # (file, model, variant): (Set5, Set14) PSNR on Y, x3
    ("ABPN_M4C28_x3.pth", "abpn", "M4C28"): (33.53, 29.78),
    ("ETDS_M4C32_x3.pth", "etds", "M4C32"): (33.49, 29.76),
    ("ECBSR_M4C16_x3.pth", "ecbsr", "M4C16"): (33.07, 29.53),
}


@requires_shared
@pytest.mark.parametrize("key", list(PUBLISHED), ids=[k[1] for k in PUBLISHED])
def test_published_psnr_reproduced(tmp_path, key):
    fname, model, variant = key
    ckpt = str(tmp_path / f"{model}.ckpt")
    src = os.path.join(shared_dir(), "weights", "etds_repo_x3", fname)
    assert convert_main(["--src", src, "--dst", ckpt, "--model", model, "--variant", variant, "--scale", "3"]) == 0
    cfg = get_config(["--model", model, "--variant", variant, "--scale", "3", "--pre_trained", ckpt,
                      "--data_path", os.path.join(shared_dir(), "data"), "--eval_datasets", "Set5,Set14",
                      "--cache_dir", str(tmp_path / "cache"), "--output_path", str(tmp_path)])
    report = run_evaluation(cfg, log=lambda *_: None)
    for set_name, published in zip(("Set5", "Set14"), PUBLISHED[key]):
        got = report["results"][set_name]
        assert abs(got["psnr"] - published) <= 0.02, (set_name, got["psnr"], published)
        assert 0.8 < got["ssim"] < 0.95
