"""Hostile weight files and unsafe writes (issue 13, items 1-4 and 10).

Every crafted ``.pth`` is refused with one line naming the tensor or zip member, before any byte is
viewed and without allocating what the file declares; absurd checkpoint metadata is refused before a
model is built; temporary files are unpredictable and never followed through a planted link; an
output that is its own input is refused; DataParallel and BasicSR files convert and say what was
taken. The crafted files are written without torch by ``tests/torch_format.py``.
"""
import hashlib
import os
import stat
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import torch_format as tf
from conftest import ROOT, requires_shared, shared_dir
from src.weights.convert_cli import main as convert_main
from src.models import create_model
from src.utils.atomic import SameFileError, atomic_target, refuse_same_file
from src.weights.checkpoint import CheckpointError, model_meta, read_checkpoint, save_checkpoint
from src.weights.torch_pickle import TorchFileError, UnsafeCheckpointError, load_torch_state_dict, load_torch_weights

MB = 1 << 20


# ----------------------------------------------------------------------------- helpers

def _conv(prefix, cin, cout, k=3):
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}


def abpn_shapes(scale=3, m=4, c=28):
    """Names and shapes of the published ABPN (``ABPN_M4C28_x3.pth``: 14 tensors, 42,539 values at x3)."""
    shapes = _conv("backbone.0", 3, c)
    for i in range(m):
        shapes.update(_conv(f"backbone.{i + 2}.0", c, c))
    o = 3 * scale * scale
    shapes.update(_conv(f"backbone.{m + 2}", c, o))
    shapes.update(_conv(f"backbone.{m + 4}", o, o))
    return shapes


def _convert(capsys, *argv):
    """Run the converter in-process: (exit code, stdout lines, stderr lines)."""
    rc = convert_main(list(argv))
    out, err = capsys.readouterr()
    return rc, [l for l in out.splitlines() if l.strip()], [l for l in err.splitlines() if l.strip()]


def _one_error_line(err, *needles):
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])


def _hostile(tmp_path, tensors, blobs, name="hostile.pth", **kw):
    path = str(tmp_path / name)
    tf.write_torch_zip(path, tensors, blobs, **kw)
    return path


def _f32(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32).tobytes()


def _peak_bytes(fn):
    """Peak memory (bytes, numpy buffers included) traced while ``fn`` runs; the exception it raises is returned."""
    tracemalloc.start()
    try:
        try:
            fn()
            raised = None
        except Exception as exc:  # pylint: disable=broad-except
            raised = exc
        return tracemalloc.get_traced_memory()[1], raised
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------- item 1: the .pth reader

def test_abpn_names_with_4_byte_storages_refused_naming_the_tensor(tmp_path, capsys):
    """Today: a 2.9 KB file converts with exit 0, copying 42,539 values of process memory into the checkpoint."""
    shapes = abpn_shapes()
    assert sum(int(np.prod(s)) for s in shapes.values()) == 42539
    blobs = {str(i): _f32(1, i) for i in range(len(shapes))}
    tensors = {name: tf.RawTensor(str(i), shape) for i, (name, shape) in enumerate(shapes.items())}
    src = _hostile(tmp_path, tensors, blobs)
    assert os.path.getsize(src) < 4000
    dst = str(tmp_path / "out.ckpt")
    rc, out, err = _convert(capsys, "--src", src, "--dst", dst, "--model", "abpn", "--variant", "M4C28", "--scale", "3")
    assert rc == 2 and not out
    _one_error_line(err, "tensor 'backbone.0.weight'", "reads element 755", "holds 1 float32 values")
    assert not os.path.exists(dst) and os.listdir(tmp_path) == ["hostile.pth"]
    # the same bytes with the honest element count in the pickle: the count no longer matches the bytes
    tensors = {name: tf.RawTensor(str(i), shape, numel=int(np.prod(shape))) for i, (name, shape) in enumerate(shapes.items())}
    with pytest.raises(TorchFileError, match=r"tensor 'backbone\.0\.weight': storage '0' declares 756 float32 values "
                                             r"but holds 1 \(4 bytes\)"):
        load_torch_state_dict(_hostile(tmp_path, tensors, blobs, "honest_count.pth"))


@pytest.mark.parametrize("raw,needle", [
    (dict(shape=(1000, 1000), stride=(-100000, 1)), r"stride \(-100000, 1\) holds -100000"),  # today: SIGSEGV
    (dict(shape=(4, 4), stride=(-4, 1), offset=12), r"stride \(-4, 1\) holds -4"),
    (dict(shape=(4, 4), stride=(4, -1), offset=3), r"stride \(4, -1\) holds -1"),
    (dict(shape=(-4, 4)), r"size \(-4, 4\) holds -4"),
    (dict(shape=(4, 4), offset=-2), r"storage offset -2 is not an integer >= 0"),
    (dict(shape=(4, 4), offset=1), r"reads element 16 but its storage '0' holds 16"),
    (dict(shape=(4, 4), stride=(5, 1)), r"reads element 18"),
    (dict(shape=(4, 4), stride=(4,)), r"has 2 dimensions but stride \(4,\) has 1"),
    (dict(shape=(4, 4.0)), r"holds 4\.0; sizes and strides must be integers"),
    (dict(shape=(4, True)), r"holds True"),
    (dict(shape=(16,), stride=(0,)), r"has 16 elements but its storage '0' holds 1"),
    (dict(shape=(4, 4), stride=(1, 1)), r"has 16 elements but its storage '0' holds 7 from offset 0"),
])
def test_bad_size_stride_offset_refused_naming_the_tensor(tmp_path, raw, needle):
    """Checked in-process: every one is refused before a view of the storage exists."""
    numel = 1 if raw.get("stride") == (0,) else (7 if raw.get("stride") == (1, 1) else 16)  # storage elements
    path = _hostile(tmp_path, {"body.0.weight": tf.RawTensor("0", **raw)}, {"0": _f32(numel)})
    with pytest.raises(TorchFileError, match=r"tensor 'body\.0\.weight'.*" + needle):
        load_torch_state_dict(path)


@pytest.mark.parametrize("stride", [None, (0, 0, 0)], ids=["contiguous", "expanded"])
def test_huge_declared_shape_refused_without_allocating(tmp_path, stride):
    """Today: an 8-byte storage declared 100000x100000x100 asks numpy for 3.6 TiB (contiguous) or 7.3 TiB (stride 0)."""
    path = _hostile(tmp_path, {"w": tf.RawTensor("0", (100000, 100000, 100), stride=stride, storage="DoubleStorage")},
                    {"0": np.ones(1, np.float64).tobytes()})
    peak, raised = _peak_bytes(lambda: load_torch_state_dict(path))
    assert isinstance(raised, TorchFileError) and "tensor 'w'" in str(raised), raised
    assert peak < 4 * MB, peak


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """A 2 MB deflated member that inflates to 2 GiB of zeros, declared honestly in its header."""
    path = str(tmp_path_factory.mktemp("bomb") / "bomb.pth")
    pkl = tf.pickle_torch_tree({"w": tf.RawTensor("0", (4,), numel=1 << 29)}, {})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", pkl)
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            zeros = bytes(16 * MB)
            for _ in range(128):
                fh.write(zeros)
    return path


def test_zip_bomb_member_refused_before_inflating(zip_bomb):
    info = zipfile.ZipFile(zip_bomb).getinfo("archive/data/0")
    assert info.file_size == 2 << 30 and info.compress_size < 3 * MB
    peak, raised = _peak_bytes(lambda: load_torch_state_dict(zip_bomb))
    assert isinstance(raised, TorchFileError), raised
    assert "member 'archive/data/0' would inflate" in str(raised) and "zip bomb" in str(raised)
    assert peak < 16 * MB, peak


def _patch_declared_size(path, member, new_size):
    """Rewrite the uncompressed size of ``member`` in its local and central headers (a lying header)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(open(path, "rb").read())
    name = member.encode()
    local = info.header_offset
    assert raw[local:local + 4] == b"PK\x03\x04"
    raw[local + 22:local + 26] = new_size.to_bytes(4, "little")
    central = raw.find(b"PK\x01\x02")
    while int.from_bytes(raw[central + 28:central + 30], "little") != len(name) or \
            raw[central + 46:central + 46 + len(name)] != name:
        central = raw.find(b"PK\x01\x02", central + 4)
        assert central > 0, member
    raw[central + 24:central + 28] = new_size.to_bytes(4, "little")
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("compression,declared,needle", [
    (zipfile.ZIP_DEFLATED, 40, r"cannot read member 'archive/data/0' \(Bad CRC-32"),  # header says less
    (zipfile.ZIP_DEFLATED, 400, r"member 'archive/data/0' holds 64 bytes but declares 400"),  # header says more
    (zipfile.ZIP_STORED, 400, r"stored uncompressed but declares 400 bytes for 64"),
])
def test_member_sizes_that_lie_are_refused(tmp_path, compression, declared, needle):
    path = _hostile(tmp_path, {"w": tf.RawTensor("0", (16,))}, {"0": _f32(16)}, compression=compression)
    assert np.array_equal(load_torch_state_dict(path)["w"], np.frombuffer(_f32(16), np.float32))
    _patch_declared_size(path, "archive/data/0", declared)
    with pytest.raises(TorchFileError, match=needle):
        load_torch_state_dict(path)


def test_truncated_and_malformed_pickles_and_archives_refused(tmp_path):
    tensors, blobs = {"w": tf.RawTensor("0", (16,))}, {"0": _f32(16)}
    pkl = tf.pickle_torch_tree(tensors, blobs)
    for i, data in enumerate([pkl[: len(pkl) // 2], pkl[:-1], b"\x80\x02garbage", b""]):
        path = _hostile(tmp_path, None, blobs, name=f"p{i}.pth", data_pkl=data)
        with pytest.raises(TorchFileError, match="malformed or truncated pickle in data.pkl"):
            load_torch_state_dict(path)
    # a pickle of something that is not a state dict, a list of tensors, a dict without tensors
    for i, (obj, needle) in enumerate([([tf.RawTensor("0", (16,))], "does not contain a state dict (found list)"),
                                       ({"epoch": 3}, "holds no tensors at the top level"),
                                       ({7: tf.RawTensor("0", (16,))}, "tensor name 7 is not a string")]):
        with pytest.raises(TorchFileError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            load_torch_state_dict(_hostile(tmp_path, obj, blobs, name=f"o{i}.pth"))
    # the archive itself cut short (no central directory), and a storage the archive does not hold
    good = _hostile(tmp_path, tensors, blobs, name="good.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(open(good, "rb").read()[:150])
    with pytest.raises(TorchFileError, match="not a zip-format PyTorch checkpoint"):
        load_torch_state_dict(str(cut))
    with pytest.raises(TorchFileError, match=r"tensor 'w' \(storage '9'\) refers to member 'archive/data/9', which"):
        load_torch_state_dict(_hostile(tmp_path, {"w": tf.RawTensor("9", (16,), numel=16)}, blobs, name="m.pth"))


def test_storage_bytes_not_a_multiple_of_the_dtype_refused(tmp_path):
    path = _hostile(tmp_path, {"w": tf.RawTensor("0", (1,), numel=1)}, {"0": b"\x00" * 6})
    with pytest.raises(TorchFileError, match=r"tensor 'w': storage '0' holds 6 bytes, not a multiple of the 4-byte"):
        load_torch_state_dict(path)


def test_unsupported_storage_type_and_code_refused(tmp_path):
    path = _hostile(tmp_path, {"w": tf.RawTensor("0", (4,), storage="BFloat16Storage")}, {"0": b"\x00" * 8})
    with pytest.raises(TorchFileError, match=r"torch\.BFloat16Storage are not supported; convert the state dict"):
        load_torch_state_dict(path)
    with pytest.raises(UnsafeCheckpointError):  # still a TorchFileError, so one line everywhere
        raise UnsafeCheckpointError("x")
    assert issubclass(UnsafeCheckpointError, TorchFileError) and issubclass(TorchFileError, ValueError)


def test_tensors_viewing_one_storage_still_load(tmp_path):
    """Legitimate views: a weight, its row 1 (offset 5), its transpose (stride (1, 5)) and a scalar in one storage."""
    base = np.arange(20, dtype=np.float32)
    tensors = {"w": tf.RawTensor("0", (4, 5)), "row": tf.RawTensor("0", (5,), offset=5),
               "t": tf.RawTensor("0", (5, 4), stride=(1, 5)), "every_other": tf.RawTensor("0", (10,), stride=(2,)),
               "empty": tf.RawTensor("0", (0, 5)), "scalar": tf.RawTensor("0", ())}
    sd = load_torch_state_dict(_hostile(tmp_path, tensors, {"0": base.tobytes()}))
    grid = base.reshape(4, 5)
    assert np.array_equal(sd["w"], grid) and np.array_equal(sd["row"], grid[1]) and np.array_equal(sd["t"], grid.T)
    assert np.array_equal(sd["every_other"], base[::2]) and sd["empty"].shape == (0, 5)
    assert "scalar" not in sd  # 0-d buffers (num_batches_tracked) are not weights, as before
    assert all(v.flags.c_contiguous and v.dtype == np.float32 for v in sd.values())
    sd["w"][0, 0] = 99.0  # copies: writing one does not change another
    assert sd["t"][0, 0] == 0.0


# Digests of the published state dicts as read before this change (commit 058dae3); names, dtypes,
# shapes and bytes of every tensor.
PUBLISHED_DIGESTS = {"ABPN_ET_M4C28_x3.pth": (16, "2f5837f7f50466a9"), "ABPN_M4C28_x3.pth": (14, "6457d47ddafe97ea"),
                     "ECBSR_M4C16_x3.pth": (17, "9a1fddf49a1fcb5d"), "ETDS_M4C32_x3.pth": (14, "f4591ed9d7931f2e")}


@requires_shared
@pytest.mark.parametrize("fname", sorted(PUBLISHED_DIGESTS))
def test_published_weights_read_identically(fname):
    weights = load_torch_weights(os.path.join(shared_dir(), "weights", "etds_repo_x3", fname))
    sd = weights.state_dict
    digest = hashlib.sha256()
    for k in sorted(sd):
        digest.update(k.encode()), digest.update(str(sd[k].dtype).encode())
        digest.update(str(sd[k].shape).encode()), digest.update(sd[k].tobytes())
    assert (len(sd), digest.hexdigest()[:16]) == PUBLISHED_DIGESTS[fname]
    assert weights.notes == []  # plain state dicts: nothing to report


# ----------------------------------------------------------------------------- item 10: DataParallel, BasicSR

def _abpn_sd(seed):
    return tf.random_state_dict(abpn_shapes(scale=2, m=2, c=8), seed)


def test_module_prefix_converts_to_the_same_checkpoint_and_says_so(tmp_path, capsys):
    sd = _abpn_sd(0)
    plain, wrapped = str(tmp_path / "plain.pth"), str(tmp_path / "dp.pth")
    tf.save_torch_format(sd, plain)
    tf.save_torch_format({f"module.{k}": v for k, v in sd.items()}, wrapped)
    args = ["--model", "abpn", "--variant", "M2C8", "--scale", "2"]
    rc, out, _ = _convert(capsys, "--src", plain, "--dst", str(tmp_path / "a.ckpt"), *args)
    assert rc == 0 and not any("stripped" in l for l in out)
    rc, out, err = _convert(capsys, "--src", wrapped, "--dst", str(tmp_path / "b.ckpt"), *args)
    assert rc == 0, err
    assert f"stripped 'module.' prefix from {len(sd)} names (a DataParallel/DistributedDataParallel save)" in out
    a, b = read_checkpoint(str(tmp_path / "a.ckpt")), read_checkpoint(str(tmp_path / "b.ckpt"))
    assert a[1] == b[1] and a[0].keys() == b[0].keys() and all(np.array_equal(a[0][k], b[0][k]) for k in a[0])


def test_basicsr_params_and_params_ema_choice(tmp_path, capsys):
    params, ema = _abpn_sd(1), _abpn_sd(2)
    both, plain = str(tmp_path / "basicsr.pth"), str(tmp_path / "plain.pth")
    tf.save_torch_format({"params": params, "params_ema": ema}, both)
    tf.save_torch_format(ema, plain)
    args = ["--model", "abpn", "--variant", "M2C8", "--scale", "2"]

    def converted(*extra):
        dst = str(tmp_path / f"{len(os.listdir(tmp_path))}.ckpt")
        rc, out, err = _convert(capsys, "--src", both, "--dst", dst, *args, *extra)
        assert rc == 0, err
        return read_checkpoint(dst)[0], out

    ref = {}
    for name, sd in (("params", params), ("params_ema", ema)):
        tf.save_torch_format(sd, str(tmp_path / f"ref_{name}.pth"))
        assert _convert(capsys, "--src", str(tmp_path / f"ref_{name}.pth"), "--dst", str(tmp_path / f"ref_{name}.ckpt"),
                        *args)[0] == 0
        ref[name] = read_checkpoint(str(tmp_path / f"ref_{name}.ckpt"))[0]
    same = lambda x, y: x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)  # noqa: E731
    auto, out = converted()
    assert same(auto, ref["params_ema"]) and not same(auto, ref["params"])
    assert any("took 'params_ema'" in l and "also holds 'params'" in l and "--key params" in l for l in out), out
    chosen, out = converted("--key", "params")
    assert same(chosen, ref["params"]) and any("took the state dict under 'params'" in l for l in out), out
    chosen, out = converted("--key", "params_ema")
    assert same(chosen, ref["params_ema"])
    rc, out, err = _convert(capsys, "--src", plain, "--dst", str(tmp_path / "x.ckpt"), *args, "--key", "params")
    assert rc == 2 and not os.path.exists(tmp_path / "x.ckpt")
    _one_error_line(err, "has no 'params' state dict (it holds a plain state dict); pass --key auto")


# ----------------------------------------------------------------------------- item 2: checkpoint metadata

def _ckpt(tmp_path, spec, name="m.ckpt", meta=None, **options):
    """A checkpoint of ``spec`` = (model, variant, scale, form) built with ``options``; ``meta`` overrides metadata."""
    model, variant, scale, form = spec
    net = create_model(model, variant, scale, form=form, **options)
    path = str(tmp_path / name)
    save_checkpoint(net, path, meta={**model_meta(net), **(meta or {})})
    return path


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if a model is built: metadata must be refused first."""
    import src.weights.loader as loader  # pylint: disable=import-outside-toplevel

    def _refuse(*args, **kwargs):
        raise AssertionError(f"a model was built from absurd metadata: {args} {kwargs}")
    monkeypatch.setattr(loader, "create_model", _refuse)


SESR_TRAIN = ("sesr", "M3", 2, "train")
ABPN = ("abpn", "M2C8", 2, "deploy")


@pytest.mark.parametrize("spec,meta,needle", [
    (SESR_TRAIN, dict(feature_size=10000000), "metadata feature_size=10000000 is not allowed (allowed: an integer in "
                                              "0..4096"),
    (ABPN, dict(n_colors=7), "metadata n_colors=7 is not allowed (allowed: one of 1, 3; 0 or '' = the family default)"),
    (ABPN, dict(scale=99), "metadata scale=99 is not allowed (allowed: 2, 3, 4)"),
    (ABPN, dict(model="resnet"), "metadata model='resnet' is not allowed (allowed: abpn, abpn_et, ecbsr"),
    (ABPN, dict(variant="M100000C100000"), "metadata variant='M100000C100000' is not allowed (allowed: M4C28 or any "
                                           "M<1..100>C<1..1024>)"),
    (ABPN, dict(variant="huge"), "metadata variant='huge'"),
    (ABPN, dict(form="eval"), "metadata form='eval' is not allowed (allowed: train, deploy)"),
    (("abpn_et", "M4C28", 3, "deploy"), dict(form="train"), "metadata form='train' is not allowed (allowed: deploy)"),
    (ABPN, dict(act="gelu"), "metadata act='gelu' is not allowed (allowed: one of prelu, relu;"),
    (SESR_TRAIN, dict(linear_block_type="dense"), "metadata linear_block_type='dense' is not allowed (allowed: one "
                                                  "of expanded, collapsed, collapsed_adder;"),
    (SESR_TRAIN, dict(adder_eta=float("nan")), "metadata adder_eta=nan is not allowed (allowed: a finite number > 0)"),
    (SESR_TRAIN, dict(feature_size=128), "metadata feature_size=128 but input_block.expand.weight has shape "
                                         "(256, 1, 5, 5)"),
    (ABPN, dict(n_colors=1), "metadata n_colors=1 but the input conv conv_first.weight has shape (8, 3, 3, 3)"),
], ids=["feature_size", "n_colors", "scale", "model", "variant_size", "variant_name", "form", "form_no_train", "act",
        "block_type", "adder_eta", "feature_size_vs_shape", "n_colors_vs_shape"])
def test_absurd_metadata_refused_before_a_model_is_built(tmp_path, no_build, spec, meta, needle):
    from src.weights.loader import load_for_inference  # pylint: disable=import-outside-toplevel
    path = _ckpt(tmp_path, spec, meta=meta)
    with pytest.raises(CheckpointError) as exc:
        load_for_inference(*spec[:3], path)
    assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_metadata_that_is_not_one_value_refused(tmp_path):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M2C8", 2)
    path = str(tmp_path / "m.ckpt")
    save_checkpoint(net, path, meta={**model_meta(net), "scale": ms.Tensor(np.arange(1000, dtype=np.int32))})
    with pytest.raises(CheckpointError, match=r"metadata 'scale' is a tensor of shape \(1000,\), not one value"):
        read_checkpoint(path)


def test_valid_metadata_still_loads(tmp_path):
    from src.weights.loader import load_for_inference  # pylint: disable=import-outside-toplevel
    path = _ckpt(tmp_path, SESR_TRAIN, act="relu", linear_block_type="expanded", feature_size=128)
    net, meta = load_for_inference("sesr", "M3", 2, path)
    assert meta["form"] == "train" and meta["act"] == "relu" and meta["feature_size"] == 128 and net.form == "deploy"
    path = _ckpt(tmp_path, ("etds", "S", 3, "deploy"), name="e.ckpt")  # an alias variant
    assert load_for_inference("etds", "S", 3, path)[1]["variant"] == "S"
    # what QAT writes from the config: 0 / '' mean "the family default" and are ignored when building
    path = _ckpt(tmp_path, ABPN, name="q.ckpt", meta=dict(n_colors=0, feature_size=0, act="", adder_eta=0.2))
    assert load_for_inference("abpn", "M2C8", 2, path)[1]["n_colors"] == 0


def test_absurd_metadata_cli_one_line(tmp_path):
    """export.py (a separate process, no monkeypatch): one line, exit 2, nothing written, no huge allocation."""
    path = _ckpt(tmp_path, SESR_TRAIN, meta=dict(feature_size=10000000))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--model", "sesr", "--variant", "M3",
                           "--scale", "2", "--pre_trained", path, "--output_path", str(tmp_path / "out"),
                           "--file_format", "ONNX"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "feature_size=10000000" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "out")


# ----------------------------------------------------------------------------- item 3: temporary files

def _write_text(path, text):
    with atomic_target(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_json(path):
    from src.engine.evaluator import write_json  # pylint: disable=import-outside-toplevel
    write_json(path, {"psnr": 33.5})


def _write_png(path):
    from src.data.image_io import write_png  # pylint: disable=import-outside-toplevel
    write_png(path, np.full((6, 5, 3), 200, np.uint8))


def _write_ckpt(path):
    save_checkpoint({"w": np.ones((2, 2), np.float32)}, path, meta={"model": "abpn"})


def _write_onnx(path):
    import onnx  # pylint: disable=import-outside-toplevel
    from onnx import TensorProto, helper  # pylint: disable=import-outside-toplevel
    from src.export.onnx.onnx_float import save_onnx  # pylint: disable=import-outside-toplevel
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    save_onnx(model, path)


def _write_mindir(path):
    from src.export.mindir import export_mindir  # pylint: disable=import-outside-toplevel
    with atomic_target(path, suffix=".mindir") as tmp:
        export_mindir(create_model("abpn", "M1C4", 2), 3, tmp)


WRITERS = {"m.json": (_write_json, ""), "m.png": (_write_png, ".png"), "m.ckpt": (_write_ckpt, ".ckpt"),
           "m.onnx": (_write_onnx, ".onnx"), "m.mindir": (_write_mindir, ".mindir")}


def _plant_links(folder, name, suffix, victim):
    """Symlinks to ``victim`` at every temp name the old scheme (``.<name>.tmp<pid><suffix>``) or a writer derives."""
    planted = []
    for pid in {os.getpid(), os.getppid()}:
        for link in (f".{name}.tmp{pid}{suffix}", f".{name}.tmp{pid}.tmp", f".{name}.tmp{pid}",
                     f".{name}.tmp{suffix}", f".{name}.tmp"):
            if not os.path.lexists(os.path.join(folder, link)):
                os.symlink(victim, os.path.join(folder, link))
                planted.append(link)
    return planted


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_planted_symlinks_at_temp_names_are_never_followed(tmp_path, name):
    """Today: ``.<name>.tmp<pid><ext>`` is predictable and every writer follows a link planted there."""
    writer, suffix = WRITERS[name]
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    planted = _plant_links(str(folder), name, suffix, str(victim))
    writer(str(folder / name))
    assert victim.read_bytes() == b"precious"
    assert (folder / name).is_file() and not (folder / name).is_symlink() and (folder / name).stat().st_size > 0
    assert sorted(os.listdir(folder)) == sorted(planted + [name])  # no temp file of ours is left behind


@pytest.mark.parametrize("name", ["m.json", "m.ckpt"])
def test_target_that_is_a_symlink_is_replaced_not_written_through(tmp_path, name):
    writer, _ = WRITERS[name]
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    os.symlink(str(victim), str(tmp_path / name))
    writer(str(tmp_path / name))
    assert victim.read_bytes() == b"precious" and not (tmp_path / name).is_symlink()


def test_temp_names_are_unpredictable_and_created_exclusively(tmp_path):
    target = str(tmp_path / "x.ckpt")
    with atomic_target(target, suffix=".ckpt") as first, atomic_target(target, suffix=".ckpt") as second:
        assert first != second and str(os.getpid()) not in os.path.basename(first)[len(".x.ckpt."):-len(".tmp.ckpt")]
        for tmp in (first, second):
            info = os.lstat(tmp)  # already there, ours, a regular file nobody else can open
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600 and info.st_size == 0
            assert os.path.basename(tmp).startswith(".x.ckpt.") and tmp.endswith(".tmp.ckpt")
            open(tmp, "w").write("v")
    assert open(target).read() == "v" and os.listdir(tmp_path) == ["x.ckpt"]


def test_crash_leaves_the_old_target_and_no_temp_file(tmp_path):
    target = str(tmp_path / "x.ckpt")
    _write_text(target, "old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_target(target, suffix=".ckpt") as tmp:
            open(tmp, "w").write("half")
            open(tmp[: -len(".ckpt")] + ".tmp", "w").write("writer's own temp")  # as mindspore.save_checkpoint does
            raise RuntimeError("killed")
    assert open(target).read() == "old" and os.listdir(tmp_path) == ["x.ckpt"]


def test_temp_swapped_for_a_link_is_not_installed(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    target = str(tmp_path / "x.json")
    _write_text(target, "old")
    with pytest.raises(ValueError, match="was replaced by a link or special file"):
        with atomic_target(target) as tmp:
            os.remove(tmp)
            os.symlink(str(victim), tmp)
    assert open(target).read() == "old" and victim.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["victim.bin", "x.json"]


def test_written_files_keep_the_usual_permissions(tmp_path):
    """mkstemp makes 0600 files; a plain writer's output still gets 0666 & ~umask, MindSpore's stays 0400."""
    umask = os.umask(0o022)
    os.umask(umask)
    _write_text(str(tmp_path / "a.txt"), "x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~umask
    _write_ckpt(str(tmp_path / "b.ckpt"))
    assert stat.S_IMODE(os.stat(tmp_path / "b.ckpt").st_mode) == 0o400


def test_resume_removes_stale_temp_files_of_the_new_names(tmp_path):
    from src.engine.train_state import load_latest_state  # pylint: disable=import-outside-toplevel
    target = tmp_path / "run_state_00000010.ckpt"
    stale = [f".{target.name}.k3j9x_2a.tmp.ckpt", f".{target.name}.k3j9x_2a.tmp.tmp"]  # ours and mindspore's
    stale += [".run_best.ckpt.x81_k.tmp.ckpt", ".run_last.ckpt.q0_z.tmp.ckpt"]
    others = ["keep.txt", ".run_qat_state_00000004.ckpt.ab12.tmp.ckpt", ".run_qat_best.ckpt.cd34.tmp.ckpt"]
    for name in stale + others:  # another run's temp files ('run_qat' in the same folder) are not this run's
        (tmp_path / name).write_text("partial")
    assert load_latest_state(None, str(tmp_path), "run") is None
    assert sorted(os.listdir(tmp_path)) == sorted(others)


def test_export_does_not_write_through_a_planted_temp_link(tmp_path):
    """Today: a symlink at ``.<file>.tmp<pid>.onnx`` makes export.py overwrite the file it points to."""
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    from src.export.exporter import run_export  # pylint: disable=import-outside-toplevel
    ckpt = _ckpt(tmp_path, ("abpn", "M2C8", 3, "deploy"))
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    planted = _plant_links(str(out), "abpn_M2C8_x3.onnx", ".onnx", str(victim))
    cfg = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                      "--output_path", str(out), "--input_shape", "1,3,16,16", "--file_format", "ONNX",
                      "--export_check", "False"])
    report = run_export(cfg, log=lambda *_: None)
    assert victim.read_bytes() == b"precious"
    assert report["file"] == str(out / "abpn_M2C8_x3.onnx") and os.path.getsize(report["file"]) > 1000
    assert sorted(os.listdir(out)) == sorted(planted + ["abpn_M2C8_x3.onnx"])


# ----------------------------------------------------------------------------- item 4: output == input

@pytest.mark.parametrize("how", ["same_path", "relative_path", "symlink_dst", "symlink_src", "hard_link"])
def test_convert_refuses_to_write_over_its_source(tmp_path, capsys, monkeypatch, how):
    """Today: ``--dst`` equal to ``--src`` replaces the .pth with the checkpoint (exit 0)."""
    src = str(tmp_path / "w.pth")
    tf.save_torch_format(_abpn_sd(0), src)
    before = open(src, "rb").read()
    monkeypatch.chdir(tmp_path)
    src_arg, dst = src, src
    if how == "relative_path":
        dst = "./w.pth"
    elif how == "symlink_dst":
        dst = str(tmp_path / "link.ckpt")
        os.symlink(src, dst)
    elif how == "symlink_src":
        src_arg = str(tmp_path / "link.pth")
        os.symlink(src, src_arg)
    elif how == "hard_link":
        dst = str(tmp_path / "hard.ckpt")
        os.link(src, dst)
    rc, out, err = _convert(capsys, "--src", src_arg, "--dst", dst, "--model", "abpn", "--variant", "M2C8",
                            "--scale", "2")
    assert rc == 2 and not out
    _one_error_line(err, f"--dst {dst} is the same file as --src {src_arg}")
    assert open(src, "rb").read() == before


def test_refuse_same_file_passes_distinct_and_new_files(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("a")
    refuse_same_file(str(tmp_path / "a"), str(tmp_path / "b"))
    refuse_same_file(str(tmp_path / "a"), str(tmp_path / "new"))
    with pytest.raises(SameFileError, match="--file_name .* is the same file as --pre_trained"):
        refuse_same_file(str(tmp_path / "a"), str(tmp_path / "." / "a"), "--file_name", "--pre_trained")


def test_export_refuses_file_name_that_is_its_checkpoint(tmp_path):
    """MindSpore reads only *.ckpt and export writes *.onnx/.mindir/.air, so only a link can collide."""
    from model_utils.config import get_config  # pylint: disable=import-outside-toplevel
    from src.export.exporter import run_export  # pylint: disable=import-outside-toplevel
    ckpt = _ckpt(tmp_path, ("abpn", "M2C8", 3, "deploy"))
    before = open(ckpt, "rb").read()
    link = str(tmp_path / "m.onnx")
    os.symlink(ckpt, link)
    cfg = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "3", "--pre_trained", ckpt,
                      "--file_name", link, "--input_shape", "1,3,16,16", "--file_format", "ONNX",
                      "--export_check", "False", "--output_path", str(tmp_path)])
    with pytest.raises(SameFileError, match=r"--file_name .*m\.onnx is the same file as --pre_trained"):
        run_export(cfg, log=lambda *_: None)
    assert open(ckpt, "rb").read() == before and os.path.islink(link)


def test_convert_output_path_that_cannot_be_a_file_one_line(tmp_path, capsys):
    src = str(tmp_path / "w.pth")
    tf.save_torch_format(_abpn_sd(0), src)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    args = ["--model", "abpn", "--variant", "M2C8", "--scale", "2"]
    rc, out, err = _convert(capsys, "--src", src, "--dst", str(tmp_path / "folder"), *args)
    assert rc == 2 and not out
    _one_error_line(err, f"--dst {tmp_path / 'folder'} is a folder; give a file name such as")
    rc, out, err = _convert(capsys, "--src", src, "--dst", str(tmp_path / "afile" / "o.ckpt"), *args)
    assert rc == 2 and not out
    _one_error_line(err, f"cannot write {tmp_path / 'afile' / 'o.ckpt'}: Not a directory: {tmp_path / 'afile'}; "
                    "a part of the path is a file, not a folder")
    assert sorted(os.listdir(tmp_path)) == ["afile", "folder", "w.pth"] and not os.listdir(tmp_path / "folder")


# ---------------------------------------------------------------- item 4: eval outputs that are its input

@pytest.mark.parametrize("option", ["--save_quant_ckpt", "--result_file"])
def test_eval_refuses_to_write_over_its_checkpoint(tmp_path, option, capsys):
    """eval.py --save_quant_ckpt / --result_file naming the --pre_trained file (or a link to it)
    is refused in one line before any calibration, and the checkpoint stays byte-identical."""
    from conftest import write_smooth_images  # pylint: disable=import-outside-toplevel
    from eval import main  # pylint: disable=import-outside-toplevel
    write_smooth_images(tmp_path / "data" / "benchmark" / "Q" / "HR", 1, 24)
    write_smooth_images(tmp_path / "calib", 2, 48, seed=1)
    net = create_model("abpn", "M2C8", 2)
    ckpt = str(tmp_path / "fp.ckpt")
    save_checkpoint(net, ckpt, meta=model_meta(net))
    os.symlink(ckpt, tmp_path / "link.ckpt")
    before = open(ckpt, "rb").read()
    for target in (ckpt, str(tmp_path / "link.ckpt")):
        code = main(["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt,
                     "--data_path", str(tmp_path / "data"), "--eval_datasets", "Q", "--quant_method", "minmax",
                     "--calib_path", str(tmp_path / "calib"), "--calib_num", "2",
                     "--output_path", str(tmp_path / "out"), option, target])
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(err) == 1 and f"{option} {target} is the same file as --pre_trained" in err[0]
        assert open(ckpt, "rb").read() == before


@pytest.mark.parametrize("w_bit,needle", [(1000, "w_bit must be between 2 and 8 (or 0/32 for no quantization), not 1000"),
                                          (8.5, "w_bit must be an integer bit width, not 8.5")])
def test_quant_config_with_absurd_bits_refused(tmp_path, w_bit, needle):
    """A calibrated checkpoint whose quant_config says w_bit 1000 used to load as a float model
    (any width >= 32 meant 'no quantization'); it is refused naming the key."""
    import json  # pylint: disable=import-outside-toplevel
    from src.weights.loader import quant_config_of  # pylint: disable=import-outside-toplevel
    qcfg = json.dumps({"w_bit": w_bit, "a_bit": 8, "w_symmetric": True, "int8_scope": ["first_last"],
                       "fp_scope": [], "bit_table": {}})
    with pytest.raises(CheckpointError, match="unreadable quant_config in checkpoint") as exc:
        quant_config_of({"quant_config": qcfg})
    assert needle in str(exc.value)
    assert quant_config_of({"quant_config": qcfg.replace(f'"w_bit": {w_bit}', '"w_bit": 32')}).w_bit == 0


def test_training_logs_are_not_appended_through_a_planted_link(tmp_path):
    """The train log and CSV grow by appending; a symlink planted at their names is refused, not followed."""
    from src.utils.atomic import open_append  # pylint: disable=import-outside-toplevel
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    os.symlink(victim, tmp_path / "run_train.log")
    with pytest.raises(OSError):
        open_append(str(tmp_path / "run_train.log"))
    assert victim.read_text() == "keep"
    with open_append(str(tmp_path / "plain.log")) as fh:
        fh.write("a\n")
    with open_append(str(tmp_path / "plain.log")) as fh:
        fh.write("b\n")
    assert (tmp_path / "plain.log").read_text() == "a\nb\n"


def test_training_start_checkpoint_with_a_bad_scale_is_named(tmp_path):
    """load_into (train.py --pre_trained, QAT) names a non-numeric metadata scale instead of int()'s message."""
    from src.weights.checkpoint import load_into  # pylint: disable=import-outside-toplevel
    net = create_model("abpn", "M2C8", 2)
    path = str(tmp_path / "s.ckpt")
    save_checkpoint(net, path, meta=dict(model_meta(net), scale="x2"))
    with pytest.raises(CheckpointError, match=r"metadata scale='x2' is not allowed \(allowed: 2, 3, 4\)"):
        load_into(net, path)
