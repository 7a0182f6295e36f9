import pytest

from model_utils.config import get_config
from model_utils.runtime_env import apply_cpu_runtime_defaults
from model_utils import local_adapter

YAML = """
model: abpn
scale: 2
lr: 0.001
self_ensemble: False
eval_datasets: [Set5]
pre_trained: ""
optional: null
nested: {a: 1}
---
scale: "upscaling factor"
---
scale: [2, 3, 4]
"""


@pytest.fixture
def cfg_path(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(YAML)
    return str(path)


def test_defaults_and_overrides(cfg_path):
    cfg = get_config(["--config_path", cfg_path, "--scale", "3", "--lr", "2e-4", "--self_ensemble", "True",
                      "--eval_datasets", "Set5,Set14", "--optional", "7"])
    assert cfg.scale == 3 and isinstance(cfg.scale, int)
    assert cfg.lr == pytest.approx(2e-4)
    assert cfg.self_ensemble is True
    assert cfg.eval_datasets == ["Set5", "Set14"]
    assert cfg.optional == 7
    assert cfg.model == "abpn" and cfg.nested == {"a": 1}
    assert cfg.cli_keys == {"scale", "lr", "self_ensemble", "eval_datasets", "optional"}


def test_unknown_key_lists_valid_keys(cfg_path, capsys):
    """A close misspelling gets the option to type (with its dashes) and no list of every key; an unknown key
    without a close match gets the list."""
    with pytest.raises(SystemExit) as exc:
        get_config(["--config_path", cfg_path, "--sclae", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--sclae (did you mean --scale?); --help lists the options" in err and "valid keys:" not in err
    with pytest.raises(SystemExit) as exc:
        get_config(["--config_path", cfg_path, "--qqqqqq", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--qqqqqq" in err and "valid keys:" in err and "scale" in err


def test_abbreviated_keys_are_not_guessed(cfg_path, capsys):
    with pytest.raises(SystemExit):
        get_config(["--config_path", cfg_path, "--scal", "3"])
    assert "unknown option(s) --scal" in capsys.readouterr().err


def test_choices_and_bad_bool_rejected(cfg_path, capsys):
    with pytest.raises(SystemExit):
        get_config(["--config_path", cfg_path, "--scale", "5"])
    assert "not one of [2, 3, 4]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        get_config(["--config_path", cfg_path, "--self_ensemble", "maybe"])


def test_help_shows_help_strings(cfg_path, capsys):
    with pytest.raises(SystemExit):
        get_config(["--config_path", cfg_path, "--help"])
    assert "upscaling factor" in capsys.readouterr().out


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        get_config(["--config_path", str(tmp_path / "none.yaml")])


def test_shipped_config_parses():
    cfg = get_config([])
    assert cfg.model and cfg.scale in (2, 3, 4) and isinstance(cfg.eval_datasets, list)


def test_onednn_isa_default_respects_user(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    env = {}
    assert apply_cpu_runtime_defaults(env) == "AVX2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    env = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    assert apply_cpu_runtime_defaults(env) == "AVX512_CORE"
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    env = {}
    assert apply_cpu_runtime_defaults(env) is None and "ONEDNN_MAX_CPU_ISA" not in env


def test_local_adapter_reads_msrun_env(monkeypatch):
    for name in ("RANK_ID", "RANK_SIZE", "MS_NODE_ID", "MS_WORKER_NUM", "OMPI_COMM_WORLD_RANK",
                 "OMPI_COMM_WORLD_SIZE", "DEVICE_ID"):
        monkeypatch.delenv(name, raising=False)
    assert (local_adapter.get_rank_id(), local_adapter.get_device_num(), local_adapter.get_device_id()) == (0, 1, 0)
    monkeypatch.setenv("MS_NODE_ID", "1")
    monkeypatch.setenv("MS_WORKER_NUM", "2")
    monkeypatch.setenv("DEVICE_ID", "3")
    assert (local_adapter.get_rank_id(), local_adapter.get_device_num(), local_adapter.get_device_id()) == (1, 2, 3)


def test_auto_model_picks_the_shipped_default_for_the_scale(tmp_path):
    assert [(c.model, c.variant) for c in (get_config(["--scale", s]) for s in ("2", "3", "4"))] == \
        [("sesr", "M5"), ("abpn", "M4C28"), ("sesr", "M5")]
    assert (get_config(["--model", "edsr"]).variant, get_config(["--model", "etds", "--scale", "3"]).variant) == \
        ("baseline", "M4C32")
    assert get_config(["--model", "abpn", "--variant", "M2C8"]).variant == "M2C8"
    bad = tmp_path / "c.yaml"
    bad.write_text("model: auto\nvariant: auto\nscale: 3\ndefault_models: {2: sesr/M5}\ndefault_variants: {}\n")
    with pytest.raises(SystemExit):
        get_config(["--config_path", str(bad)])
