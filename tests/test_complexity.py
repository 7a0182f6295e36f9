import os
import subprocess
import sys

import pytest

from conftest import ROOT
from src.models.complexity import count
from src.models.registry import create_model

# Published SESR table (x2, 360x640 -> 720p): collapsed weights and MACs.
PUBLISHED = {"M5": (13_520, 3.11e9), "M11": (27_344, 6.30e9), "XL": (105_376, 24.28e9)}


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_sesr_counts_match_paper(variant):
    c = count(create_model("sesr", variant, 2), (360, 640))
    weights, macs = PUBLISHED[variant]
    assert c.weights == weights
    assert abs(c.conv_macs - macs) / macs < 0.005
    assert c.conv_macs == weights * 360 * 640 and c.adder_macs == 0


def test_energy_and_adder_counts():
    conv = count(create_model("sesr", "M5", 2), (360, 640))
    assert conv.energy_mj("fp32") == pytest.approx(conv.conv_macs * (3.7 + 0.9) * 1e-9)
    assert conv.energy_mj("int8") == pytest.approx(conv.conv_macs * (0.2 + 0.03) * 1e-9)
    adder = count(create_model("sesr", "M5", 2, linear_block_type="collapsed_adder"), (360, 640))
    assert adder.adder_macs == 5 * 16 * 16 * 9 * 360 * 640
    assert adder.multiplications == (25 * 16 + 25 * 16 * 4) * 360 * 640
    assert adder.additions == adder.conv_macs + 2 * adder.adder_macs
    assert adder.energy_mj("fp32") < conv.energy_mj("fp32")


def test_count_handles_non_multiple_of_8_and_hr_convs():
    edsr = count(create_model("edsr", "baseline", 4), (20, 30))
    # the second x4 upsampler conv and conv_last run at higher resolution
    expected = ((9 * 3 * 64) + 33 * 9 * 64 * 64 + 9 * 64 * 256) * 600 + 9 * 64 * 256 * 2400 + 9 * 64 * 3 * 9600
    assert edsr.conv_macs == expected


def test_model_summary_script():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "model_summary.py"), "--model", "sesr",
                           "--variant", "M5", "--scale", "2", "--input_size", "360,640"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = [l for l in proc.stdout.splitlines() if l.startswith("sesr")][0]
    assert "13.52K" in row and "3.115G" in row
