"""Image decoding (issue 13 items 7, 8, 9): damaged files refused with the file named, EXIF
orientation applied, alpha carried through infer.py and stated by evaluation, infer.py output
names that never overwrite each other, and a corrupt file in a folder reported while the rest
is written."""
import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from model_utils.config import get_config
from src.data.image_io import ImageError, image_size, read_image, read_rgb
from src.data.imresize import imresize
from src.data.train_set import TrainPairs
from src.models import create_model
from src.weights.checkpoint import model_meta, save_checkpoint


def _smooth(h, w, seed=0):
    """Smooth uint8 RGB image (upscaled noise): compresses well and survives JPEG."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3)).astype(np.uint8)
    return np.array(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _jpeg_bytes(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def _png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- item 7: damaged files

def _damaged_files(tmp_path):
    """(file name, bytes) of damaged images that OpenCV decodes silently or libpng refuses."""
    arr = _smooth(96, 128)
    jpg = _jpeg_bytes(arr)
    prog = _jpeg_bytes(arr, progressive=True)
    png = _png_bytes(Image.fromarray(arr))
    flipped = bytearray(png)
    flipped[len(png) // 2] ^= 0xFF  # IDAT CRC no longer matches
    return [
        ("cut_eoi.jpg", jpg[:-2]),                      # only the end-of-image marker missing
        ("cut_half.jpg", jpg[: len(jpg) // 2]),         # "Premature end of JPEG file"
        ("zero_tail.jpg", jpg[: len(jpg) // 2] + bytes(len(jpg) - len(jpg) // 2)),  # same size, tail zeroed
        ("cut_progressive.jpg", prog[: len(prog) // 3]),
        ("cut_iend.png", png[:-12]),                    # pixels complete, IEND chunk missing
        ("cut_half.png", png[: len(png) // 2]),
        ("bad_crc.png", bytes(flipped)),
    ]


def test_opencv_would_decode_a_truncated_jpeg_silently(tmp_path):
    """The kind is real: OpenCV returns a full-size grey-filled image for a truncated JPEG."""
    path = tmp_path / "cut.jpg"
    jpg = _jpeg_bytes(_smooth(96, 128))
    path.write_bytes(jpg[: len(jpg) // 2])
    silent = cv2.imread(str(path))
    assert silent is not None and silent.shape == (96, 128, 3)


def test_damaged_images_are_refused_with_the_file_named(tmp_path):
    for name, data in _damaged_files(tmp_path):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as exc:
            read_rgb(str(path))
        msg = str(exc.value)
        assert str(path) in msg and ("truncated or damaged" in msg or "cannot decode" in msg), (name, msg)
        assert "\n" not in msg


def test_intact_images_still_read(tmp_path):
    arr = _smooth(96, 128)
    (tmp_path / "ok.jpg").write_bytes(_jpeg_bytes(arr) + b"trailing data after EOI")  # tolerated by every viewer
    out = read_rgb(str(tmp_path / "ok.jpg"))
    assert out.shape == (96, 128, 3) and np.abs(out.astype(int) - arr).mean() < 3
    Image.fromarray(arr).save(tmp_path / "ok.png")
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "ok.png")), arr)


def test_training_reports_a_truncated_jpeg_and_uses_the_rest(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_smooth(64, 64, seed=i)).save(folder / f"{i}.png")
    jpg = _jpeg_bytes(_smooth(64, 64, seed=5))
    (folder / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    pairs = TrainPairs(str(folder), 2, 8, cache_dir=str(tmp_path / "c"))
    assert len(pairs) == 2 and len(pairs.unreadable) == 1 and pairs.unreadable[0].startswith("cut.jpg")
    assert "truncated" in pairs.unreadable[0]


def test_deep_images_are_refused_not_reduced_to_8_bit(tmp_path):
    """Pillow opens 16-bit RGB PNG/TIFF in an 8-bit mode; they must still be refused."""
    deep = (np.random.default_rng(0).random((8, 8, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), deep)
    cv2.imwrite(str(tmp_path / "rgba16.png"), np.dstack([deep, deep[..., :1]]))
    cv2.imwrite(str(tmp_path / "gray16.png"), deep[..., 0])
    cv2.imwrite(str(tmp_path / "rgb16.tif"), deep)
    for name in ("rgb16.png", "rgba16.png", "gray16.png", "rgb16.tif"):
        with pytest.raises(ImageError, match=rf"{name.replace('.', '[.]')} is uint16 \(16-bit\); only 8-bit"):
            read_rgb(str(tmp_path / name))


# ---------------------------------------------------------------- item 8: orientation and alpha

def _with_orientation(arr, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    extra = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(arr).save(buf, fmt, exif=exif.tobytes(), **extra)
    return buf.getvalue()


# what a viewer shows for each EXIF orientation of stored pixels s
_DISPLAYED = {1: lambda s: s, 3: lambda s: s[::-1, ::-1], 6: lambda s: np.rot90(s, -1),
              8: lambda s: np.rot90(s, 1), 2: lambda s: s[:, ::-1], 5: lambda s: s.transpose(1, 0, 2)}


@pytest.mark.parametrize("orientation", sorted(_DISPLAYED))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = _smooth(24, 40)
    stored[:4, :4] = (255, 0, 0)  # a red corner tells the rotation direction
    path = tmp_path / "o.png"
    path.write_bytes(_with_orientation(stored, orientation, "PNG"))
    out = read_rgb(str(path))
    np.testing.assert_array_equal(out, _DISPLAYED[orientation](stored))
    assert image_size(str(path)) == (out.shape[1], out.shape[0])


def test_phone_jpeg_with_orientation_6_comes_out_upright(tmp_path):
    stored = _smooth(48, 64)  # a landscape sensor image, shown as portrait
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(stored, 6, "JPEG"))
    out = read_rgb(str(path))
    assert out.shape == (64, 48, 3)
    plain = np.asarray(Image.open(path).convert("RGB"))  # the stored (sideways) pixels
    np.testing.assert_array_equal(out, np.rot90(plain, -1))
    # training sees the upright image too
    pairs = TrainPairs(str(tmp_path), 2, 8)
    assert pairs.pair(0)[1].shape == (64, 48, 3)


def _alpha_images(tmp_path):
    """{name: (path, expected rgb, expected alpha)} for RGBA, LA, palette+tRNS and RGB colour key."""
    rgb = _smooth(20, 24)
    alpha = np.zeros((20, 24), np.uint8)
    alpha[:, 12:] = 255
    alpha[5:9, 2:6] = 128
    out = {}
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    out["rgba"] = (tmp_path / "rgba.png", rgb, alpha)
    gray = rgb[..., 1]
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "la.png")
    out["la"] = (tmp_path / "la.png", np.repeat(gray[..., None], 3, 2), alpha)
    index = (np.arange(20 * 24).reshape(20, 24) % 4).astype(np.uint8)
    pal = Image.fromarray(index, "P")
    pal.putpalette([10, 20, 30, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 756)
    pal.save(tmp_path / "pal.png", transparency=2)
    colours = np.array([[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
    out["palette"] = (tmp_path / "pal.png", colours[index], np.where(index == 2, 0, 255).astype(np.uint8))
    key = rgb.copy()
    key[:, :6] = (1, 2, 3)
    Image.fromarray(key).save(tmp_path / "key.png", transparency=(1, 2, 3))
    key_alpha = np.where((key == (1, 2, 3)).all(2), 0, 255).astype(np.uint8)
    out["colour_key"] = (tmp_path / "key.png", key, key_alpha)
    return out


def test_alpha_is_returned_by_read_image(tmp_path):
    for name, (path, rgb, alpha) in _alpha_images(tmp_path).items():
        got_rgb, got_alpha = read_image(str(path))
        assert got_alpha is not None, name
        np.testing.assert_array_equal(got_rgb, rgb, err_msg=name)
        np.testing.assert_array_equal(got_alpha, alpha, err_msg=name)
        np.testing.assert_array_equal(read_rgb(str(path)), rgb, err_msg=name)
    Image.fromarray(_smooth(8, 8)).save(tmp_path / "plain.png")
    assert read_image(str(tmp_path / "plain.png"))[1] is None


@pytest.fixture(scope="module")
def ckpt_x2(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer_ckpt")
    net = create_model("abpn", "M2C8", 2)
    path = str(root / "abpn_x2.ckpt")
    save_checkpoint(net, path, meta=model_meta(net))
    return path


def _infer(ckpt, src, out, capsys=None):
    from infer import main  # pylint: disable=import-outside-toplevel
    code = main(["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt,
                 "--input_path", str(src), "--output_path", str(out)])
    captured = capsys.readouterr() if capsys is not None else None
    return code, captured


def test_infer_keeps_alpha_as_rgba_png(tmp_path, ckpt_x2):
    (tmp_path / "in").mkdir()
    images = _alpha_images(tmp_path / "in")
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    for name, (_, rgb, _) in images.items():
        Image.fromarray(rgb).save(plain_dir / f"{name}.png")
    code, _ = _infer(ckpt_x2, tmp_path / "in", tmp_path / "out")
    assert code == 0
    code, _ = _infer(ckpt_x2, plain_dir, tmp_path / "out_plain")
    assert code == 0
    stems = {"rgba": "rgba", "la": "la", "palette": "pal", "colour_key": "key"}
    for name, (_, rgb, alpha) in images.items():
        out = Image.open(tmp_path / "out" / f"{stems[name]}_x2.png")
        assert out.mode == "RGBA" and out.size == (48, 40), name
        arr = np.asarray(out)
        # colour: exactly what the model gives for the RGB image alone
        np.testing.assert_array_equal(arr[..., :3], np.asarray(Image.open(tmp_path / "out_plain" / f"{name}_x2.png")))
        # alpha: MATLAB bicubic x2 of alpha in [0, 1], clipped and rounded
        want = np.floor(np.clip(imresize(alpha / 255.0, 2.0), 0, 1) * 255 + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(arr[..., 3], want)
    rgba = np.asarray(Image.open(tmp_path / "out" / "rgba_x2.png"))[..., 3]
    assert (rgba[:, 30:] == 255).all() and (rgba[20:, :16] == 0).all()  # opaque stays opaque, clear stays clear


def test_evaluation_states_that_alpha_is_dropped(tmp_path, ckpt_x2):
    from src.engine.evaluate import run_evaluation  # pylint: disable=import-outside-toplevel
    rgb = _smooth(48, 48)
    alpha = np.full((48, 48), 255, np.uint8)
    alpha[:, :10] = 0
    for name, arr in (("WithAlpha", np.dstack([rgb, alpha])), ("NoAlpha", rgb)):
        (tmp_path / "data" / "benchmark" / name / "HR").mkdir(parents=True)
        Image.fromarray(arr).save(tmp_path / "data" / "benchmark" / name / "HR" / "img.png")
    logs = []
    cfg = get_config(["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt_x2,
                      "--data_path", str(tmp_path / "data"), "--eval_datasets", "WithAlpha,NoAlpha",
                      "--cache_dir", str(tmp_path / "c"), "--output_path", str(tmp_path / "o"),
                      "--result_file", str(tmp_path / "r.json")])
    report = run_evaluation(cfg, log=logs.append)
    assert "alpha" in report["protocol"] and report["protocol"]["alpha"].startswith("dropped")
    assert report["results"]["WithAlpha"]["alpha_dropped"] == ["img (HR)"]
    assert report["results"]["NoAlpha"]["alpha_dropped"] == []
    assert any(line.startswith("WithAlpha: alpha channel dropped for 1 image(s)") for line in logs)
    # the metrics are those of the stored RGB values
    assert report["results"]["WithAlpha"]["psnr"] == report["results"]["NoAlpha"]["psnr"]
    assert json.loads((tmp_path / "r.json").read_text())["protocol"]["alpha"] == report["protocol"]["alpha"]


# ---------------------------------------------------------------- item 9: infer.py output names

def test_infer_inputs_with_the_same_stem_get_distinct_outputs(tmp_path, ckpt_x2, capsys):
    src = tmp_path / "in"
    src.mkdir()
    a, b = _smooth(16, 16, seed=1), _smooth(16, 16, seed=2)
    Image.fromarray(a).save(src / "a.png")
    (src / "a.jpg").write_bytes(_jpeg_bytes(b))
    Image.fromarray(a).save(src / "c.png")
    code, captured = _infer(ckpt_x2, src, tmp_path / "out", capsys)
    assert code == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["a_jpg_x2.png", "a_png_x2.png", "c_x2.png"]
    assert "wrote 3 image(s)" in captured.out  # the count is the number of files written
    # the two outputs come from their own inputs
    png_out = read_rgb(str(tmp_path / "out" / "a_png_x2.png"))
    assert np.array_equal(png_out, read_rgb(str(tmp_path / "out" / "c_x2.png")))
    assert not np.array_equal(png_out, read_rgb(str(tmp_path / "out" / "a_jpg_x2.png")))


def test_infer_refuses_names_that_still_clash(tmp_path, ckpt_x2, capsys):
    from src.engine.upscale_images import output_names  # pylint: disable=import-outside-toplevel
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "a.jpg", "a_png.bmp"):  # a.png -> a_png_x2.png, as does a_png.bmp
        Image.fromarray(_smooth(16, 16)).save(src / name)
    code, captured = _infer(ckpt_x2, src, tmp_path / "out", capsys)
    err = [l for l in captured.err.splitlines() if l.startswith("error:")]
    assert code == 2 and len(err) == 1 and "a.png and a_png.bmp -> a_png_x2.png" in err[0]
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    # names differing only in case clash on macOS / Windows file systems
    assert output_names(["d/B.png", "d/b.jpg"], 3) == {"d/B.png": "B_png_x3.png", "d/b.jpg": "b_jpg_x3.png"}


def test_infer_never_writes_over_an_input(tmp_path, ckpt_x2, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_smooth(16, 16)).save(src / "a.png")
    Image.fromarray(_smooth(16, 16, seed=3)).save(src / "a_x2.png")
    before = (src / "a_x2.png").read_bytes()
    code, captured = _infer(ckpt_x2, src, src, capsys)
    assert code == 2 and "output would replace an input image" in captured.err
    assert (src / "a_x2.png").read_bytes() == before


def test_infer_reports_a_corrupt_file_and_writes_the_rest(tmp_path, ckpt_x2, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(_smooth(16, 16, seed=i)).save(src / f"ok{i}.png")
    jpg = _jpeg_bytes(_smooth(32, 32))
    (src / "broken.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "notimage.png").write_bytes(b"hello")
    code, captured = _infer(ckpt_x2, src, tmp_path / "out", capsys)
    assert code == 2
    assert sorted(os.listdir(tmp_path / "out")) == ["ok0_x2.png", "ok1_x2.png"]
    skipped = [l for l in captured.out.splitlines() if l.startswith("skipped:")]
    assert len(skipped) == 2 and "broken.jpg is truncated" in skipped[0] and "notimage.png" in skipped[1]
    assert "wrote 2 image(s)" in captured.out
    err = [l for l in captured.err.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and "2 of 4 input images could not be read" in err[0]
    assert "broken.jpg" in err[0] and "notimage.png" in err[0]


def test_infer_single_damaged_file_is_one_line(tmp_path, ckpt_x2, capsys):
    jpg = _jpeg_bytes(_smooth(32, 32))
    (tmp_path / "one.jpg").write_bytes(jpg[:-2])
    code, captured = _infer(ckpt_x2, tmp_path / "one.jpg", tmp_path / "out", capsys)
    err = [l for l in captured.err.splitlines() if l.strip()]
    assert code == 2 and len(err) == 1 and "one.jpg is truncated or damaged" in err[0]



def test_folders_named_like_images_are_not_images(tmp_path, ckpt_x2, capsys):
    """A sub-folder ``x.png/`` in an input folder is skipped, not read; read_rgb names a folder as one."""
    from src.data.image_io import list_images  # pylint: disable=import-outside-toplevel
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_smooth(16, 16)).save(src / "ok.png")
    (src / "x.png").mkdir()
    assert list_images(str(src)) == [str(src / "ok.png")]
    with pytest.raises(ImageError, match="is a folder, not an image"):
        read_rgb(str(src / "x.png"))
    code, captured = _infer(ckpt_x2, src, tmp_path / "out", capsys)
    assert code == 0 and os.listdir(tmp_path / "out") == ["ok_x2.png"]
    assert "wrote 1 image(s)" in captured.out


def _rgb565_bmp(width, height, pixels):
    """A 16-bit BI_BITFIELDS (RGB565) BMP: 8-bit colour packed in 16 bits, not 16-bit depth."""
    import struct  # pylint: disable=import-outside-toplevel
    row = (width * 2 + 3) // 4 * 4
    data = b"".join(b"".join(struct.pack("<H", p) for p in pixels[y]).ljust(row, b"\0")
                    for y in reversed(range(height)))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 16, 3, len(data), 2835, 2835, 0, 0)
    masks = struct.pack("<III", 0xF800, 0x07E0, 0x001F)
    offset = 14 + len(info) + len(masks)
    return struct.pack("<2sIHHI", b"BM", offset + len(data), 0, 0, offset) + info + masks + data


def test_rgb565_bmp_is_read_not_refused_as_16_bit(tmp_path):
    """Pillow's raw mode 'BGR;16' of an RGB565 BMP is not a 16-bit depth (only PNG/TIFF raw modes are)."""
    path = tmp_path / "565.bmp"
    path.write_bytes(_rgb565_bmp(4, 2, [[0xF800, 0x07E0, 0x001F, 0xFFFF], [0, 0, 0, 0]]))
    rgb = read_rgb(str(path))
    assert rgb.shape == (2, 4, 3)
    assert rgb[0, 0, 0] > 240 and rgb[0, 0, 1:].max() == 0 and rgb[0, 1, 1] > 240 and rgb[0, 2, 2] > 240
    assert rgb[1].max() == 0 and image_size(str(path)) == (4, 2)


def test_image_size_reads_png_headers_without_decoding(tmp_path, monkeypatch):
    """image_size (used to check every DIV2K LR file before training) must not decode PNG pixels,
    and still applies an eXIf orientation stored before the image data."""
    from PIL import PngImagePlugin  # pylint: disable=import-outside-toplevel
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_smooth(16, 24)).save(tmp_path / "o.png", exif=exif)
    Image.fromarray(_smooth(16, 24)).save(tmp_path / "plain.png")  # no EXIF at all, as DIV2K files

    def no_decode(*_args, **_kwargs):
        raise AssertionError("image_size decoded the pixels")
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    assert image_size(str(tmp_path / "o.png")) == (16, 24)  # 24 wide x 16 high, stored sideways
    assert image_size(str(tmp_path / "plain.png")) == (24, 16)
