"""Every generated table in README.md and docs/ is what its script writes from its JSON, and every block is
covered here or by the test named in BLOCK_TESTS (a new block without a test fails)."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT

# block name -> the test that regenerates it from its JSON and compares
BLOCK_TESTS = {
    "zoo": "test_readme_zoo_phone_and_published_blocks_are_their_json",
    "phone_path": "test_readme_zoo_phone_and_published_blocks_are_their_json",
    "published": "test_readme_zoo_phone_and_published_blocks_are_their_json",
    "options": "test_the_option_list_is_generated_from_the_declarations",
    "head_to_head": "tests/test_third_party_files.py::test_head_to_head_docs_and_readme_block_are_written_from_the_json",
    "head_to_head_summary": "tests/test_third_party_files.py::test_head_to_head_docs_and_readme_block_are_written_from_the_json",
    "ptq_zoo": "tests/test_third_party_files.py::test_zoo_and_memory_tables_in_docs_and_readme_are_written_from_their_json",
    "infer_memory": "tests/test_third_party_files.py::test_zoo_and_memory_tables_in_docs_and_readme_are_written_from_their_json",
    "deploy_zoo": "tests/test_deploy.py::test_the_reported_equals_shipped_tables_are_their_json",
    "sweep": "tests/test_bad_input_sweep.py::test_the_reliability_table_is_the_last_full_run",
}
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _blocks(path):
    return re.findall(r"<!-- ([a-z_]+):begin -->", open(path, encoding="utf-8").read())


def test_every_generated_block_has_a_test_that_regenerates_it():
    found = {name for path in DOCS for name in _blocks(path)}
    assert found and found <= set(BLOCK_TESTS), sorted(found - set(BLOCK_TESTS))
    assert {"zoo", "phone_path"} <= set(_blocks(os.path.join(ROOT, "README.md")))


def test_readme_zoo_phone_and_published_blocks_are_their_json(tmp_path):
    readme, evaluation = tmp_path / "README.md", tmp_path / "evaluation.md"
    shutil.copy(os.path.join(ROOT, "README.md"), readme)
    shutil.copy(os.path.join(ROOT, "docs", "evaluation.md"), evaluation)
    for path in (readme, evaluation):  # empty the blocks first: the script must write them back whole
        text = path.read_text(encoding="utf-8")
        for name in ("zoo", "phone_path", "published"):
            text = re.sub(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", r"\1\2", text, flags=re.S)
        path.write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "zoo_table.py"), "--table",
                           "--out", os.path.join(ROOT, "docs", "zoo.json"),
                           "--phone_out", os.path.join(ROOT, "docs", "phone_abpn_x3.json"),
                           "--readme", str(readme), "--evaluation_md", str(evaluation),
                           "--deploy_zoo", os.path.join(ROOT, "docs", "deploy_zoo.json")],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert readme.read_text(encoding="utf-8") == open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert evaluation.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "evaluation.md"),
                                                          encoding="utf-8").read()
    zoo = json.load(open(os.path.join(ROOT, "docs", "zoo.json"), encoding="utf-8"))
    assert zoo["command"] in readme.read_text(encoding="utf-8")
    assert all(r["xnnpack"]["partitions"] == 1 and r["latency_ms"] > 0 for r in zoo["rows"])
    phone = json.load(open(os.path.join(ROOT, "docs", "phone_abpn_x3.json"), encoding="utf-8"))
    assert phone["command"] in readme.read_text(encoding="utf-8")
    tflite = phone["summary"]["files"][0]
    # the phone path's reported PSNR is its file's (the deployment model), within 0.01 dB
    for name, (psnr, _) in tflite["psnr_ssim"].items():
        assert abs(psnr - phone["summary"]["quantized"][name][0]) <= 0.01


def test_the_option_list_is_generated_from_the_declarations(tmp_path):
    from model_utils.options_doc import main
    doc = tmp_path / "configuration.md"
    shutil.copy(os.path.join(ROOT, "docs", "configuration.md"), doc)
    assert main([str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == open(os.path.join(ROOT, "docs", "configuration.md"),
                                                   encoding="utf-8").read()
    from model_utils.config import DEFAULT_CONFIG, load_yaml
    cfg, _, _ = load_yaml(DEFAULT_CONFIG)
    text = doc.read_text(encoding="utf-8")
    assert all(f"| `--{key}` |" in text for key, value in cfg.items() if not isinstance(value, dict) or key)


def test_the_readme_is_a_front_door():
    """At most 300 lines; no commit hashes, CI timings or issue numbers in README or docs/."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(readme.splitlines()) <= 300
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        assert not re.search(r"\bcommit [0-9a-f]{7,}\b", text), path
        assert not re.search(r"\bissue #?\d+\b", text, flags=re.I), path
        assert not re.search(r"\bCI\b[^.\n]{0,40}\b\d+(\.\d+)? ?(s|min|minutes|seconds)\b", text), path


def test_the_deployment_sensitivity_tables_are_their_json():
    from src.engine.deploy_sensitivity import sensitivity_table
    found = sorted(glob.glob(os.path.join(ROOT, "docs", "deploy_sensitivity_*.json")))
    assert found
    for path in found:
        report = json.load(open(path, encoding="utf-8"))
        md = open(path[:-len(".json")] + ".md", encoding="utf-8").read()
        assert md == sensitivity_table(report) + "\n", path
