import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import mindspore as ms

import torch_format as tf
from conftest import ROOT
from src.models import create_model
from src.weights.checkpoint import CheckpointError, load_into, model_meta, read_checkpoint, save_checkpoint
from src.weights.torch_import import convert_torch_state_dict
from src.weights.torch_pickle import UnsafeCheckpointError, load_torch_state_dict


def _conv_shapes(prefix, cin, cout, k=3):
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}


def abpn_sd(scale, m=2, c=8, seed=0):
    shapes = _conv_shapes("backbone.0", 3, c)
    for i in range(m):
        shapes.update(_conv_shapes(f"backbone.{i + 2}.0", c, c))
    o = 3 * scale * scale
    shapes.update(_conv_shapes(f"backbone.{m + 2}", c, o))
    shapes.update(_conv_shapes(f"backbone.{m + 4}", o, o))
    return tf.random_state_dict(shapes, seed)


def etds_sd(scale, m=2, c=8, seed=0):
    o = 3 * scale * scale + (1 if scale == 3 else 0)
    shapes = _conv_shapes("conv_first", 3, c)
    for i in range(m):
        shapes.update(_conv_shapes(f"backbone_convs.{i}", c, c))
    shapes.update(_conv_shapes("conv_last", c, o))
    shapes.update(_conv_shapes("conv_clip", o, o, k=1))
    sd = tf.random_state_dict(shapes, seed)
    sd["conv_clip.bias"] += 0.5  # keep some outputs positive after the final ReLU
    return sd


def ecbsr_sd(scale, m=2, c=8, seed=0):
    shapes = {}
    for i in range(m + 1):
        shapes.update(_conv_shapes(f"backbone.{i}.0", 3 if i == 0 else c, c))
        shapes[f"backbone.{i}.1.weight"] = (c,)
    shapes.update(_conv_shapes(f"backbone.{m + 1}.0", c, 3 * scale * scale))
    return tf.random_state_dict(shapes, seed)


def edsr_sd(scale, n=16, f=64, seed=0, basicsr=False):
    shapes = _conv_shapes("head.0", 3, f)
    for i in range(n):
        shapes.update(_conv_shapes(f"body.{i}.body.0", f, f))
        shapes.update(_conv_shapes(f"body.{i}.body.2", f, f))
    shapes.update(_conv_shapes(f"body.{n}", f, f))
    for k, factor in enumerate([scale] if scale in (2, 3) else [2, 2]):
        shapes.update(_conv_shapes(f"tail.0.{2 * k}", f, f * factor * factor))
    shapes.update(_conv_shapes("tail.1", f, 3))
    sd = tf.random_state_dict(shapes, seed, scale=0.02)
    sd["sub_mean.weight"] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    sd["sub_mean.bias"] = np.zeros(3, np.float32)
    return sd


def _to_basicsr(sd, n):
    out = {}
    for k, v in sd.items():
        k2 = (k.replace("head.0", "conv_first").replace(f"body.{n}.", "conv_after_body.")
              .replace("tail.1", "conv_last").replace("tail.0.", "upsample."))
        k2 = k2.replace(".body.0.", ".conv1.").replace(".body.2.", ".conv2.")
        if not k2.startswith("sub_mean"):
            out[k2] = v
    return out


CASES = [
    ("abpn", "M2C8", lambda s: abpn_sd(s), lambda sd, x, s: tf.abpn_forward(sd, x, s, 2)),
    ("etds", "M2C8", lambda s: etds_sd(s), lambda sd, x, s: tf.etds_plain_forward(sd, x, s, 2)),
    ("ecbsr", "M2C8", lambda s: ecbsr_sd(s), lambda sd, x, s: tf.ecbsr_plain_forward(sd, x, s, 2)),
    ("edsr", "baseline", lambda s: edsr_sd(s), lambda sd, x, s: tf.edsr_forward_pytorch_keys(sd, x, s, 16, 1.0)),
]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("model,variant,make_sd,reference", CASES, ids=[c[0] for c in CASES])
def test_converted_weights_reproduce_pytorch_forward(tmp_path, model, variant, make_sd, reference, scale):
    sd = make_sd(scale)
    path = str(tmp_path / "w.pth")
    tf.save_torch_format(sd, path)
    loaded = load_torch_state_dict(path)
    assert set(loaded) == set(sd) and all(np.array_equal(loaded[k], sd[k]) for k in sd)
    net = create_model(model, variant, scale)
    params = convert_torch_state_dict(net, loaded)
    ms.load_param_into_net(net, {k: ms.Parameter(ms.Tensor(v), name=k) for k, v in params.items()})
    x = np.random.default_rng(1).random((3, 6, 5)).astype(np.float32)
    ours = net(ms.Tensor(x[None])).asnumpy()[0]
    ref = reference(sd, x.astype(np.float64), scale)
    np.testing.assert_allclose(ours, ref, atol=2e-5 if model != "edsr" else 2e-4)


def test_edsr_basicsr_keys_convert_identically():
    sd = edsr_sd(4)
    net_a, net_b = create_model("edsr", "baseline", 4), create_model("edsr", "baseline", 4)
    a = convert_torch_state_dict(net_a, sd)
    b = convert_torch_state_dict(net_b, _to_basicsr(sd, 16))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_torch_state_dict(str(path))
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a zip-format PyTorch checkpoint"):
        load_torch_state_dict(str(legacy))


def test_wrong_variant_weights_listed():
    net = create_model("abpn", "M4C8", 2)
    with pytest.raises(CheckpointError, match="model does not use .*backbone"):
        convert_torch_state_dict(create_model("abpn", "M1C8", 2), abpn_sd(2, m=2))
    with pytest.raises(CheckpointError, match=r"body\.0\.weight: converted PyTorch weights \(16, 16, 3, 3\)"):
        convert_torch_state_dict(net, abpn_sd(2, m=4, c=16))


def test_checkpoint_roundtrip_and_scale_mismatch(tmp_path):
    net = create_model("abpn", "M2C8", 3)
    path = str(tmp_path / "m.ckpt")
    save_checkpoint(net, path, meta=model_meta(net))
    save_checkpoint(net, path, meta=model_meta(net))  # overwrite in place
    assert os.listdir(tmp_path) == ["m.ckpt"]
    params, meta = read_checkpoint(path)
    assert meta == {"model": "abpn", "variant": "M2C8", "scale": 3, "form": "deploy"}
    other = create_model("abpn", "M2C8", 3)
    load_into(other, path)
    for p in other.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), params[p.name])
    with pytest.raises(CheckpointError, match=r"trained for x3 but the model is x2; pass --scale 3"):
        load_into(create_model("abpn", "M2C8", 2), path)
    with pytest.raises(CheckpointError, match=r"holds a 'abpn' model but --model is 'ecbsr'"):
        load_into(create_model("ecbsr", "M2C8", 3), path)
    with pytest.raises(CheckpointError, match=r"does not fit abpn-M4C8 x3: body\.2\.weight missing"):
        load_into(create_model("abpn", "M4C8", 3), path)


def test_corrupt_and_missing_checkpoint(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable MindSpore checkpoint"):
        read_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(str(tmp_path / "none.ckpt"))
    (tmp_path / "folder.ckpt").mkdir()
    with pytest.raises(CheckpointError, match="folder.ckpt is a folder, not a file"):
        read_checkpoint(str(tmp_path / "folder.ckpt"))


def test_convert_script_cli(tmp_path):
    src = str(tmp_path / "abpn.pth")
    tf.save_torch_format(abpn_sd(2, m=2, c=8), src)
    run = lambda *a: subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert_torch_weights.py"), *a],
                                     capture_output=True, text=True, cwd=ROOT)
    ok = run("--src", src, "--dst", str(tmp_path / "o.ckpt"), "--model", "abpn", "--variant", "M2C8", "--scale", "2")
    assert ok.returncode == 0, ok.stderr
    assert read_checkpoint(str(tmp_path / "o.ckpt"))[1]["scale"] == 2
    bad = run("--src", src, "--dst", str(tmp_path / "p.ckpt"), "--model", "abpn", "--variant", "M2C8", "--scale", "3")
    assert bad.returncode == 2
    assert "error: converted PyTorch weights does not fit abpn-M2C8 x3" in bad.stderr
    assert not (tmp_path / "p.ckpt").exists()
