"""Bad-input sweep (issue 13; item 20: issue 14's mobile files): hostile files, faults and bad values against the
entry scripts.

    python tests/bad_input_sweep.py [--root DIR] [--only KIND|CASE,...] [--json out.json] [--jobs 1]
    SR_SHARED=/path/to/shared python tests/bad_input_sweep.py --root /path/to/checkout --json out.json
    python tests/bad_input_sweep.py --list

Each case builds its own hostile input in a temporary folder, runs the project
checked out at ``--root`` (``eval.py``, ``infer.py``, ``export.py``, ``train.py``,
``scripts/convert_torch_weights.py``, or a short ``python -c`` snippet, always
with ``cwd=root`` and this Python), and a judge decides:

HELD   refused cleanly: exit code 2, no traceback, no signal, and stderr holds exactly
       one line ``error: ...``, with nothing that existed before overwritten or left
       half-written. Ignored on stderr: MindSpore's ``[WARNING]``/``[INFO]`` log lines,
       tqdm progress bars and the diagnostics libpng/libjpeg print on their own
       (MindSpore ``[ERROR]``/``[CRITICAL]`` lines do count). argparse's ``usage: ...``
       block followed by ``prog: error: ...`` counts as one line, since argparse always
       prints the usage first. Where the issue asks that the line names the file,
       option or image, the judge checks that (option words outside paths, file names
       anywhere);
       or answered correctly: exit 0 and the right value (a PSNR within 0.01 dB of the
       reference run, an upright EXIF image, an RGBA output, one output per input,
       the same tensors, equal weight digests, ...). Where both outcomes are honest
       (``scale: 3.0`` read as 3 or refused, clashing output names made distinct or
       refused) the judge accepts both.
FAILED anything else: a wrong answer with exit 0, a traceback, a signal (segfault),
       another exit code, a timeout, process memory copied into an output, a file
       written through a symlink, a model built from absurd metadata, ... The reason
       is printed.

Every child runs in its own process group with an address-space limit
(``--mem_gb``, default 6 GiB; MindSpore on CPU runs these cases in 4) and a time
limit (``--timeout``); the peak RSS of each child is recorded (the zip-bomb case
fails a reader that inflates the member, the metadata cases one that builds the
model first). A full disk is simulated with ``RLIMIT_FSIZE`` (writes past 24 KiB
fail with EFBIG). MindSpore's failure dumps go to the work folder (``MS_OM_PATH``),
so the checkout under test is left as it was. Cases that need the shared data
(``SR_SHARED``) are skipped, and listed, when it is not set; read-only-folder cases
are skipped when running as root (root writes anyway).

Output: a table per kind (tried, held), ``N held of M``, one line per FAILED case
with its reason; ``--json`` writes every case with its commands and outcome.
About 14 minutes for all cases on 2 CPU cores (mobile_files: 1 minute).
"""
import argparse
import collections
import concurrent.futures
import csv
import glob
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PyTorch zip-format files without torch (also hostile ones): the writer the tests use (this folder)
from torch_format import RawTensor as T, pickle_torch_tree, write_torch_zip  # noqa: E402
GiB = 2 ** 30

# ----------------------------------------------------------------------------------------
# catalogue
# ----------------------------------------------------------------------------------------

Case = collections.namedtuple("Case", "kind item name fn needs")
CASES = []

KINDS = collections.OrderedDict([
    ("weights_pth", "hostile .pth weight files (1)"),
    ("ckpt_meta", "checkpoint metadata (2)"),
    ("temp_symlink", "temp files and symlinks (3)"),
    ("same_file", "writer output is its input (4)"),
    ("lr_hr_pairs", "LR/HR pairs (5)"),
    ("caches", "LR caches keyed on content (6)"),
    ("image_decode", "image decoding: truncated JPEG, EXIF, alpha (7, 8)"),
    ("infer_outputs", "infer.py outputs (9)"),
    ("torch_wrappers", "PyTorch wrappers: module., params/params_ema (10)"),
    ("ssim_small", "image too small for SSIM (11)"),
    ("export_meta", "exported metadata and tiling (12)"),
    ("n_colors", "models expose n_colors (13)"),
    ("run_identity", "run identity, resume, determinism, logs (14, 16, 17)"),
    ("non_finite", "non-finite values (15)"),
    ("config", "config values (18)"),
    ("output_paths", "output paths: files, read-only, full disk (19)"),
    ("device_misc", "device, corrupt models, calibration (19)"),
    ("mobile_files", "mobile files: TFLite/ORT export options and runners (20: issue 14)"),
    ("recent", "recent features: results of another run, bombs, shared run folders, files replaced before their "
               "check, impossible shapes, skipped inputs, unchecked metadata, unhelpful errors (issue 26)"),
])


def case(kind, item, name, needs=()):
    """Register ``fn(ctx, d) -> (held, reason)`` as a case; ``d`` is a fresh folder for it."""
    assert kind in KINDS, kind

    def deco(fn):
        CASES.append(Case(kind, item, name, fn, tuple(needs)))
        return fn
    return deco


class Skip(Exception):
    """The case cannot run here (no shared data, running as root, ...)."""


# ----------------------------------------------------------------------------------------
# running children
# ----------------------------------------------------------------------------------------

class Proc:
    """Outcome of one child: exit code (negative = signal), output, peak RSS, timing."""

    def __init__(self, cmd, rc, stdout, stderr, maxrss_mb, timed_out, seconds):
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr
        self.maxrss_mb, self.timed_out, self.seconds = maxrss_mb, timed_out, seconds

    @property
    def out(self):
        return self.stdout + "\n" + self.stderr

    def brief(self):
        tail = stderr_lines(self.stderr)
        last = tail[-1][:200] if tail else ""
        return f"exit {self.rc}" + (" (timeout)" if self.timed_out else "") + (f"; stderr: {last}" if last else "")


class Ctx:
    """Where and how children run; lazily built shared fixtures."""

    def __init__(self, root, work, shared=None, timeout=300, mem_gb=6.0, python=sys.executable):
        self.root, self.work, self.shared = os.path.abspath(root), work, shared
        self.timeout, self.mem_gb, self.python = timeout, mem_gb, python
        self._fixtures, self._locks, self._lock = {}, {}, threading.Lock()
        self._local = threading.local()
        self.env = dict(os.environ)
        self.env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", TMPDIR=work,
                        GLOG_v="2",  # MindSpore: warnings and errors only
                        MS_OM_PATH=os.path.join(work, "ms_om"))  # MindSpore's failure dumps, not into root
        self.env["PATH"] = os.path.dirname(python) + os.pathsep + self.env.get("PATH", "")

    # -- commands recorded per case --
    def begin_case(self):
        self._local.commands = []

    def commands(self):
        return list(getattr(self._local, "commands", []))

    def run(self, argv, cwd=None, timeout=None, mem_gb=None, fsize=None, after_start=None, env=None):
        cap = int((mem_gb or self.mem_gb) * GiB)
        timeout = timeout or self.timeout

        def limits():
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        shown = " ".join(_quote(a) for a in argv)
        if hasattr(self._local, "commands"):
            self._local.commands.append(shown if len(shown) < 4000 else shown[:4000] + " ...")
        out, err = tempfile.TemporaryFile(dir=self.work), tempfile.TemporaryFile(dir=self.work)
        start = time.time()
        proc = subprocess.Popen(argv, cwd=cwd or self.root, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env or self.env, preexec_fn=limits, start_new_session=True)
        killed = []

        def kill():
            killed.append(True)
            _killpg(proc.pid)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            if after_start is not None:
                after_start(proc)
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        _killpg(proc.pid)  # helpers it may have left in its group
        out.seek(0)
        err.seek(0)
        result = Proc(shown, proc.returncode, out.read().decode("utf-8", "replace"),
                      err.read().decode("utf-8", "replace"), usage.ru_maxrss / 1024.0, bool(killed),
                      time.time() - start)
        out.close()
        err.close()
        return result

    def entry(self, script, *args, **kw):
        return self.run([self.python, script, *[str(a) for a in args]], **kw)

    def py(self, code, *args, **kw):
        prelude = "import sys, os; sys.path.insert(0, os.getcwd())\n"
        return self.run([self.python, "-c", prelude + code, *[str(a) for a in args]], **kw)

    def py_json(self, code, *args, **kw):
        """Run a snippet that prints ``JSON:<payload>``; return the payload (raise on failure)."""
        proc = self.py(code, *args, **kw)
        for line in proc.stdout.splitlines()[::-1]:
            if line.startswith("JSON:"):
                return json.loads(line[5:])
        raise RuntimeError(f"helper snippet failed: {proc.brief()}\n{proc.stderr[-1500:]}")

    def fixture(self, name, build):
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._fixtures:
                folder = os.path.join(self.work, "fixtures", name)
                os.makedirs(folder, exist_ok=True)
                self._fixtures[name] = build(self, folder)
            return self._fixtures[name]


def alive(proc):
    """Whether ``proc`` still runs, without reaping it (``Ctx.run`` collects its status and rusage)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _killpg(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _quote(arg):
    arg = str(arg)
    if "\n" in arg:
        return "'<snippet>'"
    return arg if re.match(r"^[\w./,:=+@%-]+$", arg) else "'" + arg.replace("'", "'\\''") + "'"


# ----------------------------------------------------------------------------------------
# judges
# ----------------------------------------------------------------------------------------

_NOISE = (re.compile(r"^\[(WARNING|INFO|DEBUG)\] "), re.compile(r"\d+%\|"),
          # diagnostics native image libraries print on their own (not the project's message)
          re.compile(r"^(libpng (warning|error): |Premature end of JPEG file|Corrupt JPEG data: |"
                     r"Invalid SOS parameters|JPEG datastream contains no image)"),
          re.compile(r"\[\d\d:\d\d<[^\]]*\]\s*$"))
_ERROR_LINE = re.compile(r"^(\S+: )?error: \S")


def stderr_lines(text):
    """Non-empty stderr lines without MindSpore log lines and tqdm progress bars."""
    lines = []
    for raw in re.split(r"[\r\n]+", text or ""):
        line = raw.rstrip()
        if line.strip() and not any(p.search(line) for p in _NOISE):
            lines.append(line)
    return lines


def _without_usage(lines):
    out, in_usage = [], False
    for line in lines:
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line[:1].isspace():
            continue
        in_usage = False
        out.append(line)
    return out


def crashed(p):
    """Reason string if the child crashed, timed out or printed a traceback; else ''."""
    if p.timed_out:
        return f"timed out after {p.seconds:.0f} s"
    if p.rc < 0:
        return f"killed by signal {signal.Signals(-p.rc).name}" if -p.rc in signal.valid_signals() else \
            f"killed by signal {-p.rc}"
    if "Traceback (most recent call last)" in p.out or "Fatal Python error" in p.out:
        tail = [l for l in stderr_lines(p.stderr) if not l.startswith(" ")]
        return f"traceback (exit {p.rc}): {tail[-1][:200] if tail else '?'}"
    if "Segmentation fault" in p.out or "core dumped" in p.out:
        return "segmentation fault"
    return ""


def refused(p, mention=(), mention_any=()):
    """(held, reason) for a clean one-line refusal: exit 2, one ``error:`` line.

    ``mention``: words that must all appear in the line; ``mention_any``: at least one
    (case-insensitive), for the cases where the issue asks that the line names the
    file, option or problem.
    """
    bad = crashed(p)
    if bad:
        return False, bad
    if p.rc == 0:
        return False, "exit 0: accepted instead of refused" + _stdout_hint(p)
    if p.rc != 2:
        return False, p.brief()
    lines = _without_usage(stderr_lines(p.stderr))
    if len(lines) != 1:
        return False, f"exit 2 but {len(lines)} stderr lines: " + " | ".join(l[:120] for l in lines[:4])
    line = lines[0]
    if not _ERROR_LINE.match(line):
        return False, f"exit 2 but the line is not 'error: ...': {line[:200]}"
    missing = [w for w in mention if not _names(line, w)]
    if missing:
        return False, f"refused without naming {missing}: {line[:220]}"
    if mention_any and not any(_names(line, w) for w in mention_any):
        return False, f"refused without naming any of {list(mention_any)}: {line[:220]}"
    return True, "refused: " + line[:220]


def _names(line, word):
    """Whether ``line`` names ``word``: file names (with a dot) anywhere, other words outside paths."""
    if "." not in word:
        line = re.sub(r"\S*/\S*", " ", line)
    return word.lower() in line.lower()


def _stdout_hint(p):
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    return f" (stdout: {lines[-1][:160]})" if lines else ""


def ok_exit(p):
    """'' if the child exited 0 cleanly, else the reason."""
    bad = crashed(p)
    if bad:
        return bad
    if p.rc != 0:
        return p.brief()
    return ""


def either(*verdicts):
    """HELD if any verdict held; else the reasons joined."""
    for held, reason in verdicts:
        if held:
            return True, reason
    return False, " / ".join(r for _, r in verdicts)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(folder):
    """{relative path: sha256 or 'LINK->target'} of every file below ``folder``."""
    out = {}
    for base, dirs, files in os.walk(folder):
        for f in files + [x for x in dirs if os.path.islink(os.path.join(base, x))]:
            full = os.path.join(base, f)
            rel = os.path.relpath(full, folder)
            out[rel] = "LINK->" + os.readlink(full) if os.path.islink(full) else sha(full)
    return out


def stray_temps(folder):
    """Hidden temp files left in ``folder`` (half-written outputs)."""
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if "tmp" in f.lower() and f.startswith("."))


def report_psnr(path, dataset=None):
    with open(path, encoding="utf-8") as fh:
        report = json.load(fh)
    results = report["results"]
    name = dataset or next(iter(results))
    return float(results[name]["psnr"])


def close(a, b, tol=0.01):
    return a is not None and b is not None and abs(a - b) <= tol


def same_psnr(p, value, ref, held_text, failed_text):
    """HELD when the child exited 0 cleanly with ``value`` within 0.01 dB of ``ref``; the texts are
    formatted with ``value`` and ``ref``."""
    why = ok_exit(p)
    if why:
        return False, why
    return (True, held_text.format(value=value, ref=ref)) if close(value, ref) else \
        (False, failed_text.format(value=value, ref=ref))


# ----------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------

def smooth_image(size, seed=0, channels=3):
    """Smooth uint8 image (upscaled noise), ``size`` = (h, w) or an int."""
    import cv2  # pylint: disable=import-outside-toplevel
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), channels)).astype(np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return img if channels > 1 else img[..., None]


def write_images(folder, count, size, seed=0, ext=".png", names=None):
    import cv2  # pylint: disable=import-outside-toplevel
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        name = names[i] if names else f"img{i}"
        path = os.path.join(folder, name + ext)
        cv2.imwrite(path, smooth_image(size, seed * 100 + i))
        paths.append(path)
    return paths


def read_any(path):
    """Decoded image with all channels (cv2, BGR[A] order) or None."""
    import cv2  # pylint: disable=import-outside-toplevel
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


# ----------------------------------------------------------------------------------------
# PyTorch zip-format writer (no torch): arbitrary, also hostile, tensors and members
# ----------------------------------------------------------------------------------------

# ABPN-M4C28 x3 as published (ETDS repository): backbone.0, .2-.5 (.0), .6, .8
ABPN_SHAPES = collections.OrderedDict(
    [("backbone.0.weight", (28, 3, 3, 3)), ("backbone.0.bias", (28,))]
    + [x for i in range(2, 6) for x in ((f"backbone.{i}.0.weight", (28, 28, 3, 3)), (f"backbone.{i}.0.bias", (28,)))]
    + [("backbone.6.weight", (27, 28, 3, 3)), ("backbone.6.bias", (27,)),
       ("backbone.8.weight", (27, 27, 3, 3)), ("backbone.8.bias", (27,))])


def abpn_state(seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    return collections.OrderedDict((k, (rng.standard_normal(s) * scale).astype(np.float32))
                                   for k, s in ABPN_SHAPES.items())


def pth_from_arrays(path, arrays, prefix="", wrap=None):
    """A well-formed .pth of ``{name: float32 array}`` (names prefixed; optionally wrapped)."""
    obj, storages = collections.OrderedDict(), {}
    for i, (name, arr) in enumerate(arrays.items()):
        storages[str(i)] = np.ascontiguousarray(arr, np.float32).tobytes()
        obj[prefix + name] = T(i, arr.shape, numel=arr.size)
    if wrap:
        obj = wrap(obj)
    return write_torch_zip(path, obj, storages)


class _Evil:
    """Pickles as a call of ``os.system`` (the unpickler must refuse, never run it)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# ----------------------------------------------------------------------------------------
# fixtures built with the project under test (one MindSpore start for all)
# ----------------------------------------------------------------------------------------

_MODELS_CODE = r"""
import json, sys
import numpy as np
import mindspore as ms
from src.models import create_model
from src.weights.checkpoint import model_meta, save_checkpoint
out = sys.argv[1]
made = {}
def save(name, net, meta=None):
    path = f"{out}/{name}.ckpt"
    save_checkpoint(net, path, meta=meta if meta is not None else model_meta(net))
    made[name] = path
for s in (2, 3, 4):
    ms.set_seed(0)
    save(f"abpn_M2C8_x{s}", create_model("abpn", "M2C8", s))
ms.set_seed(0)
save("abpn_M4C28_x3_rand", create_model("abpn", "M4C28", 3))
# EDSR-baseline x2 whose output needs context up to 32 LR pixels to the left: every residual block
# shifts channels 0-2 right by 2 px (x + S^2 x), so out = (x + sum_k C(16,k) x(j - 2k) / 2^16) / 2 and
# 40% of the averaged term lies beyond 16 px. Tiling with less than 32 px of overlap is visibly wrong.
net = create_model("edsr", "baseline", 2)
vals = {p.name: np.zeros(p.shape, np.float32) for p in net.get_parameters()}
for c in range(3):
    vals["conv_first.weight"][c, c, 1, 1] = 1.0
    vals["conv_first.bias"][c] = 150.0  # features stay positive, so the ReLUs pass them
    for i in range(16):
        vals[f"body.{i}.conv1.weight"][c, c, 1, 0] = 1.0
        vals[f"body.{i}.conv2.weight"][c, c, 1, 0] = 1.0
    vals["conv_after_body.weight"][c, c, 1, 1] = 1.0 / 65536
    for k in range(4):  # DepthToSpace (DCR): sub-pixel k of channel c is input channel k * 64 + c
        vals["upsample.0.conv.weight"][k * 64 + c, c, 1, 1] = 1.0
    vals["conv_last.weight"][c, c, 1, 1] = 0.5
    vals["conv_last.bias"][c] = -150.0
for p in net.get_parameters():
    p.set_data(ms.Tensor(vals[p.name]))
save("edsr_longrange_x2", net)
ms.set_seed(0)
save("sesr_M3_x2", create_model("sesr", "M3", 2))
ms.set_seed(0)
save("sesr_M3_x2_train", create_model("sesr", "M3", 2, form="train"))
# ABPN with n_colors 1 (a Y model), built from the family class directly
from src.models import abpn
ms.set_seed(0)
net = abpn.build("M2C8", 2, n_colors=1)
from src.models.base import ModelSpec
net.spec = ModelSpec.of("abpn", "M2C8", 2, "deploy", {"n_colors": 1})
save("abpn_M2C8_x2_n1", net, {"model": "abpn", "variant": "M2C8", "scale": 2, "form": "deploy", "n_colors": 1})
print("JSON:" + json.dumps(made))
"""


def _models(ctx, folder):
    made = ctx.py_json(_MODELS_CODE, folder, timeout=600)
    shipped = os.path.join(ctx.root, "pretrained", "abpn_M4C28_x3.ckpt")
    made["abpn_M4C28_x3"] = shipped if os.path.isfile(shipped) else made["abpn_M4C28_x3_rand"]
    return made


def models(ctx):
    return ctx.fixture("models", _models)


_WRITE_CKPT_CODE = r"""
import json, sys
import numpy as np
import mindspore as ms
src_path, dst, meta = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
raw = ms.load_checkpoint(src_path)
keep = {"model", "variant", "scale", "form", "n_colors", "act", "linear_block_type", "feature_size",
        "adder_eta", "quant_config", "quant_method"}
params = [{"name": k, "data": v} for k, v in raw.items() if k not in keep and hasattr(v, "asnumpy")]
ms.save_checkpoint(params, dst, append_dict=meta)
print("JSON:" + json.dumps(dst))
"""


def ckpt_with_meta(ctx, src, dst, meta):
    """Copy the tensors of ``src`` into ``dst`` with exactly ``meta`` (written by MindSpore, not the project)."""
    return ctx.py_json(_WRITE_CKPT_CODE, src, dst, json.dumps(meta))


_CKPT_SUMMARY_CODE = r"""
import hashlib, json, sys
import numpy as np
import mindspore as ms
out = {}
for p in sys.argv[1:]:
    try:
        raw = ms.load_checkpoint(p)
    except Exception as exc:
        out[p] = {"__error__": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}
        continue
    entry = {}
    for k, v in raw.items():
        if hasattr(v, "asnumpy"):
            a = np.ascontiguousarray(v.asnumpy())
            entry[k] = {"sha": hashlib.sha1(a.tobytes()).hexdigest(), "shape": list(a.shape),
                        "finite": bool(np.isfinite(a).all()) if a.dtype.kind == "f" else True,
                        "absmax": float(np.abs(a).max()) if a.size and a.dtype.kind == "f" else 0.0}
        else:
            entry[k] = {"value": str(v)[:200]}
    out[p] = entry
print("JSON:" + json.dumps(out))
"""


def ckpt_summary(ctx, *paths):
    return ctx.py_json(_CKPT_SUMMARY_CODE, *paths) if paths else {}


def nonfinite_ckpts(ctx, folder):
    """Names of checkpoints under ``folder`` holding a non-finite tensor."""
    paths = sorted(glob.glob(os.path.join(folder, "**", "*.ckpt"), recursive=True))
    bad = []
    for path, entry in ckpt_summary(ctx, *paths).items():
        if any(isinstance(v, dict) and v.get("finite") is False for v in entry.values()):
            bad.append(os.path.basename(path))
    return bad


def _imresize_code():
    return r"""
import json, sys
import cv2, numpy as np
from src.data.imresize import imresize
src, dst, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
img = cv2.imread(src, cv2.IMREAD_COLOR)[:, :, ::-1]
lr = imresize(img, factor)
cv2.imwrite(dst, np.ascontiguousarray(lr[:, :, ::-1]))
print("JSON:" + json.dumps(list(lr.shape)))
"""


def matlab_resize(ctx, src, dst, factor):
    """The project's MATLAB-compatible bicubic of ``src`` by ``factor`` written to ``dst``."""
    return ctx.py_json(_imresize_code(), src, dst, factor)


def _eval_set(ctx, folder):
    """Three smooth 96x96 HR images as benchmark set ``S``."""
    write_images(os.path.join(folder, "benchmark", "S", "HR"), 3, 96, seed=1)
    return folder


def eval_data(ctx):
    return ctx.fixture("eval_set", _eval_set)


def _train_data(ctx, folder):
    write_images(os.path.join(folder, "train"), 4, 48, seed=2)
    write_images(os.path.join(folder, "data", "benchmark", "Val", "HR"), 1, 48, seed=3)
    return folder


def train_data(ctx):
    return ctx.fixture("train_data", _train_data)


def train_args(ctx, d, *extra, steps=4, val_every=2):
    """A tiny ABPN-M2C8 x2 run: 4 images of 48 px, LR patch 8, batch 2, 4 steps (about 6 s)."""
    t = train_data(ctx)
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", os.path.join(t, "train"),
            "--val_data_path", os.path.join(t, "data"), "--val_datasets", "Val", "--patch_size", "8",
            "--batch_size", "2", "--cache_dir", os.path.join(d, "cache"), "--total_steps", str(steps),
            "--val_every", str(val_every), "--log_every", "1", "--num_workers", "1",
            "--ckpt_dir", os.path.join(d, "ck"), *[str(e) for e in extra]]


def eval_args(ctx, d, ckpt=None, data=None, dataset="S", model="abpn", variant="M4C28", scale=3, extra=()):
    ckpt = ckpt or models(ctx)["abpn_M4C28_x3"]
    return ["--model", model, "--variant", variant, "--scale", str(scale), "--pre_trained", ckpt,
            "--data_path", data or eval_data(ctx), "--eval_datasets", dataset,
            "--cache_dir", os.path.join(d, "cache"), "--output_path", os.path.join(d, "out"),
            "--result_file", os.path.join(d, "r.json"), *[str(e) for e in extra]]


def tiny_eval_args(ctx, d, *extra, scale=2):
    """Eval of the random ABPN-M2C8 on set S (fast, value irrelevant)."""
    return eval_args(ctx, d, ckpt=models(ctx)[f"abpn_M2C8_x{scale}"], variant="M2C8", scale=scale, extra=extra)


def infer_args(ctx, d, input_path, *extra, scale=2, out=None):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", str(scale),
            "--pre_trained", models(ctx)[f"abpn_M2C8_x{scale}"], "--input_path", input_path,
            "--output_path", out or os.path.join(d, "out"), *[str(e) for e in extra]]


def run_eval_psnr(ctx, d, args, tag):
    """(Proc, PSNR of the first dataset or None) for eval.py with ``args`` (result file r_<tag>.json)."""
    result = os.path.join(d, f"r_{tag}.json")
    args = [a for a in args]
    if "--result_file" in args:
        args[args.index("--result_file") + 1] = result
    else:
        args += ["--result_file", result]
    p = ctx.entry("eval.py", *args)
    value = None
    if p.rc == 0 and os.path.isfile(result):
        try:
            value = report_psnr(result)
        except (KeyError, ValueError, StopIteration):
            value = None
    return p, value


def wrong_or_refused(p, value, ref, mention_any=()):
    """HELD: refused cleanly, or exit 0 with the reference PSNR."""
    held, why = refused(p, mention_any=mention_any)
    if held:
        return True, why
    if p.rc == 0 and not crashed(p):
        if close(value, ref):
            return True, f"answered correctly: PSNR {value:.2f} = reference {ref:.2f}"
        return False, f"exit 0 with PSNR {value if value is None else round(value, 2)} (right: {ref:.2f})"
    return False, why


# ========================================================================================
# 1. hostile .pth files (scripts/convert_torch_weights.py)
# ========================================================================================

CONVERT = "scripts/convert_torch_weights.py"


def convert(ctx, src, dst, *extra, **kw):
    return ctx.entry(CONVERT, "--src", src, "--dst", dst, "--model", "abpn", "--variant", "M4C28",
                     "--scale", "3", *extra, **kw)


PTH_NAMES = ("w.pth", "bomb.pth", "backbone", "storage", "archive/", "data.pkl", "pickle")


def refused_nothing_written(p, dst, **kw):
    """Refused in one line naming the file, a tensor, its storage or the pickle; no output left."""
    kw.setdefault("mention_any", PTH_NAMES)
    held, why = refused(p, **kw)
    if held and os.path.exists(dst):
        return False, f"refused but wrote {os.path.basename(dst)}"
    if held and stray_temps(os.path.dirname(dst)):
        return False, f"refused but left {stray_temps(os.path.dirname(dst))}"
    return held, why


def _hostile(ctx, d, mutate, storages_fn=None, **kw):
    """ABPN names/shapes with storages changed by ``mutate(name, T, array) -> (T, bytes)``."""
    obj, storages = collections.OrderedDict(), {}
    for i, (name, arr) in enumerate(abpn_state().items()):
        t, raw = mutate(name, T(i, arr.shape, numel=arr.size), arr)
        obj[name] = t
        if raw is not None:
            storages[t.key] = raw
    src = write_torch_zip(os.path.join(d, "w.pth"), obj, storages)
    dst = os.path.join(d, "w.ckpt")
    return convert(ctx, src, dst, **kw), dst


@case("weights_pth", 1, "valid_pth_converts")
def _(ctx, d):
    arrays = abpn_state()
    src = pth_from_arrays(os.path.join(d, "ok.pth"), arrays)
    dst = os.path.join(d, "ok.ckpt")
    p = convert(ctx, src, dst)
    why = ok_exit(p)
    if why:
        return False, why
    got = ckpt_summary(ctx, dst)[dst]
    want = hashlib.sha1(arrays["backbone.0.weight"].tobytes()).hexdigest()
    if got.get("conv_first.weight", {}).get("sha") != want:
        return False, "conv_first.weight differs from backbone.0.weight"
    return True, "converted, conv_first.weight equal"


@case("weights_pth", 1, "shared_abpn_pth_converts", needs=("shared",))
def _(ctx, d):
    src = os.path.join(ctx.shared, "weights", "etds_repo_x3", "ABPN_M4C28_x3.pth")
    if not os.path.isfile(src):
        raise Skip(f"{src} not found")
    p = convert(ctx, src, os.path.join(d, "abpn.ckpt"))
    why = ok_exit(p)
    return (False, why) if why else (True, "converted the published ABPN .pth")


@case("weights_pth", 1, "four_byte_storages")
def _(ctx, d):
    """Issue example: ABPN names and shapes, every storage 4 bytes (memory read past the buffer)."""
    p, dst = _hostile(ctx, d, lambda n, t, a: (t, a.reshape(-1)[:1].tobytes()))
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "storage_one_element_short")
def _(ctx, d):
    def mutate(name, t, a):
        return t, (a.reshape(-1)[:-1].tobytes() if name == "backbone.6.weight" else a.tobytes())
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "negative_stride")
def _(ctx, d):
    def mutate(name, t, a):
        if name == "backbone.0.weight":
            t.stride = (-10 ** 9,) + t.stride[1:]
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "stride_past_storage")
def _(ctx, d):
    def mutate(name, t, a):
        if name == "backbone.2.0.weight":
            t.stride = (10 ** 6,) + t.stride[1:]
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "offset_beyond_storage")
def _(ctx, d):
    def mutate(name, t, a):
        if name == "backbone.3.0.weight":
            t.offset = 10 ** 7
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "negative_offset")
def _(ctx, d):
    def mutate(name, t, a):
        if name == "backbone.0.bias":
            t.offset = -4096
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "huge_shape_tiny_storage")
def _(ctx, d):
    """Issue example: an 8-byte storage declared 100000x100000x100 (3.6 TiB as float32)."""
    def mutate(name, t, a):
        if name == "backbone.0.weight":
            return T(t.key, (100000, 100000, 100), storage="DoubleStorage", numel=1), np.zeros(1).tobytes()
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "negative_dimension")
def _(ctx, d):
    def mutate(name, t, a):
        if name == "backbone.0.bias":
            t.shape, t.stride = (-28,), (1,)
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "storage_not_multiple_of_dtype")
def _(ctx, d):
    def mutate(name, t, a):
        return t, (a.tobytes() + b"\x00\x01" if name == "backbone.0.bias" else a.tobytes())
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


@case("weights_pth", 1, "missing_storage_member")
def _(ctx, d):
    def mutate(name, t, a):
        if name == "backbone.8.bias":
            t.key = "999"
            return t, None
        return t, a.tobytes()
    p, dst = _hostile(ctx, d, mutate)
    return refused_nothing_written(p, dst)


def _bomb(ctx, folder):
    path = os.path.join(folder, "bomb.pth")
    obj, storages = collections.OrderedDict(), {}
    for i, (name, arr) in enumerate(abpn_state().items()):
        obj[name] = T(i, arr.shape, numel=arr.size)
        if name != "backbone.0.bias":
            storages[str(i)] = arr.tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", pickle_torch_tree(obj, {}))
        zf.writestr("archive/version", "3\n")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
        bomb_key = str(list(ABPN_SHAPES).index("backbone.0.bias"))
        with zf.open(f"archive/data/{bomb_key}", "w", force_zip64=True) as fh:
            chunk = bytes(64 << 20)
            for _ in range(24):  # 1.5 GiB of zeros, about 1.5 MB deflated
                fh.write(chunk)
    return path


@case("weights_pth", 1, "zip_bomb_member")
def _(ctx, d):
    """A 1.5 MB member that inflates to 1.5 GiB: refused without inflating it (peak RSS < 1 GiB)."""
    src = ctx.fixture("bomb", _bomb)
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst)
    held, why = refused_nothing_written(p, dst)
    if p.maxrss_mb > 1024:
        return False, f"inflated the member: peak RSS {p.maxrss_mb:.0f} MiB ({why})"
    return held, why + f" (peak RSS {p.maxrss_mb:.0f} MiB)"


@case("weights_pth", 1, "member_size_lies")
def _(ctx, d):
    """A storage member whose recorded CRC/size do not match its data (damaged archive)."""
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    raw = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("archive/data/2")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 10] ^= 0xFF  # one stored byte flipped: the CRC no longer matches
    with open(src, "wb") as fh:
        fh.write(raw)
    dst = os.path.join(d, "w.ckpt")
    return refused_nothing_written(convert(ctx, src, dst), dst)


@case("weights_pth", 1, "truncated_pickle")
def _(ctx, d):
    pkl = pickle_torch_tree(collections.OrderedDict(
        (n, T(i, a.shape, numel=a.size)) for i, (n, a) in enumerate(abpn_state().items())), {})
    storages = {str(i): a.tobytes() for i, a in enumerate(abpn_state().values())}
    src = write_torch_zip(os.path.join(d, "w.pth"), None, storages, data_pkl=pkl[: len(pkl) // 2])
    dst = os.path.join(d, "w.ckpt")
    return refused_nothing_written(convert(ctx, src, dst), dst)


@case("weights_pth", 1, "garbage_pickle")
def _(ctx, d):
    src = write_torch_zip(os.path.join(d, "w.pth"), None, {}, data_pkl=b"\x80\x02}q\x00(X\x01\xff\xfe garbage" * 3)
    dst = os.path.join(d, "w.ckpt")
    return refused_nothing_written(convert(ctx, src, dst), dst)


@case("weights_pth", 1, "truncated_zip")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    data = open(src, "rb").read()
    with open(src, "wb") as fh:
        fh.write(data[: len(data) * 2 // 3])
    dst = os.path.join(d, "w.ckpt")
    return refused_nothing_written(convert(ctx, src, dst), dst)


@case("weights_pth", 1, "pickle_calls_os_system")
def _(ctx, d):
    marker = os.path.join(d, "PWNED")
    obj = collections.OrderedDict((n, T(i, a.shape, numel=a.size)) for i, (n, a) in enumerate(abpn_state().items()))
    obj["backbone.0.weight"] = _Evil(f"touch {marker}")
    storages = {str(i): a.tobytes() for i, a in enumerate(abpn_state().values())}
    src = write_torch_zip(os.path.join(d, "w.pth"), obj, storages)
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst)
    if os.path.exists(marker):
        return False, "the pickled os.system ran"
    return refused_nothing_written(p, dst, mention_any=())


@case("weights_pth", 1, "pickle_builtins_eval")
def _(ctx, d):
    marker = os.path.join(d, "PWNED")
    code = f"open({marker!r}, 'w').write('x')"
    pkl = b"\x80\x02cbuiltins\neval\nq\x00X" + len(code).to_bytes(4, "little") + code.encode() + b"\x85R."
    src = write_torch_zip(os.path.join(d, "w.pth"), None, {}, data_pkl=pkl)
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst)
    if os.path.exists(marker):
        return False, "the pickled eval ran"
    return refused_nothing_written(p, dst, mention_any=())


@case("weights_pth", 1, "not_a_zip")
def _(ctx, d):
    src = os.path.join(d, "w.pth")
    with open(src, "wb") as fh:
        fh.write(b"\x80\x02}q\x00." + os.urandom(64))
    dst = os.path.join(d, "w.ckpt")
    return refused_nothing_written(convert(ctx, src, dst), dst)


# ========================================================================================
# 2. checkpoint metadata
# ========================================================================================

def _meta_case(ctx, d, base, meta, model, variant, scale, key):
    """eval.py on a checkpoint with absurd ``meta``: refused naming ``key`` or the file, before a model
    of that size is built (peak RSS under 1.5 GiB)."""
    ckpt = ckpt_with_meta(ctx, models(ctx)[base], os.path.join(d, "m.ckpt"), meta)
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=ckpt, model=model, variant=variant, scale=scale))
    held, why = refused(p, mention_any=(key, "m.ckpt"))
    if held and p.maxrss_mb > 1536:
        return False, f"refused only after building the model (peak RSS {p.maxrss_mb:.0f} MiB): {why}"
    return held, why + f" ({p.seconds:.0f} s, peak RSS {p.maxrss_mb:.0f} MiB)"


_SESR_META = {"model": "sesr", "variant": "M3", "scale": 2, "form": "train", "n_colors": 1, "act": "prelu",
              "linear_block_type": "collapsed", "feature_size": 256, "adder_eta": 0.2}


@case("ckpt_meta", 2, "feature_size_10000000")
def _(ctx, d):
    """Issue example: metadata declares feature_size 10000000 (a 10M-wide SESR would be built)."""
    return _meta_case(ctx, d, "sesr_M3_x2_train", dict(_SESR_META, feature_size=10000000), "sesr", "M3", 2,
                      "feature_size")


@case("ckpt_meta", 2, "feature_size_negative")
def _(ctx, d):
    return _meta_case(ctx, d, "sesr_M3_x2_train", dict(_SESR_META, feature_size=-7), "sesr", "M3", 2, "feature_size")


@case("ckpt_meta", 2, "n_colors_100000")
def _(ctx, d):
    meta = {"model": "abpn", "variant": "M2C8", "scale": 2, "form": "deploy", "n_colors": 100000}
    return _meta_case(ctx, d, "abpn_M2C8_x2", meta, "abpn", "M2C8", 2, "n_colors")


@case("ckpt_meta", 2, "n_colors_string")
def _(ctx, d):
    meta = {"model": "abpn", "variant": "M2C8", "scale": 2, "form": "deploy", "n_colors": "three"}
    return _meta_case(ctx, d, "abpn_M2C8_x2", meta, "abpn", "M2C8", 2, "n_colors")


@case("ckpt_meta", 2, "scale_99")
def _(ctx, d):
    meta = {"model": "abpn", "variant": "M2C8", "scale": 99, "form": "deploy"}
    return _meta_case(ctx, d, "abpn_M2C8_x2", meta, "abpn", "M2C8", 2, "scale")


@case("ckpt_meta", 2, "act_unknown")
def _(ctx, d):
    return _meta_case(ctx, d, "sesr_M3_x2_train", dict(_SESR_META, act="gelu-ish"), "sesr", "M3", 2, "act")


@case("ckpt_meta", 2, "quant_config_garbage")
def _(ctx, d):
    meta = {"model": "abpn", "variant": "M2C8", "scale": 2, "form": "deploy", "quant_config": "{not json",
            "quant_method": "minmax"}
    return _meta_case(ctx, d, "abpn_M2C8_x2", meta, "abpn", "M2C8", 2, "quant_config")


def _calibrated(ctx, folder):
    """A W8A8 minmax-calibrated ABPN-M2C8 x2 checkpoint written by the project's eval.py."""
    calib = os.path.dirname(write_images(os.path.join(folder, "calib"), 2, 64, seed=45)[0])
    path = os.path.join(folder, "abpn_w8a8.ckpt")
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, folder, "--quant_method", "minmax", "--calib_path", calib,
                                             "--calib_num", "2", "--pac_hr_patch", "32", "--save_quant_ckpt", path))
    if ok_exit(p) or not os.path.isfile(path):
        raise RuntimeError("calibrated checkpoint: " + (ok_exit(p) or "not written"))
    return path


@case("ckpt_meta", 2, "quant_config_w_bit_1000")
def _(ctx, d):
    calibrated = ctx.fixture("calibrated", _calibrated)
    qcfg = json.dumps({"w_bit": 1000, "a_bit": 8, "w_symmetric": True, "int8_scope": ["first_last"],
                       "fp_scope": [], "bit_table": {}})
    meta = {"model": "abpn", "variant": "M2C8", "scale": 2, "form": "deploy", "quant_config": qcfg,
            "quant_method": "minmax"}
    ckpt = ckpt_with_meta(ctx, calibrated, os.path.join(d, "m.ckpt"), meta)
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=ckpt, model="abpn", variant="M2C8", scale=2))
    return refused(p, mention_any=("w_bit", "bit"))


@case("ckpt_meta", 2, "form_train_for_deploy_tensors")
def _(ctx, d):
    """Deploy-form SESR tensors whose metadata claims form 'train' with feature_size 10^6."""
    meta = dict(_SESR_META, feature_size=1000000)
    return _meta_case(ctx, d, "sesr_M3_x2", meta, "sesr", "M3", 2, "feature_size")


# ========================================================================================
# 3. temporary files and symlinks
# ========================================================================================

def _plant_links(folder, basename, suffixes, victim, pid):
    """Symlinks at every predictable temp name of ``basename`` for ``pid`` (and a few after it)."""
    for p in range(pid, pid + 4):
        for suffix in suffixes:
            name = os.path.join(folder, f".{basename}.tmp{p}{suffix}")
            try:
                os.symlink(victim, name)
            except FileExistsError:
                pass


def _victim(d):
    victim = os.path.join(d, "victim", "precious.txt")
    os.makedirs(os.path.dirname(victim), exist_ok=True)
    with open(victim, "w") as fh:
        fh.write("precious data that no writer may touch\n")
    return victim, sha(victim)


def _victim_verdict(p, victim, digest, target, check_target=None):
    if not os.path.isfile(victim) or sha(victim) != digest:
        return False, f"wrote through a planted symlink into {os.path.basename(victim)} ({p.brief()})"
    if os.path.islink(target):
        return False, f"the output {os.path.basename(target)} is now a symlink to {os.readlink(target)}"
    held, why = refused(p)
    if held:
        return True, why
    why = ok_exit(p)
    if why:
        return False, why
    if check_target is not None:
        bad = check_target(target)
        if bad:
            return False, bad
    return True, "victim untouched, output written"


def _symlink_case(ctx, d, script, args, out_dir, basename, suffixes, check_target=None):
    victim, digest = _victim(d)
    os.makedirs(out_dir, exist_ok=True)
    p = ctx.entry(script, *args, after_start=lambda proc: _plant_links(out_dir, basename, suffixes, victim,
                                                                       proc.pid))
    return _victim_verdict(p, victim, digest, os.path.join(out_dir, basename), check_target)


@case("temp_symlink", 3, "export_onnx_planted_symlink")
def _(ctx, d):
    """Issue example: a symlink at the predictable .<name>.tmp<pid>.onnx makes export.py overwrite another file."""
    out = os.path.join(d, "out")
    args = ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", models(ctx)["abpn_M2C8_x2"],
            "--file_format", "ONNX", "--file_name", os.path.join(out, "m.onnx"), "--input_shape", "1,3,16,16"]
    return _symlink_case(ctx, d, "export.py", args, out, "m.onnx", (".onnx", ""))


@case("temp_symlink", 3, "eval_json_planted_symlink")
def _(ctx, d):
    args = tiny_eval_args(ctx, d)
    return _symlink_case(ctx, d, "eval.py", args, d, "r.json", ("", ".json"),
                         check_target=lambda t: "" if os.path.isfile(t) and "results" in open(t).read()
                         else "no report written")


@case("temp_symlink", 3, "infer_png_planted_symlink")
def _(ctx, d):
    img = write_images(os.path.join(d, "in"), 1, 24, seed=4, names=["p"])[0]
    out = os.path.join(d, "out")
    return _symlink_case(ctx, d, "infer.py", infer_args(ctx, d, img), out, "p_x2.png", (".png", ""),
                         check_target=lambda t: "" if read_any(t) is not None else "no PNG written")


@case("temp_symlink", 3, "convert_ckpt_planted_symlink")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "ok.pth"), abpn_state())
    out = os.path.join(d, "out")
    args = ["--src", src, "--dst", os.path.join(out, "w.ckpt"), "--model", "abpn", "--variant", "M4C28",
            "--scale", "3"]
    return _symlink_case(ctx, d, CONVERT, args, out, "w.ckpt", (".ckpt", ""))


@case("temp_symlink", 3, "train_csv_planted_symlink")
def _(ctx, d):
    out = os.path.join(d, "ck")
    args = train_args(ctx, d)
    return _symlink_case(ctx, d, "train.py", args, out, "abpn_M2C8_x2_train_log.csv", ("", ".csv"))


@case("temp_symlink", 3, "train_state_planted_symlink")
def _(ctx, d):
    out = os.path.join(d, "ck")
    victim, digest = _victim(d)
    os.makedirs(out, exist_ok=True)

    def plant(proc):
        for name in ("abpn_M2C8_x2_state_00000002.ckpt", "abpn_M2C8_x2_last.ckpt", "abpn_M2C8_x2_best.ckpt"):
            _plant_links(out, name, (".ckpt", ""), victim, proc.pid)
    p = ctx.entry("train.py", *train_args(ctx, d), after_start=plant)
    return _victim_verdict(p, victim, digest, os.path.join(out, "abpn_M2C8_x2_last.ckpt"))


@case("temp_symlink", 3, "eval_json_planted_directory")
def _(ctx, d):
    """A directory squatting on the predictable temp name: unpredictable names never collide."""
    def plant(proc):
        for pid in range(proc.pid, proc.pid + 4):
            for suffix in ("", ".json"):
                os.makedirs(os.path.join(d, f".r.json.tmp{pid}{suffix}"), exist_ok=True)
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d), after_start=plant)
    held, why = refused(p)
    if held:
        return True, why
    why = ok_exit(p)
    if why:
        return False, why
    return (True, "report written") if os.path.isfile(os.path.join(d, "r.json")) else (False, "no report")


@case("temp_symlink", 3, "result_file_is_symlink_to_victim")
def _(ctx, d):
    """--result_file is itself a symlink: the link may be replaced, the file it points to must not change."""
    victim, digest = _victim(d)
    os.symlink(victim, os.path.join(d, "r.json"))
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d))
    if sha(victim) != digest:
        return False, "wrote through the --result_file symlink into another file"
    held, why = refused(p)
    if held:
        return True, why
    why = ok_exit(p)
    return (False, why) if why else (True, "victim untouched")


# ========================================================================================
# 4. writer output is its input
# ========================================================================================

def _same_file_verdict(p, src, digest):
    """Input intact, and refused cleanly or finished cleanly."""
    if not os.path.isfile(src) or sha(src) != digest:
        return False, f"replaced its own input {os.path.basename(src)} ({p.brief()})"
    held, why = refused(p)
    if held:
        return True, why
    bad = ok_exit(p)
    return (False, bad) if bad else (True, "exit 0, input intact")


@case("same_file", 4, "convert_dst_equals_src")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    digest = sha(src)
    p = convert(ctx, src, src)
    if sha(src) != digest:
        return False, f"replaced the source .pth with the converted checkpoint ({p.brief()})"
    return refused(p)


@case("same_file", 4, "convert_dst_same_file_other_spelling")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    digest = sha(src)
    os.makedirs(os.path.join(d, "sub"))
    p = convert(ctx, src, os.path.join(d, "sub", "..", ".", "w.pth"))
    if sha(src) != digest:
        return False, f"replaced the source .pth ({p.brief()})"
    return refused(p)


@case("same_file", 4, "convert_dst_symlink_to_src")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    digest = sha(src)
    link = os.path.join(d, "link.ckpt")
    os.symlink(src, link)
    p = convert(ctx, src, link)
    return _same_file_verdict(p, src, digest)


@case("same_file", 4, "eval_result_file_is_the_checkpoint")
def _(ctx, d):
    ckpt = os.path.join(d, "m.ckpt")
    shutil.copy(models(ctx)["abpn_M2C8_x2"], ckpt)
    digest = sha(ckpt)
    args = eval_args(ctx, d, ckpt=ckpt, variant="M2C8", scale=2)
    args[args.index("--result_file") + 1] = ckpt
    p = ctx.entry("eval.py", *args)
    if sha(ckpt) != digest:
        return False, f"wrote the JSON report over --pre_trained ({p.brief()})"
    return refused(p)


@case("same_file", 4, "eval_save_quant_ckpt_is_the_checkpoint")
def _(ctx, d):
    ckpt = os.path.join(d, "m.ckpt")
    shutil.copy(models(ctx)["abpn_M2C8_x2"], ckpt)
    digest = sha(ckpt)
    calib = write_images(os.path.join(d, "calib"), 2, 64, seed=5)
    args = tiny_eval_args(ctx, d, "--quant_method", "minmax", "--calib_path", os.path.dirname(calib[0]),
                          "--calib_num", "2", "--pac_hr_patch", "32", "--save_quant_ckpt", ckpt)
    args[args.index("--pre_trained") + 1] = ckpt
    p = ctx.entry("eval.py", *args)
    if sha(ckpt) != digest:
        return False, f"replaced --pre_trained with the calibrated checkpoint ({p.brief()})"
    return refused(p)


# ========================================================================================
# 5. LR/HR pairs
# ========================================================================================

def _pairs_set(ctx, d, lr_factor, lr_folder_scale=3, hr_size=96, names=3, resize=None):
    """Set 'P' with HR copies of set S and LR files made at ``lr_factor`` under LR_bicubic/X<lr_folder_scale>."""
    root = os.path.join(d, "data")
    hr_dir = os.path.join(root, "benchmark", "P", "HR")
    lr_dir = os.path.join(root, "benchmark", "P", "LR_bicubic", f"X{lr_folder_scale}")
    os.makedirs(hr_dir)
    os.makedirs(lr_dir)
    src = sorted(glob.glob(os.path.join(eval_data(ctx), "benchmark", "S", "HR", "*.png")))[:names]
    for path in src:
        stem = os.path.splitext(os.path.basename(path))[0]
        shutil.copy(path, os.path.join(hr_dir, stem + ".png"))
        if lr_factor:
            matlab_resize(ctx, path, os.path.join(lr_dir, f"{stem}x{lr_folder_scale}.png"), lr_factor)
        if resize:
            resize(os.path.join(lr_dir, f"{stem}x{lr_folder_scale}.png"))
    return root


def _reference_psnr(ctx, d):
    """PSNR of set S with LR made from HR by the project (no LR files): the right answer."""
    p, value = run_eval_psnr(ctx, d, eval_args(ctx, d), "ref")
    if value is None:
        raise RuntimeError(f"reference evaluation failed: {p.brief()}")
    return value


@case("lr_hr_pairs", 5, "x2_lr_under_X3")
def _(ctx, d):
    """Issue example: x2 LR files under LR_bicubic/X3 are cropped and scored."""
    ref = _reference_psnr(ctx, d)
    data = _pairs_set(ctx, d, 0.5)
    p, value = run_eval_psnr(ctx, d, eval_args(ctx, d, data=data, dataset="P"), "bad")
    return wrong_or_refused(p, value, ref)


@case("lr_hr_pairs", 5, "x2_lr_under_X3_shared_set5", needs=("shared",))
def _(ctx, d):
    set5 = os.path.join(ctx.shared, "data", "benchmark", "Set5")
    if not os.path.isdir(set5):
        raise Skip(f"{set5} not found")
    root = os.path.join(d, "data")
    shutil.copytree(os.path.join(set5, "HR"), os.path.join(root, "benchmark", "Set5", "HR"))
    x2 = os.path.join(set5, "LR_bicubic_matlab", "X2")
    lr_dir = os.path.join(root, "benchmark", "Set5", "LR_bicubic", "X3")
    os.makedirs(lr_dir)
    for path in glob.glob(os.path.join(x2, "*x2.png")):
        shutil.copy(path, os.path.join(lr_dir, os.path.basename(path).replace("x2.png", "x3.png")))
    ref_args = eval_args(ctx, d, data=os.path.join(ctx.shared, "data"), dataset="Set5")
    _, ref = run_eval_psnr(ctx, d, ref_args, "ref")
    p, value = run_eval_psnr(ctx, d, eval_args(ctx, d, data=root, dataset="Set5"), "bad")
    if ref is None:
        return False, "reference Set5 evaluation failed"
    return wrong_or_refused(p, value, ref)


@case("lr_hr_pairs", 5, "x4_lr_under_X3_too_small")
def _(ctx, d):
    data = _pairs_set(ctx, d, 0.25)
    p, _ = run_eval_psnr(ctx, d, eval_args(ctx, d, data=data, dataset="P"), "bad")
    return refused(p)


@case("lr_hr_pairs", 5, "lr_wider_than_hr_over_scale")
def _(ctx, d):
    """LR right in height, 6 px too wide (more than any crop tolerance, 12/3 = 4): not cropped and scored."""
    import cv2  # pylint: disable=import-outside-toplevel

    def widen(path):
        img = cv2.imread(path)
        cv2.imwrite(path, cv2.resize(img, (img.shape[1] + 6, img.shape[0]), interpolation=cv2.INTER_CUBIC))
    ref = _reference_psnr(ctx, d)
    data = _pairs_set(ctx, d, 1 / 3, resize=widen)
    p, value = run_eval_psnr(ctx, d, eval_args(ctx, d, data=data, dataset="P"), "bad")
    return wrong_or_refused(p, value, ref)


@case("lr_hr_pairs", 5, "exact_lr_files_accepted")
def _(ctx, d):
    """Guard: LR files equal to the project's own bicubic give exactly the reference PSNR."""
    ref = _reference_psnr(ctx, d)
    data = _pairs_set(ctx, d, 1 / 3)
    p, value = run_eval_psnr(ctx, d, eval_args(ctx, d, data=data, dataset="P"), "lr")
    return same_psnr(p, value, ref, "PSNR {value:.2f} = reference", "PSNR {value} vs reference {ref:.2f}")


@case("lr_hr_pairs", 5, "lr_of_uncropped_hr_accepted")
def _(ctx, d):
    """Guard: HR 100x100 at x2 (cropped to 96), LR file 50x50 = ceil(100/2): within the crop tolerance."""
    import cv2  # pylint: disable=import-outside-toplevel
    root = os.path.join(d, "data")
    hr_dir = os.path.join(root, "benchmark", "U", "HR")
    lr_dir = os.path.join(root, "benchmark", "U", "LR_bicubic", "X2")
    crop_hr = os.path.join(d, "crop", "benchmark", "U", "HR")
    crop_lr = os.path.join(d, "crop", "benchmark", "U", "LR_bicubic", "X2")
    for folder in (hr_dir, lr_dir, crop_hr, crop_lr):
        os.makedirs(folder)
    for i in range(2):
        hr = smooth_image(100, 40 + i)
        cv2.imwrite(os.path.join(hr_dir, f"u{i}.png"), hr)
        matlab_resize(ctx, os.path.join(hr_dir, f"u{i}.png"), os.path.join(lr_dir, f"u{i}x2.png"), 0.5)
        cv2.imwrite(os.path.join(crop_hr, f"u{i}.png"), hr[:96, :96])
        cv2.imwrite(os.path.join(crop_lr, f"u{i}x2.png"), cv2.imread(os.path.join(lr_dir, f"u{i}x2.png"))[:48, :48])
    ckpt = models(ctx)["abpn_M2C8_x2"]
    _, ref = run_eval_psnr(ctx, d, eval_args(ctx, d, ckpt=ckpt, variant="M2C8", scale=2,
                                             data=os.path.join(d, "crop"), dataset="U"), "ref")
    p, value = run_eval_psnr(ctx, d, eval_args(ctx, d, ckpt=ckpt, variant="M2C8", scale=2, data=root,
                                               dataset="U"), "lr")
    return same_psnr(p, value, ref, "PSNR {value:.2f} = pre-cropped reference",
                     "PSNR {value} vs pre-cropped reference {ref}")


@case("lr_hr_pairs", 5, "transposed_lr_refused")
def _(ctx, d):
    import cv2  # pylint: disable=import-outside-toplevel
    root = os.path.join(d, "data")
    hr_dir = os.path.join(root, "benchmark", "W", "HR")
    lr_dir = os.path.join(root, "benchmark", "W", "LR_bicubic", "X2")
    os.makedirs(hr_dir)
    os.makedirs(lr_dir)
    cv2.imwrite(os.path.join(hr_dir, "w.png"), smooth_image((48, 96), 7))
    cv2.imwrite(os.path.join(lr_dir, "wx2.png"), smooth_image((48, 24), 7))
    p, _ = run_eval_psnr(ctx, d, eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x2"], variant="M2C8", scale=2,
                                           data=root, dataset="W"), "bad")
    return refused(p)


def _div2k_train(ctx, d, lr_factor, lr_scale_folder):
    root = os.path.join(d, "DIV2K")
    hr_dir = os.path.join(root, "DIV2K_train_HR")
    lr_dir = os.path.join(root, "DIV2K_train_LR_bicubic", f"X{lr_scale_folder}")
    os.makedirs(lr_dir)
    paths = write_images(hr_dir, 3, 48, seed=8, names=["0001", "0002", "0003"])
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        matlab_resize(ctx, path, os.path.join(lr_dir, f"{stem}x{lr_scale_folder}.png"), lr_factor)
    return root


def _train_on(ctx, d, root, scale):
    t = train_data(ctx)
    return ctx.entry("train.py", "--model", "abpn", "--variant", "M2C8", "--scale", str(scale), "--train_path",
                     root, "--val_data_path", os.path.join(t, "data"), "--val_datasets", "Val", "--patch_size", "6",
                     "--batch_size", "2", "--cache_dir", os.path.join(d, "cache"), "--total_steps", "2",
                     "--val_every", "2", "--num_workers", "1", "--ckpt_dir", os.path.join(d, "ck"))


@case("lr_hr_pairs", 5, "train_div2k_x2_lr_under_X3")
def _(ctx, d):
    root = _div2k_train(ctx, d, 0.5, 3)
    return refused(_train_on(ctx, d, root, 3))


@case("lr_hr_pairs", 5, "train_div2k_x4_lr_under_X2")
def _(ctx, d):
    root = _div2k_train(ctx, d, 0.25, 2)
    return refused(_train_on(ctx, d, root, 2))


@case("lr_hr_pairs", 5, "train_div2k_exact_lr_accepted")
def _(ctx, d):
    root = _div2k_train(ctx, d, 0.5, 2)
    p = _train_on(ctx, d, root, 2)
    why = ok_exit(p)
    if why:
        return False, why
    return (True, "trained on the official layout") if "DIV2K official layout" in p.stdout or "DIV2K" in p.stdout \
        else (True, "trained")


# ========================================================================================
# 6. caches keyed on content
# ========================================================================================

def _replace_keep_stat(path, new_img, keep_mtime):
    import cv2  # pylint: disable=import-outside-toplevel
    st = os.stat(path)
    ext = os.path.splitext(path)[1]
    ok, buf = cv2.imencode(ext, new_img)
    assert ok
    with open(path, "wb") as fh:
        fh.write(buf.tobytes())
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return os.path.getsize(path) == st.st_size


def _eval_cache_case(ctx, d, ext, keep_mtime):
    data = os.path.join(d, "data")
    paths = write_images(os.path.join(data, "benchmark", "C", "HR"), 2, 96, seed=9, ext=ext)
    ckpt = models(ctx)["abpn_M4C28_x3"]
    args = eval_args(ctx, d, data=data, dataset="C")
    first, _ = run_eval_psnr(ctx, d, args, "first")
    if ok_exit(first):
        return False, "first evaluation failed: " + ok_exit(first)
    _replace_keep_stat(paths[0], 255 - smooth_image(96, 77), keep_mtime)
    p, value = run_eval_psnr(ctx, d, args, "again")
    fresh = eval_args(ctx, os.path.join(d, "fresh"), ckpt=ckpt, data=data, dataset="C")
    os.makedirs(os.path.join(d, "fresh"))
    _, ref = run_eval_psnr(ctx, os.path.join(d, "fresh"), fresh, "ref")
    return same_psnr(p, value, ref, "PSNR {value:.2f} = fresh-cache {ref:.2f}",
                     "stale LR cache: PSNR {value:.2f} after replacing an HR image (fresh cache: {ref:.2f})")


@case("caches", 6, "eval_cache_hr_replaced_same_size")
def _(ctx, d):
    """Issue example: an HR file replaced by another image of the same name and size."""
    return _eval_cache_case(ctx, d, ".png", keep_mtime=False)


@case("caches", 6, "eval_cache_hr_replaced_same_bytes_and_mtime")
def _(ctx, d):
    return _eval_cache_case(ctx, d, ".bmp", keep_mtime=True)


@case("caches", 6, "eval_cache_entry_truncated")
def _(ctx, d):
    args = eval_args(ctx, d)
    first, ref = run_eval_psnr(ctx, d, args, "first")
    if ref is None:
        return False, "first evaluation failed: " + first.brief()
    entries = glob.glob(os.path.join(d, "cache", "**", "*.png"), recursive=True)
    if not entries:
        return False, "no cache entries written"
    for path in entries:
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 3)
    p, value = run_eval_psnr(ctx, d, args, "again")
    shown = "none" if value is None else f"{value:.2f}"
    return either(refused(p), (close(value, ref), f"PSNR {shown} vs {ref:.2f} after damaging the cache"))


def _train_cache_case(ctx, d, keep_mtime):
    """Train, replace every HR image by another of the same size (BMP: same bytes), train again on the
    same cache: the weights must equal those of a run with a fresh cache."""
    train = os.path.join(d, "train")
    paths = write_images(train, 3, 48, seed=10, ext=".bmp")
    t = train_data(ctx)

    def run(cache, ckdir):
        return ctx.entry("train.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", train,
                         "--val_data_path", os.path.join(t, "data"), "--val_datasets", "Val", "--patch_size", "8",
                         "--batch_size", "2", "--cache_dir", cache, "--total_steps", "3", "--val_every", "3",
                         "--num_workers", "1", "--ckpt_dir", ckdir)
    first = run(os.path.join(d, "cache"), os.path.join(d, "ck1"))
    if ok_exit(first):
        return False, "first run failed: " + ok_exit(first)
    for i, path in enumerate(paths):
        _replace_keep_stat(path, 255 - smooth_image(48, 99 + i), keep_mtime)
        if not keep_mtime:
            later = os.stat(path).st_mtime + 10
            os.utime(path, (later, later))
    stale = run(os.path.join(d, "cache"), os.path.join(d, "ck2"))
    fresh = run(os.path.join(d, "cache_fresh"), os.path.join(d, "ck3"))
    for p in (stale, fresh):
        if ok_exit(p):
            return False, ok_exit(p)
    a, b = _digest(stale.stdout), _digest(fresh.stdout)
    if a is None or b is None:
        return False, "no parameter digest printed"
    return (True, "same weights as with a fresh cache") if a == b else \
        (False, f"stale training LR cache: digest {a} vs fresh-cache {b}")


def _digest(text):
    found = re.findall(r"parameter digest ([0-9a-f]+)", text)
    return found[-1] if found else None


@case("caches", 6, "train_cache_hr_replaced_same_bytes_and_mtime")
def _(ctx, d):
    return _train_cache_case(ctx, d, keep_mtime=True)


@case("caches", 6, "train_cache_hr_replaced_new_mtime")
def _(ctx, d):
    """Guard: replaced images with a new mtime (10 s later) are noticed today too."""
    return _train_cache_case(ctx, d, keep_mtime=False)


# ========================================================================================
# 7/8. image decoding: truncated / damaged JPEG, EXIF orientation, alpha
# ========================================================================================

def _truncated_jpeg(path, size=(96, 96), seed=11, keep=0.5):
    import cv2  # pylint: disable=import-outside-toplevel
    ok, buf = cv2.imencode(".jpg", smooth_image(size, seed), [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = buf.tobytes()
    with open(path, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])
    return path


def _damaged_jpeg(path, size=(96, 96), seed=12):
    import cv2  # pylint: disable=import-outside-toplevel
    ok, buf = cv2.imencode(".jpg", smooth_image(size, seed), [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = bytearray(buf.tobytes())
    sos = data.find(b"\xff\xda")
    for k in range(sos + 40, len(data) - 40, 97):
        data[k] = 0xFF if data[k] != 0xFF else 0x00  # markers inside the entropy-coded data
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    return path


@case("image_decode", 7, "eval_truncated_jpeg_hr")
def _(ctx, d):
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "J", "HR")
    write_images(hr, 1, 96, seed=13)
    _truncated_jpeg(os.path.join(hr, "broken.jpg"))
    p = ctx.entry("eval.py", *eval_args(ctx, d, data=data, dataset="J"))
    return refused(p, mention=("broken.jpg",))


@case("image_decode", 7, "eval_damaged_jpeg_hr")
def _(ctx, d):
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "J", "HR")
    os.makedirs(hr)
    _damaged_jpeg(os.path.join(hr, "damaged.jpg"))
    p = ctx.entry("eval.py", *eval_args(ctx, d, data=data, dataset="J"))
    return refused(p, mention=("damaged.jpg",))


@case("image_decode", 7, "eval_truncated_png_hr")
def _(ctx, d):
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "J", "HR")
    path = write_images(hr, 1, 96, seed=14, names=["cut"])[0]
    raw = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    p = ctx.entry("eval.py", *eval_args(ctx, d, data=data, dataset="J"))
    return refused(p, mention=("cut.png",))


@case("image_decode", 7, "eval_empty_image_file")
def _(ctx, d):
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "J", "HR")
    os.makedirs(hr)
    open(os.path.join(hr, "empty.png"), "wb").close()
    p = ctx.entry("eval.py", *eval_args(ctx, d, data=data, dataset="J"))
    return refused(p, mention=("empty.png",))


@case("image_decode", 7, "infer_truncated_jpeg_input")
def _(ctx, d):
    src = _truncated_jpeg(os.path.join(d, "photo.jpg"), size=(40, 40))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    written = glob.glob(os.path.join(d, "out", "*"))
    held, why = refused(p, mention=("photo.jpg",))
    if held and written:
        return False, f"refused but wrote {[os.path.basename(w) for w in written]}"
    return held, why


@case("image_decode", 7, "train_truncated_jpeg_in_folder")
def _(ctx, d):
    train = os.path.join(d, "train")
    write_images(train, 3, 48, seed=15)
    _truncated_jpeg(os.path.join(train, "broken.jpg"), size=(48, 48))
    t = train_data(ctx)
    p = ctx.entry("train.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--train_path", train,
                  "--val_data_path", os.path.join(t, "data"), "--val_datasets", "Val", "--patch_size", "8",
                  "--batch_size", "2", "--cache_dir", os.path.join(d, "cache"), "--total_steps", "2",
                  "--val_every", "2", "--num_workers", "1", "--ckpt_dir", os.path.join(d, "ck"))
    held, why = refused(p, mention=("broken.jpg",))
    if held:
        return True, why
    if ok_exit(p):
        return False, ok_exit(p)
    m = re.search(r"(\d+) unreadable", p.stdout)
    if m and int(m.group(1)) == 1 and "on 3 images" in p.stdout:
        return True, "trained on 3 images, 1 unreadable reported"
    line = next((l for l in p.stdout.splitlines() if "training abpn" in l), p.stdout[:200])
    return False, f"used the truncated JPEG: {line[:220]}"


@case("image_decode", 7, "calib_truncated_jpeg_in_folder")
def _(ctx, d):
    calib = os.path.join(d, "calib")
    os.makedirs(calib)
    _truncated_jpeg(os.path.join(calib, "broken.jpg"), size=(64, 64), keep=0.4)
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "minmax", "--calib_path", calib,
                                             "--calib_num", "2", "--pac_hr_patch", "32"))
    return refused(p, mention_any=("broken.jpg", "unreadable", "truncated", "corrupt"))


def _exif_jpeg(path, size=(24, 40), orientation=6, seed=16):
    """JPEG stored ``size`` (h, w) with EXIF Orientation; displayed rotated (6: 90 deg clockwise)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    img = Image.fromarray(smooth_image(size, seed)[:, :, ::-1].copy())
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif.tobytes())
    return path


@case("image_decode", 8, "infer_exif_orientation_6")
def _(ctx, d):
    """Issue example: a phone JPEG with Orientation=6 comes out sideways."""
    src = _exif_jpeg(os.path.join(d, "phone.jpg"))  # stored 40 wide x 24 high, shown 24 x 40
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    why = ok_exit(p)
    if why:
        return False, why
    outs = glob.glob(os.path.join(d, "out", "*.png"))
    if len(outs) != 1:
        return False, f"{len(outs)} outputs"
    img = read_any(outs[0])
    h, w = img.shape[:2]
    return (True, f"upright: {w}x{h}") if (w, h) == (48, 80) else (False, f"sideways: {w}x{h} (upright is 48x80)")


@case("image_decode", 8, "infer_exif_orientation_3")
def _(ctx, d):
    """Orientation 3 (180 deg): same size, content rotated; compare with the upright PNG's output."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    os.makedirs(os.path.join(d, "in"))
    src = _exif_jpeg(os.path.join(d, "in", "phone.jpg"), size=(32, 32), orientation=3)
    upright = np.asarray(Image.open(src).convert("RGB"))[::-1, ::-1]
    Image.fromarray(np.ascontiguousarray(upright)).save(os.path.join(d, "up.png"))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src, out=os.path.join(d, "o1")))
    q = ctx.entry("infer.py", *infer_args(ctx, d, os.path.join(d, "up.png"), out=os.path.join(d, "o2")))
    for x in (p, q):
        if ok_exit(x):
            return False, ok_exit(x)
    a = read_any(glob.glob(os.path.join(d, "o1", "*.png"))[0]).astype(int)
    b = read_any(glob.glob(os.path.join(d, "o2", "*.png"))[0]).astype(int)
    diff = np.abs(a - b).mean() if a.shape == b.shape else 255
    return (True, "same as the upright image") if diff < 1.0 else (False, f"not rotated (mean |diff| {diff:.1f})")


@case("image_decode", 8, "eval_exif_orientation_hr")
def _(ctx, d):
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "E", "HR")
    os.makedirs(hr)
    _exif_jpeg(os.path.join(hr, "phone.jpg"), size=(48, 96))  # shown 48 wide x 96 high
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x2"], variant="M2C8", scale=2,
                                        data=data, dataset="E", extra=("--save_sr", "True")))
    why = ok_exit(p)
    if why:
        return False, why
    outs = glob.glob(os.path.join(d, "out", "**", "*.png"), recursive=True)
    if len(outs) != 1:
        return False, f"{len(outs)} SR images saved"
    h, w = read_any(outs[0]).shape[:2]
    return (True, f"upright SR {w}x{h}") if (w, h) == (48, 96) else (False, f"HR read sideways: SR {w}x{h}")


def _rgba_png(path, size=(24, 32), mode="RGBA"):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    h, w = size
    rgb = smooth_image(size, 17)[:, :, ::-1]
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 2:] = 255  # right half opaque, left half transparent
    if mode == "RGBA":
        Image.fromarray(np.dstack([rgb, alpha])).save(path)
    elif mode == "LA":
        Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(path)
    else:  # palette with a transparent index
        pal = Image.fromarray(rgb.copy()).quantize(15)  # indices 0..14 for colours, 15 transparent
        arr = np.asarray(pal).copy()
        arr[:, : w // 2] = 15
        img = Image.fromarray(arr, "P")
        img.putpalette(pal.getpalette()[: 15 * 3] + [0, 0, 0])
        img.save(path, transparency=15)
    return path


def _alpha_verdict(p, out_dir):
    why = ok_exit(p)
    if why:
        held, rwhy = refused(p)
        return (True, rwhy) if held else (False, why)
    outs = glob.glob(os.path.join(out_dir, "*.png"))
    if len(outs) != 1:
        return False, f"{len(outs)} outputs"
    from PIL import Image  # pylint: disable=import-outside-toplevel
    img = Image.open(outs[0])
    if img.mode not in ("RGBA", "LA"):
        return False, f"alpha dropped: output mode {img.mode}"
    alpha = np.asarray(img.convert("RGBA"))[..., 3].astype(float)
    w = alpha.shape[1]
    left, right = alpha[:, : w // 2 - 4].mean(), alpha[:, w // 2 + 4:].mean()
    if left < 20 and right > 235:
        return True, f"{img.mode} output, alpha carried (left {left:.0f}, right {right:.0f})"
    return False, f"alpha wrong: left {left:.0f}, right {right:.0f}"


@case("image_decode", 8, "infer_rgba_png")
def _(ctx, d):
    src = _rgba_png(os.path.join(d, "icon.png"))
    return _alpha_verdict(ctx.entry("infer.py", *infer_args(ctx, d, src)), os.path.join(d, "out"))


@case("image_decode", 8, "infer_la_png")
def _(ctx, d):
    src = _rgba_png(os.path.join(d, "gray.png"), mode="LA")
    return _alpha_verdict(ctx.entry("infer.py", *infer_args(ctx, d, src)), os.path.join(d, "out"))


@case("image_decode", 8, "infer_palette_transparency_png")
def _(ctx, d):
    src = _rgba_png(os.path.join(d, "pal.png"), mode="P")
    return _alpha_verdict(ctx.entry("infer.py", *infer_args(ctx, d, src)), os.path.join(d, "out"))


@case("image_decode", 8, "eval_rgba_hr_states_alpha")
def _(ctx, d):
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "A", "HR")
    os.makedirs(hr)
    _rgba_png(os.path.join(hr, "icon.png"), size=(48, 48))
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x2"], variant="M2C8", scale=2,
                                        data=data, dataset="A"))
    held, why = refused(p, mention=("alpha",))
    if held:
        return True, why
    why = ok_exit(p)
    if why:
        return False, why
    report = open(os.path.join(d, "r.json")).read() if os.path.isfile(os.path.join(d, "r.json")) else ""
    if "alpha" in re.sub(r"\S*/\S*", " ", p.stdout + report).lower():
        return True, "evaluated and stated what it did with alpha"
    return False, "alpha dropped silently (no mention in output or report)"


@case("image_decode", 7, "eval_16bit_png_refused")
def _(ctx, d):
    import cv2  # pylint: disable=import-outside-toplevel
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "B", "HR")
    os.makedirs(hr)
    cv2.imwrite(os.path.join(hr, "deep.png"), smooth_image(48, 18).astype(np.uint16) * 257)
    p = ctx.entry("eval.py", *eval_args(ctx, d, data=data, dataset="B"))
    return refused(p, mention=("deep.png",))


# ========================================================================================
# 9. infer.py outputs
# ========================================================================================

def _count_written(stdout):
    m = re.search(r"wrote (\d+)", stdout)
    return int(m.group(1)) if m else None


@case("infer_outputs", 9, "same_stem_png_and_jpg")
def _(ctx, d):
    """a.png and a.jpg would both write a_x2.png: distinct names or a refusal listing the clash."""
    import cv2  # pylint: disable=import-outside-toplevel
    src = os.path.join(d, "in")
    write_images(src, 1, 24, seed=19, names=["a"])
    cv2.imwrite(os.path.join(src, "a.jpg"), smooth_image(24, 20))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    outs = sorted(os.listdir(os.path.join(d, "out"))) if os.path.isdir(os.path.join(d, "out")) else []
    held, why = refused(p, mention=("a.png", "a.jpg"))
    if held:
        return (True, why) if not outs else (False, f"refused after writing {outs}")
    bad = ok_exit(p)
    if bad:
        return False, bad
    said = _count_written(p.stdout)
    if len(outs) == 2 and said == 2:
        return True, f"two distinct outputs {outs}"
    return False, f"{len(outs)} file(s) written {outs} but printed 'wrote {said}'"


@case("infer_outputs", 9, "output_name_is_another_input")
def _(ctx, d):
    """Output folder = input folder holding a.png and a_x2.png: a's output must not replace input a_x2.png."""
    src = os.path.join(d, "in")
    write_images(src, 2, 24, seed=21, names=["a", "a_x2"])
    before = sha(os.path.join(src, "a_x2.png"))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src, out=src))
    if sha(os.path.join(src, "a_x2.png")) != before:
        return False, f"overwrote the input a_x2.png with a's output ({p.brief()})"
    return _same_file_verdict(p, os.path.join(src, "a_x2.png"), before)


@case("infer_outputs", 9, "corrupt_file_among_good_ones")
def _(ctx, d):
    """A corrupt file is reported, the rest still processed, non-zero exit at the end."""
    src = os.path.join(d, "in")
    write_images(src, 2, 24, seed=22, names=["b", "c"])
    with open(os.path.join(src, "a_corrupt.png"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    outs = sorted(os.listdir(os.path.join(d, "out"))) if os.path.isdir(os.path.join(d, "out")) else []
    bad = crashed(p)
    if bad:
        return False, bad
    if p.rc == 0:
        return False, "exit 0 with a corrupt input"
    if outs != ["b_x2.png", "c_x2.png"]:
        return False, f"exit {p.rc}; wrote {outs} (expected b_x2.png, c_x2.png)"
    if "a_corrupt.png" not in p.stderr + p.stdout:
        return False, "the corrupt file is not named"
    said = _count_written(p.stdout)
    if said is not None and said != 2:
        return False, f"printed 'wrote {said}' for 2 files"
    return True, f"exit {p.rc}, other images written, corrupt file named"


@case("infer_outputs", 9, "count_equals_files_written")
def _(ctx, d):
    """Guard: three distinct inputs, 'wrote 3' and three files."""
    src = os.path.join(d, "in")
    write_images(src, 3, 24, seed=23)
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    bad = ok_exit(p)
    if bad:
        return False, bad
    outs = os.listdir(os.path.join(d, "out"))
    said = _count_written(p.stdout)
    return (True, "3 written, 3 counted") if len(outs) == 3 and said == 3 else \
        (False, f"{len(outs)} files, printed {said}")


@case("infer_outputs", 9, "case_clash_a_png_A_PNG")
def _(ctx, d):
    import cv2  # pylint: disable=import-outside-toplevel
    src = os.path.join(d, "in")
    os.makedirs(src)
    cv2.imwrite(os.path.join(src, "a.png"), smooth_image(24, 24))
    cv2.imwrite(os.path.join(src, "a.jpeg"), smooth_image(24, 25))
    cv2.imwrite(os.path.join(src, "a.bmp"), smooth_image(24, 26))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    outs = sorted(os.listdir(os.path.join(d, "out"))) if os.path.isdir(os.path.join(d, "out")) else []
    held, why = refused(p, mention=("a.png",))
    if held:
        return (True, why) if not outs else (False, f"refused after writing {outs}")
    bad = ok_exit(p)
    if bad:
        return False, bad
    said = _count_written(p.stdout)
    return (True, f"three distinct outputs {outs}") if len(outs) == 3 and said == 3 else \
        (False, f"{len(outs)} file(s) {outs}, printed 'wrote {said}'")


# ========================================================================================
# 10. PyTorch wrappers
# ========================================================================================

def _converted_equal(ctx, a, b):
    s = ckpt_summary(ctx, a, b)
    ta = {k: v.get("sha") for k, v in s[a].items() if "sha" in v}
    tb = {k: v.get("sha") for k, v in s[b].items() if "sha" in v}
    return bool(ta) and ta == tb


def _plain_conversion(ctx, d, arrays, name="plain"):
    src = pth_from_arrays(os.path.join(d, f"{name}.pth"), arrays)
    dst = os.path.join(d, f"{name}.ckpt")
    p = convert(ctx, src, dst)
    if ok_exit(p):
        raise RuntimeError("plain conversion failed: " + ok_exit(p))
    return dst


@case("torch_wrappers", 10, "module_prefix_converts")
def _(ctx, d):
    """DataParallel weights (module. prefix) convert to the same tensors, and say so."""
    arrays = abpn_state(seed=3)
    ref = _plain_conversion(ctx, d, arrays)
    src = pth_from_arrays(os.path.join(d, "dp.pth"), arrays, prefix="module.")
    dst = os.path.join(d, "dp.ckpt")
    p = convert(ctx, src, dst)
    bad = ok_exit(p)
    if bad:
        return False, bad
    if not _converted_equal(ctx, ref, dst):
        return False, "tensors differ from the unprefixed conversion"
    if "module" not in p.stdout + p.stderr:
        return False, "converted without saying the module. prefix was stripped"
    return True, "same tensors, prefix reported"


@case("torch_wrappers", 10, "state_dict_wrapper_with_module_prefix")
def _(ctx, d):
    arrays = abpn_state(seed=4)
    ref = _plain_conversion(ctx, d, arrays)
    src = pth_from_arrays(os.path.join(d, "w.pth"), arrays, prefix="module.",
                          wrap=lambda o: collections.OrderedDict(state_dict=o, epoch=7))
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst)
    bad = ok_exit(p)
    if bad:
        return False, bad
    return (True, "same tensors") if _converted_equal(ctx, ref, dst) else (False, "tensors differ")


def _params_pair(ctx, d):
    ema, raw = abpn_state(seed=5), abpn_state(seed=6)
    ref_ema = _plain_conversion(ctx, d, ema, "ema")
    ref_raw = _plain_conversion(ctx, d, raw, "raw")
    obj, storages = collections.OrderedDict(), {}
    for group, arrays in (("params", raw), ("params_ema", ema)):
        obj[group] = collections.OrderedDict()
        for name, arr in arrays.items():
            key = str(len(storages))
            storages[key] = arr.tobytes()
            obj[group][name] = T(key, arr.shape, numel=arr.size)
    src = write_torch_zip(os.path.join(d, "basicsr.pth"), obj, storages)
    return src, ref_ema, ref_raw


@case("torch_wrappers", 10, "params_and_params_ema_says_which")
def _(ctx, d):
    src, ref_ema, ref_raw = _params_pair(ctx, d)
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst)
    bad = ok_exit(p)
    if bad:
        return False, bad
    text = p.stdout + p.stderr
    took_ema, took_raw = _converted_equal(ctx, ref_ema, dst), _converted_equal(ctx, ref_raw, dst)
    if took_ema and "params_ema" in text:
        return True, "took params_ema and said so"
    if took_raw and re.search(r"\bparams\b(?!_ema)", text):
        return True, "took params and said so"
    return False, f"took {'params_ema' if took_ema else 'params' if took_raw else '?'} without saying which"


@case("torch_wrappers", 10, "params_choice_option")
def _(ctx, d):
    """An option (found in --help) chooses params over params_ema."""
    src, _, ref_raw = _params_pair(ctx, d)
    h = ctx.entry(CONVERT, "--help")
    flags = [m for m in re.findall(r"(--[\w-]+)", h.stdout)
             if m not in ("--src", "--dst", "--model", "--variant", "--scale", "--help")]
    chosen = None
    for block in re.split(r"\n(?=\s*--)", h.stdout):
        if "params" in block and re.match(r"\s*--[\w-]+", block):
            chosen = re.match(r"\s*(--[\w-]+)", block).group(1)
            if chosen in flags:
                break
            chosen = None
    if not chosen:
        return False, "no option in --help to choose params or params_ema"
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst, chosen, "params")
    bad = ok_exit(p)
    if bad:
        return False, f"{chosen} params: {bad}"
    return (True, f"{chosen} params took params") if _converted_equal(ctx, ref_raw, dst) else \
        (False, f"{chosen} params did not take params")


@case("torch_wrappers", 10, "params_only_converts")
def _(ctx, d):
    arrays = abpn_state(seed=7)
    ref = _plain_conversion(ctx, d, arrays)
    src = pth_from_arrays(os.path.join(d, "w.pth"), arrays, wrap=lambda o: collections.OrderedDict(params=o))
    dst = os.path.join(d, "w.ckpt")
    p = convert(ctx, src, dst)
    bad = ok_exit(p)
    if bad:
        return False, bad
    return (True, "same tensors") if _converted_equal(ctx, ref, dst) else (False, "tensors differ")


# ========================================================================================
# 11. image too small for SSIM
# ========================================================================================

def _two_sets_one_small(d):
    import cv2  # pylint: disable=import-outside-toplevel
    data = os.path.join(d, "data")
    write_images(os.path.join(data, "benchmark", "SetA", "HR"), 2, 48, seed=27)
    small = os.path.join(data, "benchmark", "SetB", "HR")
    write_images(small, 1, 48, seed=28, names=["fine"])
    cv2.imwrite(os.path.join(small, "tiny.png"), smooth_image((12, 24), 29))
    return data


@case("ssim_small", 11, "hr_too_small_named")
def _(ctx, d):
    """x4, HR 24x12 (mod 12): 4 px high after shaving 4: the error names the image."""
    data = _two_sets_one_small(d)
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x4"], variant="M2C8", scale=4,
                                        data=data, dataset="SetB"))
    return refused(p, mention=("tiny.png",))


@case("ssim_small", 11, "earlier_sets_not_lost")
def _(ctx, d):
    """SetA evaluates, SetB holds a too-small image: SetA's results are still reported."""
    data = _two_sets_one_small(d)
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x4"], variant="M2C8", scale=4,
                                        data=data, dataset="SetA,SetB"))
    bad = crashed(p)
    if bad:
        return False, bad
    text = p.stdout + p.stderr
    if "tiny" not in text:
        return False, f"the small image is not named ({p.brief()})"
    report = os.path.join(d, "r_failed.json")  # a failed run's report goes beside r.json, never over it
    kept = os.path.isfile(report) and "SetA" in open(report).read()
    shown = re.search(r"^SetA\s+\d+\s+\d+\.\d+", p.stdout, re.M) is not None
    if not (kept or shown):
        return False, "SetA's results were lost"
    if "SetB" not in text:
        return False, "does not say which set failed"
    return True, f"exit {p.rc}; SetA kept ({'report' if kept else 'table'}), SetB's image named"


@case("ssim_small", 11, "shave_larger_than_image")
def _(ctx, d):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--shave", "60"))
    return refused(p, mention_any=("shave", "shaving"))


@case("ssim_small", 11, "ssim_on_exactly_11_px")
def _(ctx, d):
    """Guard: HR 30x30 at x2 with shave 2... 24x24 crop -> 20x20 after shaving: evaluates."""
    import cv2  # pylint: disable=import-outside-toplevel
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "M", "HR")
    os.makedirs(hr)
    cv2.imwrite(os.path.join(hr, "m.png"), smooth_image(30, 30))
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x2"], variant="M2C8", scale=2,
                                        data=data, dataset="M"))
    bad = ok_exit(p)
    return (False, bad) if bad else (True, "evaluated")


# ========================================================================================
# 12. exported metadata and tiling
# ========================================================================================

def _edsr_export(ctx, folder, fmt, name="edsr_longrange_x2"):
    m = models(ctx)
    ext = ".onnx" if fmt == "ONNX" else ".mindir"
    path = os.path.join(folder, "edsr" + ext)
    p = ctx.entry("export.py", "--model", "edsr", "--variant", "baseline", "--scale", "2",
                  "--pre_trained", m[name], "--file_format", fmt, "--file_name", path,
                  "--input_shape", "1,3,24,24", timeout=900)
    if ok_exit(p) or not os.path.isfile(path):
        raise RuntimeError(f"export {fmt} failed: {ok_exit(p) or 'no file'}")
    return path


def long_export(ctx, fmt):
    """The long-range EDSR exported once as ``fmt`` (ONNX or MINDIR) by the project's export.py."""
    return ctx.fixture(f"edsr_long_{fmt}", lambda c, f: _edsr_export(c, f, fmt, "edsr_longrange_x2"))


def _noise_image(path, size=120):
    import cv2  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(31)
    cv2.imwrite(path, rng.integers(0, 256, (size, size, 3)).astype(np.uint8))
    return path


def _tiling_case(ctx, d, fmt):
    """infer.py with the exported long-range EDSR, tiled (8 px LR tiles) and whole, and with its
    checkpoint tiled: equal up to float rounding (2 levels). With a 16 px overlap (the runners'
    old assumption) pixels lose up to 40% of their context and differ by tens of levels."""
    model = long_export(ctx, fmt)
    img = _noise_image(os.path.join(d, "noise.png"), size=64)
    outs = {}
    for tag, extra in (("ckpt_tiled", ("--pre_trained", models(ctx)["edsr_longrange_x2"], "--tile_size", "8")),
                       ("model_tiled", ("--file_name", model, "--tile_size", "8")),
                       ("model_whole", ("--file_name", model, "--tile_size", "-1"))):
        out = os.path.join(d, tag)
        p = ctx.entry("infer.py", "--model", "edsr", "--variant", "baseline", "--scale", "2", "--input_path", img,
                      "--output_path", out, *extra)
        bad = ok_exit(p)
        if bad:
            return False, f"{tag}: {bad}"
        outs[tag] = read_any(glob.glob(os.path.join(out, "*.png"))[0]).astype(int)
    whole = outs["model_whole"]
    if int((np.abs(outs["ckpt_tiled"] - whole) > 2).sum()):
        return False, "the checkpoint tiled differs from the exported model whole (reference broken)"
    diff = np.abs(outs["model_tiled"] - whole)
    wrong = int((diff > 2).any(axis=2).sum())
    if wrong:
        return False, (f"exported EDSR tiled differs from the checkpoint in {wrong} px (up to {int(diff.max())} "
                       "levels): tile overlap below EDSR's receptive radius")
    return True, "tiled exported model equals the whole image and the tiled checkpoint"


@case("export_meta", 12, "onnx_edsr_tiles_like_checkpoint")
def _(ctx, d):
    return _tiling_case(ctx, d, "ONNX")


@case("export_meta", 12, "mindir_edsr_tiles_like_checkpoint")
def _(ctx, d):
    return _tiling_case(ctx, d, "MINDIR")


_ONNX_META_CODE = r"""
import json, sys
import onnx
m = onnx.load(sys.argv[1])
print("JSON:" + json.dumps({p.key: p.value for p in m.metadata_props}))
"""


@case("export_meta", 12, "onnx_metadata_has_radius_scale_colours")
def _(ctx, d):
    model = long_export(ctx, "ONNX")
    props = ctx.py_json(_ONNX_META_CODE, model)
    text = json.dumps(props).lower()
    values = " ".join(str(v) for v in props.values())
    if "36" in values and "2" in values and "3" in values and ("radius" in text or "receptive" in text):
        return True, f"metadata_props: {props}"
    return False, f"metadata_props lack the receptive radius 36 / scale / colours: {props}"


@case("export_meta", 12, "onnx_scale_mismatch_refused")
def _(ctx, d):
    model = long_export(ctx, "ONNX")
    img = write_images(os.path.join(d, "in"), 1, 24, seed=32)[0]
    p = ctx.entry("infer.py", "--file_name", model, "--scale", "3", "--input_path", img, "--output_path",
                  os.path.join(d, "out"))
    return refused(p, mention_any=("scale", "x2"))


# ========================================================================================
# 13. n_colors
# ========================================================================================

_NCOLORS_CODE = r"""
import json, sys
from src.models import create_model
model, form, colors = sys.argv[1], sys.argv[2], int(sys.argv[3])
variant = {"abpn": "M2C8", "ecbsr": "M4C8", "edsr": "baseline", "etds": "M5C16", "sesr": "M3"}[model]
try:
    net = create_model(model, variant, 2, form=form, n_colors=colors)
except ValueError as exc:
    print("JSON:" + json.dumps({"refused": str(exc)}))
else:
    print("JSON:" + json.dumps({"n_colors": net.n_colors, "type": type(net).__name__}))
"""


def _ncolors_case(ctx, model, form):
    got = {}
    for colors in (1, 3):
        got[colors] = ctx.py_json(_NCOLORS_CODE, model, form, colors)
    for colors, res in got.items():
        if "refused" in res:
            continue
        if res.get("n_colors") != colors:
            return False, f"{res['type']} built with n_colors={colors} exposes n_colors={res.get('n_colors')}"
    if all("refused" in r for r in got.values()):
        return False, f"refuses both n_colors 1 and 3: {got}"
    return True, "; ".join(f"n_colors {c}: {r.get('n_colors', 'refused')}" for c, r in got.items())


for _model, _form in (("abpn", "deploy"), ("ecbsr", "deploy"), ("ecbsr", "train"), ("edsr", "deploy"),
                      ("etds", "deploy"), ("etds", "train"), ("sesr", "deploy")):
    case("n_colors", 13, f"{_model}_{_form}_exposes_n_colors")(
        (lambda m, f: lambda ctx, d: _ncolors_case(ctx, m, f))(_model, _form))


@case("n_colors", 13, "eval_abpn_n_colors_1")
def _(ctx, d):
    """Issue example: an n_colors 1 ABPN fails in SRPredictor."""
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=models(ctx)["abpn_M2C8_x2_n1"], variant="M2C8", scale=2,
                                        extra=("--n_colors", "1")))
    bad = ok_exit(p)
    if bad:
        return False, bad
    value = report_psnr(os.path.join(d, "r.json"))
    return (True, f"evaluated the Y model: PSNR {value:.2f}") if np.isfinite(value) and value > 5 else \
        (False, f"PSNR {value}")


@case("n_colors", 13, "infer_abpn_n_colors_1")
def _(ctx, d):
    img = write_images(os.path.join(d, "in"), 1, 24, seed=33)[0]
    args = infer_args(ctx, d, img, "--n_colors", "1")
    args[args.index("--pre_trained") + 1] = models(ctx)["abpn_M2C8_x2_n1"]
    p = ctx.entry("infer.py", *args)
    bad = ok_exit(p)
    if bad:
        return False, bad
    outs = glob.glob(os.path.join(d, "out", "*.png"))
    return (True, "upscaled") if outs and read_any(outs[0]).shape[:2] == (48, 48) else (False, "no 48x48 output")


@case("n_colors", 13, "export_abpn_n_colors_1")
def _(ctx, d):
    path = os.path.join(d, "y.onnx")
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--n_colors", "1",
                  "--pre_trained", models(ctx)["abpn_M2C8_x2_n1"], "--file_format", "ONNX", "--file_name", path)
    bad = ok_exit(p)
    return (False, bad) if bad else ((True, "exported a 1-channel ONNX") if os.path.isfile(path) else
                                     (False, "no file"))


# ========================================================================================
# 14/16/17. run identity, resume, determinism, logs
# ========================================================================================

def _first_run(ctx, d, *extra):
    p = ctx.entry("train.py", *train_args(ctx, d, *extra))
    if ok_exit(p):
        raise RuntimeError("first training run failed: " + ok_exit(p))
    return os.path.join(d, "ck")


def _resume_other(ctx, d, change, mention_any):
    ck = _first_run(ctx, d)
    before = tree_digest(ck)
    args = train_args(ctx, d, "--resume", "True", steps=6)
    for i in range(0, len(change), 2):
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i:i + 2]
    p = ctx.entry("train.py", *args)
    if "resumed at step" in p.stdout:
        return False, f"resumed a state from a different run ({' '.join(change)})"
    held, why = refused(p, mention_any=mention_any)
    if held and tree_digest(ck) != before:
        return False, "refused but changed the run's files"
    return held, why


@case("run_identity", 14, "resume_with_other_train_path")
def _(ctx, d):
    other = os.path.join(d, "other_train")
    write_images(other, 4, 48, seed=34)
    return _resume_other(ctx, d, ["--train_path", other], ("train_path", "data"))


@case("run_identity", 14, "resume_with_other_lr")
def _(ctx, d):
    return _resume_other(ctx, d, ["--lr", "0.01"], ("lr",))


@case("run_identity", 14, "resume_with_other_patch_size")
def _(ctx, d):
    return _resume_other(ctx, d, ["--patch_size", "12"], ("patch_size",))


@case("run_identity", 14, "resume_with_other_scheduler")
def _(ctx, d):
    return _resume_other(ctx, d, ["--lr_scheduler", "multistep", "--lr_milestones", "3"],
                         ("lr_scheduler", "schedule", "lr_milestones"))


@case("run_identity", 14, "resume_with_other_seed")
def _(ctx, d):
    return _resume_other(ctx, d, ["--seed", "7"], ("seed",))


@case("run_identity", 14, "resume_with_other_batch_size")
def _(ctx, d):
    return _resume_other(ctx, d, ["--batch_size", "4"], ("batch",))


@case("run_identity", 14, "resume_same_run_continues")
def _(ctx, d):
    _first_run(ctx, d)
    p = ctx.entry("train.py", *train_args(ctx, d, "--resume", "True", steps=6))
    bad = ok_exit(p)
    if bad:
        return False, bad
    return (True, "resumed at step 4") if "resumed at step 4" in p.stdout else (False, "did not resume at step 4")


@case("run_identity", 14, "fresh_run_into_other_runs_folder")
def _(ctx, d):
    """A fresh run (no --resume) into a folder holding another run's states must not replace them."""
    ck = _first_run(ctx, d)
    before = tree_digest(ck)
    args = train_args(ctx, d, "--lr", "0.005")
    p = ctx.entry("train.py", *args)
    after = tree_digest(ck)
    lost = sorted(k for k, v in before.items() if after.get(k) != v and not k.endswith(".log"))
    if lost:
        return False, f"exit {p.rc}; replaced or pruned the other run's {lost[:4]}"
    held, why = refused(p)
    if held:
        return True, why
    bad = ok_exit(p)
    return (False, bad) if bad else (True, "finished and kept the other run's files")


@case("run_identity", 14, "all_states_unreadable_resume")
def _(ctx, d):
    """Every state damaged + --resume True: stop with a message, keep best.ckpt and the CSV."""
    ck = _first_run(ctx, d)
    for path in glob.glob(os.path.join(ck, "*_state_*.ckpt")):
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
    keep = {k: v for k, v in tree_digest(ck).items() if k.endswith(("_best.ckpt", ".csv", "_last.ckpt"))}
    p = ctx.entry("train.py", *train_args(ctx, d, "--resume", "True", steps=6))
    after = tree_digest(ck)
    changed = sorted(k for k, v in keep.items() if after.get(k) != v)
    if changed:
        return False, f"exit {p.rc}; restarted from step 0 and replaced {changed}"
    return refused(p)


@case("run_identity", 16, "same_options_same_weights")
def _(ctx, d):
    """Two uninterrupted runs with the same options and seed give the same parameter digest."""
    digests = []
    for i in range(2):
        sub = os.path.join(d, f"r{i}")
        p = ctx.entry("train.py", *train_args(ctx, sub, steps=6, val_every=6))
        if ok_exit(p):
            return False, ok_exit(p)
        digests.append(_digest(p.stdout))
    return (True, f"both {digests[0]}") if digests[0] and digests[0] == digests[1] else \
        (False, f"digests differ: {digests}")


def _kill_then_resume(ctx, d, args, min_step=2):
    ck = os.path.join(d, "ck")
    os.makedirs(ck, exist_ok=True)

    def watch(proc):
        deadline = time.time() + 240
        while time.time() < deadline and alive(proc):
            if glob.glob(os.path.join(ck, "*_state_*.ckpt")):
                _killpg(proc.pid)
                return
            time.sleep(0.02)
    first = ctx.entry("train.py", *args, after_start=watch)
    states = sorted(glob.glob(os.path.join(ck, "*_state_*.ckpt")))
    if first.rc == 0 or not states:
        raise RuntimeError(f"could not interrupt the run ({first.brief()}, states {states})")
    return ctx.entry("train.py", *args, "--resume", "True")


def _train96(ctx, folder):
    write_images(os.path.join(folder, "train"), 4, 96, seed=35)
    return folder


def _interrupt_args(ctx, d):
    t = train_data(ctx)
    big = ctx.fixture("train96", _train96)
    return ["--model", "abpn", "--variant", "M4C28", "--scale", "2", "--train_path", os.path.join(big, "train"),
            "--val_data_path", os.path.join(t, "data"), "--val_datasets", "Val", "--patch_size", "32",
            "--batch_size", "8", "--cache_dir", os.path.join(d, "cache"), "--total_steps", "30",
            "--val_every", "30", "--save_every", "3", "--log_every", "30", "--num_workers", "1",
            "--lr_scheduler", "multistep", "--ckpt_dir", os.path.join(d, "ck")]


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@case("run_identity", 16, "resume_after_kill_equals_uninterrupted")
def _(ctx, d):
    ref_dir = os.path.join(d, "ref")
    ref = ctx.entry("train.py", *_interrupt_args(ctx, ref_dir))
    if ok_exit(ref):
        return False, "reference run: " + ok_exit(ref)
    run_dir = os.path.join(d, "run")
    p = _kill_then_resume(ctx, run_dir, _interrupt_args(ctx, run_dir))
    bad = ok_exit(p)
    if bad:
        return False, bad
    a, b = _digest(p.stdout), _digest(ref.stdout)
    return (True, f"resumed = uninterrupted ({a})") if a and a == b else (False, f"digest {a} vs uninterrupted {b}")


@case("run_identity", 17, "first_csv_row_after_resume_averages_interval")
def _(ctx, d):
    ref_dir = os.path.join(d, "ref")
    ref = ctx.entry("train.py", *_interrupt_args(ctx, ref_dir))
    if ok_exit(ref):
        return False, "reference run: " + ok_exit(ref)
    run_dir = os.path.join(d, "run")
    p = _kill_then_resume(ctx, run_dir, _interrupt_args(ctx, run_dir))
    bad = ok_exit(p)
    if bad:
        return False, bad
    name = "abpn_M4C28_x2_train_log.csv"
    want = [r for r in _csv_rows(os.path.join(ref_dir, "ck", name))[1:] if r and r[0] == "30"]
    got = [r for r in _csv_rows(os.path.join(run_dir, "ck", name))[1:] if r and r[0] == "30"]
    if not want or not got:
        return False, "no CSV row at step 30"
    if _digest(p.stdout) != _digest(ref.stdout):
        return False, "resumed weights differ from the uninterrupted run (see determinism); cannot compare"
    return (True, f"loss {got[0][1]} = uninterrupted") if abs(float(got[0][1]) - float(want[0][1])) < 1e-6 else \
        (False, f"first row after resume: loss {got[0][1]} vs uninterrupted {want[0][1]} (averaged only the "
                "steps after the resume)")


@case("run_identity", 17, "skipped_step_logged_as_skipped")
def _(ctx, d):
    """lr 1e30: step 1 moves the weights to ~1e30, later steps are non-finite and skipped."""
    p = ctx.entry("train.py", *train_args(ctx, d, "--lr", "1e30", "--lr_scheduler", "multistep"))
    if crashed(p):
        return False, crashed(p)
    held, why = refused(p)
    lines = [l for l in p.stdout.splitlines() if re.match(r"step [234]/4 epoch", l)]
    if not lines:
        return (True, why) if held else (False, f"no progress lines for steps 2-4 ({p.brief()})")
    bad = [l for l in lines if not re.search(r"skip|non-finite|nan|inf", l, re.I)]
    if bad:
        return False, f"a skipped step logged with a finite loss: {bad[0][:160]}"
    return True, "skipped steps logged as skipped"


# ========================================================================================
# 15. non-finite values
# ========================================================================================

def _nonfinite_case(ctx, d, *extra, mention_any=(), may_skip=False):
    """Refused (naming the option), and never a checkpoint with a non-finite tensor. With ``may_skip``
    (a value finite in float64 but not in float32) the run may instead finish with every non-finite
    step skipped and logged as skipped."""
    p = ctx.entry("train.py", *train_args(ctx, d, *extra))
    ck = os.path.join(d, "ck")
    bad_files = nonfinite_ckpts(ctx, ck) if os.path.isdir(ck) else []
    if bad_files:
        return False, f"exit {p.rc}; wrote non-finite tensors to {bad_files}"
    held, why = refused(p, mention_any=mention_any)
    if held:
        return True, why
    if may_skip and not ok_exit(p) and re.search(r"skip", p.stdout, re.I):
        return True, "finished with the non-finite steps skipped and logged; all checkpoints finite"
    return False, why


for _name, _extra, _mention, *_skip in (
        ("lr_nan", ("--lr", "nan"), ("lr",)),
        ("lr_inf", ("--lr", "inf"), ("lr",)),
        ("lr_negative", ("--lr", "-0.001"), ("lr",)),
        ("lr_above_float32", ("--lr", "1e39"), ("lr",), True),
        ("min_lr_nan", ("--min_lr", "nan"), ("min_lr",)),
        ("ema_decay_1", ("--ema_decay", "1.0"), ("ema_decay",)),
        ("ema_decay_negative", ("--ema_decay", "-0.1"), ("ema_decay",)),
        ("ema_decay_nan", ("--ema_decay", "nan"), ("ema_decay",)),
        ("lr_gamma_nan", ("--lr_scheduler", "multistep", "--lr_milestones", "2", "--lr_gamma", "nan"),
         ("lr_gamma",)),
        ("clip_grad_norm_nan", ("--clip_grad_norm", "nan"), ("clip_grad_norm",)),
):
    case("non_finite", 15, _name)((lambda e, m, k: lambda ctx, d: _nonfinite_case(ctx, d, *e, mention_any=m,
                                                                                   may_skip=k))(
        _extra, _mention, bool(_skip)))


# ========================================================================================
# 18. config values
# ========================================================================================

def _train_value(ctx, d, key, value, mention=None):
    p = ctx.entry("train.py", *train_args(ctx, d, f"--{key}", value))
    return refused(p, mention_any=(mention or key,))


def _eval_value(ctx, d, key, value, *extra, mention=None):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, *extra, f"--{key}", value))
    return refused(p, mention_any=(mention or key,))


for _key, _value in (("batch_size", "0"), ("patch_size", "0"), ("val_every", "0"), ("total_steps", "0"),
                     ("warmup_steps", "-1"), ("lr_milestones", "3,abc"), ("save_every", "-2")):
    case("config", 18, f"train_{_key}_{_value}")(
        (lambda k, v: lambda ctx, d: _train_value(ctx, d, k, v))(_key, _value))

_CALIB = ("--quant_method", "minmax", "--calib_num", "2", "--pac_hr_patch", "32")


def _calib_dir(ctx):
    return ctx.fixture("calib", lambda c, f: os.path.dirname(write_images(os.path.join(f, "c"), 2, 64, seed=36)[0]))


for _key, _value, _extra in (("max_tile_mem_gb", "inf", ()), ("max_tile_mem_gb", "0", ()),
                             ("max_tile_mem_gb", "nan", ()), ("gt_mod", "-12", ()),
                             ("calib_num", "0", _CALIB), ("calib_batch", "0", _CALIB),
                             ("pac_hr_patch", "0", _CALIB), ("dbdc_p", "0", ("--quant_method", "dbdc",
                                                                              "--calib_num", "2",
                                                                              "--pac_hr_patch", "32")),
                             ("dbdc_p", "0.5", ("--quant_method", "dbdc", "--calib_num", "2", "--pac_hr_patch",
                                                "32")),
                             ("percentile", "1.5", ("--quant_method", "percentile", "--calib_num", "2",
                                                    "--pac_hr_patch", "32")),
                             ("w_bit", "9", _CALIB), ("eval_datasets", ",", ())):
    case("config", 18, f"eval_{_key}_{_value}")(
        (lambda k, v, e: lambda ctx, d: _eval_value(ctx, d, k, v, *e, "--calib_path", _calib_dir(ctx))
         if e else _eval_value(ctx, d, k, v))(_key, _value, _extra))


def _yaml_from_root(ctx, d, replace):
    """The root's DIV2K_config.yaml with ``{key: new line}`` substituted in its first document."""
    with open(os.path.join(ctx.root, "DIV2K_config.yaml"), encoding="utf-8") as fh:
        text = fh.read()
    head, sep, rest = text.partition("\n---\n")
    for key, line in replace.items():
        head, n = re.subn(rf"^{key}:.*$", line, head, flags=re.M)
        if not n:
            head += "\n" + line
    path = os.path.join(d, "my.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + sep + rest)
    return path


@case("config", 18, "yaml_unknown_key_standalone")
def _(ctx, d):
    cfg = _yaml_from_root(ctx, d, {"learning_rate": "learning_rate: 0.1"})
    p = ctx.entry("eval.py", "--config_path", cfg, *tiny_eval_args(ctx, d))
    return refused(p, mention=("learning_rate",))


@case("config", 18, "yaml_syntax_error")
def _(ctx, d):
    cfg = _yaml_from_root(ctx, d, {"scale": "scale: [2"})
    p = ctx.entry("eval.py", "--config_path", cfg, *tiny_eval_args(ctx, d))
    return refused(p, mention_any=("my.yaml", "yaml"))


@case("config", 18, "recon_drop_out_of_range")
def _(ctx, d):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "dbdc_recon", "--recon_drop", "1.5"))
    return refused(p, mention=("recon_drop",))


@case("config", 18, "recon_batch_above_calib_num")
def _(ctx, d):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "dbdc_recon", "--calib_num", "3",
                                             "--recon_batch", "4"))
    return refused(p, mention=("recon_batch", "calib_num"))


@case("config", 18, "zoo_table_missing_file")
def _(ctx, d):
    p = ctx.entry(os.path.join("scripts", "ptq_zoo_table.py"), os.path.join(d, "nope.json"))
    return refused(p, mention=("nope.json",))


@case("config", 18, "zoo_table_not_a_sweep")
def _(ctx, d):
    path = os.path.join(d, "other.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"results": {}}, fh)
    p = ctx.entry(os.path.join("scripts", "ptq_zoo_table.py"), path, "--out", os.path.join(d, "zoo.md"))
    held, why = refused(p, mention=("other.json",))
    if held and os.path.exists(os.path.join(d, "zoo.md")):
        return False, "refused but wrote zoo.md"
    return held, why


@case("config", 18, "config_file_missing")
def _(ctx, d):
    p = ctx.entry("eval.py", "--config_path", os.path.join(d, "nope.yaml"), *tiny_eval_args(ctx, d))
    return refused(p, mention=("nope.yaml",))


@case("config", 18, "yaml_empty_file")
def _(ctx, d):
    cfg = os.path.join(d, "empty.yaml")
    open(cfg, "w").close()
    p = ctx.entry("eval.py", "--config_path", cfg, *tiny_eval_args(ctx, d))
    return refused(p, mention=("empty.yaml",))


@case("config", 18, "yaml_scale_3.0")
def _(ctx, d):
    """YAML scale: 3.0: accepted as 3 (same PSNR as scale: 3) or refused naming scale."""
    ref_cfg = _yaml_from_root(ctx, d, {"scale": "scale: 3"})
    args = [a for a in eval_args(ctx, d)]
    i = args.index("--scale")
    del args[i:i + 2]
    _, ref = run_eval_psnr(ctx, d, ["--config_path", ref_cfg] + args, "ref")
    os.makedirs(os.path.join(d, "b"))
    cfg = _yaml_from_root(ctx, os.path.join(d, "b"), {"scale": "scale: 3.0"})
    p, value = run_eval_psnr(ctx, d, ["--config_path", cfg] + args, "float")
    if ref is None:
        return False, "reference with scale: 3 failed"
    held, why = refused(p, mention=("scale",))
    if held:
        return True, why
    bad = ok_exit(p)
    if bad:
        return False, bad
    report = json.load(open(os.path.join(d, "r_float.json")))
    if report.get("scale") != 3 or not isinstance(report.get("scale"), int) or "3.0" in p.stdout:
        return False, f"accepted 3.0 as a float scale (report scale {report.get('scale')!r})"
    return (True, "accepted as 3") if close(value, ref) else (False, f"PSNR {value} vs {ref}")


@case("config", 18, "yaml_batch_size_string")
def _(ctx, d):
    cfg = _yaml_from_root(ctx, d, {"batch_size": 'batch_size: "16"'})
    args = train_args(ctx, d)
    i = args.index("--batch_size")
    del args[i:i + 2]
    p = ctx.entry("train.py", "--config_path", cfg, *args, "--total_steps", "2", "--val_every", "2")
    held, why = refused(p, mention=("batch_size",))
    if held:
        return True, why
    bad = ok_exit(p)
    if bad:
        return False, bad
    return (True, "accepted as 16") if "batch 16" in p.stdout else (False, "accepted but batch not 16")


@case("config", 18, "yaml_patch_size_negative")
def _(ctx, d):
    cfg = _yaml_from_root(ctx, d, {"patch_size": "patch_size: -8"})
    args = train_args(ctx, d)
    i = args.index("--patch_size")
    del args[i:i + 2]
    return refused(ctx.entry("train.py", "--config_path", cfg, *args), mention=("patch_size",))


@case("config", 18, "cli_scale_3.0")
def _(ctx, d):
    p = ctx.entry("eval.py", *eval_args(ctx, d, extra=("--scale", "3.0")))
    held, why = refused(p, mention=("scale",))
    if held:
        return True, why
    bad = ok_exit(p)
    return (False, bad) if bad else (True, "accepted as 3")


@case("config", 18, "cli_scale_5")
def _(ctx, d):
    return refused(ctx.entry("eval.py", *eval_args(ctx, d, extra=("--scale", "5"))), mention=("scale",))


@case("config", 18, "input_shape_huge")
def _(ctx, d):
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained",
                  models(ctx)["abpn_M2C8_x2"], "--file_format", "ONNX", "--file_name", os.path.join(d, "m.onnx"),
                  "--input_shape", "1,3,100000,100000")
    held, why = refused(p, mention=("input_shape",))
    if held and os.path.exists(os.path.join(d, "m.onnx")):
        return False, "refused after writing the file"
    return held, why


@case("config", 18, "input_shape_not_numbers")
def _(ctx, d):
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained",
                  models(ctx)["abpn_M2C8_x2"], "--file_format", "ONNX", "--file_name", os.path.join(d, "m.onnx"),
                  "--input_shape", "1,3,abc,8")
    return refused(p, mention=("input_shape",))


@case("config", 18, "variant_zero_channels")
def _(ctx, d):
    p = ctx.entry("train.py", *train_args(ctx, d, "--variant", "M2C0"))
    return refused(p, mention_any=("variant", "M2C0"))


@case("config", 18, "unknown_cli_option")
def _(ctx, d):
    return refused(ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--learning_rate", "1")),
                   mention=("learning_rate",))


# ========================================================================================
# 19. output paths
# ========================================================================================

def _blocker(d):
    path = os.path.join(d, "blocker.txt")
    with open(path, "w") as fh:
        fh.write("not a folder\n")
    return path


def _path_case(p, must_not_exist=(), mention_any=()):
    held, why = refused(p, mention_any=mention_any)
    for path in must_not_exist:
        if os.path.exists(path):
            return False, f"left {path}"
    return held, why


@case("output_paths", 19, "eval_output_path_is_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    args = tiny_eval_args(ctx, d)
    i = args.index("--result_file")
    del args[i:i + 2]
    args[args.index("--output_path") + 1] = blocker
    p = ctx.entry("eval.py", *args)
    return _path_case(p, mention_any=("blocker.txt", "output_path"))


@case("output_paths", 19, "eval_result_file_under_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    args = tiny_eval_args(ctx, d)
    args[args.index("--result_file") + 1] = os.path.join(blocker, "r.json")
    return _path_case(ctx.entry("eval.py", *args), mention_any=("blocker.txt", "result_file"))


@case("output_paths", 19, "eval_save_sr_output_is_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    args = tiny_eval_args(ctx, d, "--save_sr", "True")
    args[args.index("--output_path") + 1] = blocker
    return _path_case(ctx.entry("eval.py", *args), mention_any=("blocker.txt", "output_path"))


@case("output_paths", 19, "export_file_name_under_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained",
                  models(ctx)["abpn_M2C8_x2"], "--file_format", "ONNX", "--file_name",
                  os.path.join(blocker, "m.onnx"), "--input_shape", "1,3,16,16")
    return _path_case(p, mention_any=("blocker.txt", "file_name"))


@case("output_paths", 19, "export_mindir_under_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained",
                  models(ctx)["abpn_M2C8_x2"], "--file_format", "MINDIR", "--file_name",
                  os.path.join(blocker, "m.mindir"), "--input_shape", "1,3,16,16")
    return _path_case(p, mention_any=("blocker.txt", "file_name"))


@case("output_paths", 19, "convert_dst_under_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    return _path_case(convert(ctx, src, os.path.join(blocker, "w.ckpt")), mention_any=("blocker.txt", "dst"))


@case("output_paths", 19, "train_ckpt_dir_is_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    args = train_args(ctx, d)
    args[args.index("--ckpt_dir") + 1] = blocker
    return _path_case(ctx.entry("train.py", *args), mention_any=("blocker.txt", "ckpt_dir"))


@case("output_paths", 19, "infer_output_path_is_a_file")
def _(ctx, d):
    blocker = _blocker(d)
    img = write_images(os.path.join(d, "in"), 1, 24, seed=37)[0]
    return _path_case(ctx.entry("infer.py", *infer_args(ctx, d, img, out=blocker)),
                      mention_any=("blocker.txt", "output_path"))


def _readonly(d):
    if os.geteuid() == 0:
        raise Skip("running as root: a read-only folder is writable anyway")
    folder = os.path.join(d, "ro")
    os.makedirs(folder)
    os.chmod(folder, 0o555)
    return folder


@case("output_paths", 19, "eval_output_read_only")
def _(ctx, d):
    ro = _readonly(d)
    args = tiny_eval_args(ctx, d)
    args[args.index("--result_file") + 1] = os.path.join(ro, "r.json")
    return _path_case(ctx.entry("eval.py", *args))


@case("output_paths", 19, "export_read_only")
def _(ctx, d):
    ro = _readonly(d)
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained",
                  models(ctx)["abpn_M2C8_x2"], "--file_format", "ONNX", "--file_name", os.path.join(ro, "m.onnx"),
                  "--input_shape", "1,3,16,16")
    return _path_case(p)


def _full_disk_verdict(p, folder, target, before=None):
    held, why = refused(p)
    leftovers = stray_temps(folder)
    if leftovers:
        return False, f"left partial files {leftovers} ({why})"
    if before is not None:
        if not os.path.isfile(target) or sha(target) != before:
            return False, f"the existing {os.path.basename(target)} was damaged ({why})"
    elif os.path.exists(target) and os.path.getsize(target) == 0:
        return False, "left an empty output"
    return held, why


FULL_DISK = 24 * 1024  # RLIMIT_FSIZE: writes beyond 24 KiB fail with EFBIG, as on a full disk


@case("output_paths", 19, "convert_full_disk")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    out = os.path.join(d, "out")
    os.makedirs(out)
    dst = os.path.join(out, "w.ckpt")
    with open(dst, "w") as fh:
        fh.write("an older checkpoint\n")
    before = sha(dst)
    p = convert(ctx, src, dst, fsize=FULL_DISK)
    return _full_disk_verdict(p, out, dst, before)


@case("output_paths", 19, "export_full_disk")
def _(ctx, d):
    out = os.path.join(d, "out")
    os.makedirs(out)
    dst = os.path.join(out, "m.onnx")
    p = ctx.entry("export.py", "--model", "abpn", "--variant", "M4C28", "--scale", "3", "--pre_trained",
                  models(ctx)["abpn_M4C28_x3"], "--file_format", "ONNX", "--file_name", dst,
                  "--input_shape", "1,3,16,16", fsize=FULL_DISK)
    if p.rc == 0 and os.path.isfile(dst) and os.path.getsize(dst) < FULL_DISK:
        raise Skip("the exported file fits under the simulated disk limit")
    return _full_disk_verdict(p, out, dst)


@case("output_paths", 19, "eval_save_sr_full_disk")
def _(ctx, d):
    """--save_sr with the disk full: one line, no half-written PNG."""
    import cv2  # pylint: disable=import-outside-toplevel
    out = os.path.join(d, "out")
    data = os.path.join(d, "data")
    hr = os.path.join(data, "benchmark", "N", "HR")
    os.makedirs(hr)
    rng = np.random.default_rng(39)
    for i in range(2):  # noise: every SR PNG is far above the 24 KiB limit
        cv2.imwrite(os.path.join(hr, f"n{i}.png"), rng.integers(0, 256, (240, 240, 3)).astype(np.uint8))
    args = tiny_eval_args(ctx, d)
    args[args.index("--data_path") + 1] = data
    args[args.index("--eval_datasets") + 1] = "N"
    first = ctx.entry("eval.py", *args)  # fills the LR cache while the disk has room
    if ok_exit(first):
        return False, "first evaluation: " + ok_exit(first)
    p = ctx.entry("eval.py", *args, "--save_sr", "True", fsize=FULL_DISK)
    sr_dirs = glob.glob(os.path.join(out, "sr_*", "N"))
    for folder in sr_dirs:
        small = [f for f in os.listdir(folder) if os.path.getsize(os.path.join(folder, f)) < 1000]
        if small:
            return False, f"left truncated SR images {small}"
    return _full_disk_verdict(p, sr_dirs[0] if sr_dirs else out, os.path.join(out, "none"))


@case("output_paths", 19, "train_full_disk")
def _(ctx, d):
    p = ctx.entry("train.py", *train_args(ctx, d, "--variant", "M4C28"), fsize=FULL_DISK)
    return _full_disk_verdict(p, os.path.join(d, "ck"), os.path.join(d, "ck", "none"))


# ========================================================================================
# 19. device, corrupt models, calibration
# ========================================================================================

@case("device_misc", 19, "device_target_gpu_on_cpu_build")
def _(ctx, d):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--device_target", "GPU"))
    return refused(p, mention_any=("GPU",))


@case("device_misc", 19, "device_target_ascend_on_cpu_build")
def _(ctx, d):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--device_target", "Ascend"))
    return refused(p, mention_any=("Ascend",))


@case("device_misc", 19, "infer_corrupt_onnx")
def _(ctx, d):
    model = os.path.join(d, "bad.onnx")
    with open(model, "wb") as fh:
        fh.write(b"\x08\x07\x12\x04junk" + os.urandom(200))
    img = write_images(os.path.join(d, "in"), 1, 24, seed=40)[0]
    p = ctx.entry("infer.py", "--file_name", model, "--input_path", img, "--output_path", os.path.join(d, "out"))
    return refused(p, mention=("bad.onnx",))


@case("device_misc", 19, "infer_corrupt_mindir")
def _(ctx, d):
    model = os.path.join(d, "bad.mindir")
    with open(model, "wb") as fh:
        fh.write(os.urandom(300))
    img = write_images(os.path.join(d, "in"), 1, 24, seed=41)[0]
    p = ctx.entry("infer.py", "--file_name", model, "--input_path", img, "--output_path", os.path.join(d, "out"))
    return refused(p, mention=("bad.mindir",))


@case("device_misc", 19, "infer_truncated_onnx")
def _(ctx, d):
    model = long_export(ctx, "ONNX")
    cut = os.path.join(d, "cut.onnx")
    data = open(model, "rb").read()
    with open(cut, "wb") as fh:
        fh.write(data[: len(data) // 2])
    img = write_images(os.path.join(d, "in"), 1, 24, seed=42)[0]
    p = ctx.entry("infer.py", "--file_name", cut, "--input_path", img, "--output_path", os.path.join(d, "out"))
    return refused(p, mention=("cut.onnx",))


@case("device_misc", 19, "infer_folder_named_x_png")
def _(ctx, d):
    """A folder named x.png among the inputs: its own line saying it is a folder (refused, or skipped with
    the other image written), never 'image not found'."""
    src = os.path.join(d, "in")
    write_images(src, 1, 24, seed=43, names=["real"])
    os.makedirs(os.path.join(src, "x.png"))
    p = ctx.entry("infer.py", *infer_args(ctx, d, src))
    folder_words = ("folder", "directory", "not an image", "not a file")
    held, why = refused(p, mention=("x.png",), mention_any=folder_words)
    if held:
        return True, why
    bad = crashed(p)
    if bad:
        return False, bad
    outs = sorted(os.listdir(os.path.join(d, "out"))) if os.path.isdir(os.path.join(d, "out")) else []
    said = [l for l in (p.stdout + "\n" + p.stderr).splitlines() if "x.png" in l]
    named = any(_names(l, w) for l in said for w in folder_words)
    if outs == ["real_x2.png"] and (p.rc == 0 or named):
        return True, f"exit {p.rc}: the image written, x.png " + ("named as a folder" if named else "ignored")
    return False, f"exit {p.rc}, wrote {outs}; about x.png: {said[0][:160] if said else 'nothing'}"


@case("device_misc", 19, "input_path_is_folder_named_x_png")
def _(ctx, d):
    folder = os.path.join(d, "x.png")
    os.makedirs(folder)
    p = ctx.entry("infer.py", *infer_args(ctx, d, folder))
    return refused(p, mention_any=("x.png",))


@case("device_misc", 19, "missing_calib_path")
def _(ctx, d):
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "minmax", "--calib_path",
                                             os.path.join(d, "no_calib")))
    return refused(p, mention=("calib_path",))


@case("device_misc", 19, "omse_on_constant_images")
def _(ctx, d):
    import cv2  # pylint: disable=import-outside-toplevel
    calib = os.path.join(d, "calib")
    os.makedirs(calib)
    for i in range(2):
        cv2.imwrite(os.path.join(calib, f"c{i}.png"), np.full((64, 64, 3), 128, np.uint8))
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "omse", "--calib_path", calib,
                                             "--calib_num", "2", "--pac_hr_patch", "32"))
    held, why = refused(p, mention_any=("constant", "calib"))
    if held:
        return True, why
    bad = ok_exit(p)
    if bad:
        return False, bad
    report = json.load(open(os.path.join(d, "r.json")))
    values = [v["psnr"] for v in report.get("results", {}).values()]
    if values and all(np.isfinite(values)):
        return True, f"calibrated on constant images: finite PSNR {values}"
    return False, f"non-finite result {values}"


@case("device_misc", 19, "calib_folder_without_large_images")
def _(ctx, d):
    calib = os.path.join(d, "calib")
    write_images(calib, 2, 16, seed=44)
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "minmax", "--calib_path", calib,
                                             "--calib_num", "2", "--pac_hr_patch", "64"))
    return refused(p, mention_any=("pac_hr_patch", "calib_path"))


@case("device_misc", 19, "pre_trained_is_a_pth")
def _(ctx, d):
    src = pth_from_arrays(os.path.join(d, "w.pth"), abpn_state())
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=src))
    return refused(p, mention_any=("convert_torch_weights", ".pth"))


@case("device_misc", 19, "pre_trained_truncated_ckpt")
def _(ctx, d):
    ckpt = os.path.join(d, "cut.ckpt")
    data = open(models(ctx)["abpn_M2C8_x2"], "rb").read()
    with open(ckpt, "wb") as fh:
        fh.write(data[: len(data) // 2])
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=ckpt, variant="M2C8", scale=2))
    return refused(p, mention=("cut.ckpt",))


# ========================================================================================
# 20. mobile files (issue 14): TFLite / ORT export options, .tflite / .ort run by eval.py and infer.py
# ========================================================================================

_HAS_MOBILE_CODE = r"""
import importlib.util, json
print("JSON:" + json.dumps(all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "ai_edge_litert"))))
"""


def _mobile_export_args(ctx, ckpt, fmt, path, *extra):
    return ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt, "--file_format", fmt,
            "--file_name", path, "--input_shape", "1,3,16,24", *extra]


def _mobile_files(ctx, folder):
    """{float_tflite, int8_tflite, ort}: ABPN-M2C8 x2 (random weights; int8 from the minmax-calibrated
    checkpoint) exported by export.py at 1x3x16x24; None when requirements-mobile.txt is not installed."""
    if not ctx.py_json(_HAS_MOBILE_CODE):
        return None
    calibrated = ctx.fixture("calibrated", _calibrated)
    made = {}
    for key, ckpt, fmt, name, extra in (("float_tflite", models(ctx)["abpn_M2C8_x2"], "TFLITE", "f.tflite", ()),
                                        ("int8_tflite", calibrated, "TFLITE", "q.tflite", ("--quant", "int8")),
                                        ("ort", models(ctx)["abpn_M2C8_x2"], "ORT", "f.ort", ())):
        path = os.path.join(folder, name)
        p = ctx.entry("export.py", *_mobile_export_args(ctx, ckpt, fmt, path, *extra), timeout=900)
        if ok_exit(p) or not os.path.isfile(path):
            raise RuntimeError(f"export {fmt} {' '.join(extra)}: {ok_exit(p) or 'no file'}")
        made[key] = path
    return made


def mobile_files(ctx):
    """The exported mobile files (see :func:`_mobile_files`); Skip without requirements-mobile.txt."""
    files = ctx.fixture("mobile_files", _mobile_files)
    if files is None:
        raise Skip("tensorflow / ai-edge-litert not installed (requirements-mobile.txt)")
    return files


def _blocked_module(d, module):
    """A folder holding a ``module`` package that raises ImportError (put it first on PYTHONPATH)."""
    folder = os.path.join(d, "blocked", module)
    os.makedirs(folder)
    with open(os.path.join(folder, "__init__.py"), "w") as fh:
        fh.write(f"raise ImportError('No module named {module} (blocked by the sweep)')\n")
    return os.path.join(d, "blocked")


def _env_with_path(ctx, first):
    env = dict(ctx.env)
    env["PYTHONPATH"] = first + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _file_eval_args(ctx, d, model_file, *extra):
    return ["--pre_trained", model_file, "--data_path", eval_data(ctx), "--eval_datasets", "S",
            "--cache_dir", os.path.join(d, "cache"), "--output_path", os.path.join(d, "out"),
            "--result_file", os.path.join(d, "r.json"), *[str(e) for e in extra]]


def _export_refusal(ctx, d, fmt, extra, mention, ckpt=None, name="m.tflite", env=None):
    out = os.path.join(d, "out")
    os.makedirs(out)
    p = ctx.entry("export.py", *_mobile_export_args(ctx, ckpt or models(ctx)["abpn_M2C8_x2"], fmt,
                                                     os.path.join(out, name), *extra), env=env)
    held, why = refused(p, mention=mention)
    if held and os.listdir(out):
        return False, f"refused but left {os.listdir(out)} in the output folder"
    return held, why


@case("mobile_files", 20, "export_tflite_without_tensorflow")
def _(ctx, d):
    env = _env_with_path(ctx, _blocked_module(d, "tensorflow"))
    return _export_refusal(ctx, d, "TFLITE", (), ("requirements-mobile.txt",), env=env)


@case("mobile_files", 20, "export_int8_tflite_from_float_checkpoint")
def _(ctx, d):  # the phone path: it calibrates first, so missing calibration images are refused before any work
    return _export_refusal(ctx, d, "TFLITE", ("--quant", "int8", "--calib_path", os.path.join(d, "no_calib")),
                           ("calibration folder not found",))


@case("mobile_files", 20, "export_uint8_io_float_file")
def _(ctx, d):
    return _export_refusal(ctx, d, "TFLITE", ("--io_dtype", "uint8"), ("io_dtype",))


@case("mobile_files", 20, "export_tflite_target_desktop")
def _(ctx, d):
    return _export_refusal(ctx, d, "TFLITE", ("--target", "desktop"), ("target",))


@case("mobile_files", 20, "export_float16_onnx")
def _(ctx, d):
    return _export_refusal(ctx, d, "ONNX", ("--quant", "float16"), ("float16",), name="m.onnx")


@case("mobile_files", 20, "export_ort_input_shape_3d")
def _(ctx, d):
    return _export_refusal(ctx, d, "ORT", ("--input_shape", "1,3,16"), ("input_shape",), name="m.ort")


@case("mobile_files", 20, "export_tflite_planted_symlink")
def _(ctx, d):
    mobile_files(ctx)  # skips without TensorFlow
    out = os.path.join(d, "out")
    args = _mobile_export_args(ctx, models(ctx)["abpn_M2C8_x2"], "TFLITE", os.path.join(out, "m.tflite"))
    return _symlink_case(ctx, d, "export.py", args, out, "m.tflite", (".tflite", ""))


@case("mobile_files", 20, "export_tflite_file_name_is_pre_trained")
def _(ctx, d):
    mobile_files(ctx)
    ckpt = os.path.join(d, "m.ckpt")
    shutil.copyfile(models(ctx)["abpn_M2C8_x2"], ckpt)
    digest = sha(ckpt)
    p = ctx.entry("export.py", *_mobile_export_args(ctx, ckpt, "TFLITE", ckpt))
    return _same_file_verdict(p, ckpt, digest)


def _damaged_copy(d, src, name, cut=None, data=None):
    path = os.path.join(d, name)
    if data is None:
        with open(src, "rb") as fh:
            data = fh.read()
        data = data[:cut] if cut is not None else data
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _infer_refusal(ctx, d, model_file, mention, env=None):
    img = write_images(os.path.join(d, "in"), 1, 24, seed=60)[0]
    out = os.path.join(d, "out")
    p = ctx.entry("infer.py", "--file_name", model_file, "--input_path", img, "--output_path", out, env=env)
    held, why = refused(p, mention=mention)
    if held and os.path.isdir(out) and os.listdir(out):
        return False, f"refused but wrote {os.listdir(out)}"
    return held, why


@case("mobile_files", 20, "infer_empty_tflite")
def _(ctx, d):
    mobile_files(ctx)
    return _infer_refusal(ctx, d, _damaged_copy(d, None, "e.tflite", data=b""), ("e.tflite",))


@case("mobile_files", 20, "infer_truncated_tflite")
def _(ctx, d):
    src = mobile_files(ctx)["int8_tflite"]
    return _infer_refusal(ctx, d, _damaged_copy(d, src, "cut.tflite", cut=os.path.getsize(src) // 2), ("cut.tflite",))


@case("mobile_files", 20, "infer_tflite_named_onnx")
def _(ctx, d):
    src = mobile_files(ctx)["float_tflite"]
    return _infer_refusal(ctx, d, _damaged_copy(d, src, "m.onnx"), ("m.onnx", "rename"))


@case("mobile_files", 20, "eval_truncated_ort")
def _(ctx, d):
    src = mobile_files(ctx)["ort"]
    cut = _damaged_copy(d, src, "cut.ort", cut=os.path.getsize(src) // 2)
    return refused(ctx.entry("eval.py", *_file_eval_args(ctx, d, cut)), mention=("cut.ort",))


_EDIT_TFLITE_META_CODE = r"""
import json, sys
sys.path.insert(0, ".")
from src.runtime.metadata import attach_tflite_metadata, read_tflite_metadata
src, dst, key, value = sys.argv[1:5]
meta = read_tflite_metadata(src)
meta[key] = value
with open(dst, "wb") as fh:
    fh.write(attach_tflite_metadata(open(src, "rb").read(), meta))
print("JSON:" + json.dumps(meta))
"""


@case("mobile_files", 20, "infer_tflite_metadata_scale_lies")
def _(ctx, d):
    """The file upscales x2, its sr_metadata says x3: refused (never run as x3 with wrong tiles)."""
    lying = os.path.join(d, "lie.tflite")
    ctx.py_json(_EDIT_TFLITE_META_CODE, mobile_files(ctx)["int8_tflite"], lying, "sr.scale", "3")
    return _infer_refusal(ctx, d, lying, ("metadata",))


@case("mobile_files", 20, "eval_tflite_scale_option_mismatch")
def _(ctx, d):
    """--scale 3 with an x2 file: one line (LiteRT's XNNPACK INFO line on opening it made it two)."""
    p = ctx.entry("eval.py", *_file_eval_args(ctx, d, mobile_files(ctx)["int8_tflite"], "--scale", "3"))
    return refused(p, mention=("scale",))


@case("mobile_files", 20, "eval_tflite_with_quant_method")
def _(ctx, d):
    p = ctx.entry("eval.py", *_file_eval_args(ctx, d, mobile_files(ctx)["int8_tflite"], "--quant_method", "dbdc"))
    return refused(p, mention=("quant_method",))


@case("mobile_files", 20, "eval_pre_trained_is_a_folder_named_tflite")
def _(ctx, d):
    folder = os.path.join(d, "m.tflite")
    os.makedirs(folder)
    return refused(ctx.entry("eval.py", *_file_eval_args(ctx, d, folder)), mention=("folder",))


@case("mobile_files", 20, "infer_tflite_without_litert")
def _(ctx, d):
    src = mobile_files(ctx)["float_tflite"]
    env = _env_with_path(ctx, _blocked_module(d, "ai_edge_litert"))
    return _infer_refusal(ctx, d, src, ("ai-edge-litert",), env=env)


# ========================================================================================
# issue 26: the recent features (kinds 1-8 of that issue)
# ========================================================================================

@case("recent", 26, "eval_calibrated_ckpt_asked_for_other_bits")
def _(ctx, d):
    """Kind 1: a W8A8 checkpoint with --w_bit 4 --a_bit 4 was reported as W4A4 (its own W8A8 result)."""
    ckpt = ctx.fixture("calibrated", _calibrated)
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=ckpt, variant="M2C8", scale=2,
                                        extra=("--quant_method", "dbdc", "--w_bit", "4", "--a_bit", "4")))
    return refused(p, mention=("calibrated",))


@case("recent", 26, "eval_calibrated_ckpt_save_quant_ckpt")
def _(ctx, d):
    """Kind 1: --save_quant_ckpt with an already calibrated checkpoint wrote nothing, silently."""
    ckpt = ctx.fixture("calibrated", _calibrated)
    target = os.path.join(d, "again.ckpt")
    p = ctx.entry("eval.py", *eval_args(ctx, d, ckpt=ckpt, variant="M2C8", scale=2,
                                        extra=("--quant_method", "minmax", "--save_quant_ckpt", target)))
    held, why = refused(p, mention=("save_quant_ckpt",))
    return (False, "refused but wrote again.ckpt") if held and os.path.exists(target) else (held, why)


def _sweep_line(ctx, d, ckpt, data):
    calib = os.path.dirname(write_images(os.path.join(d, "calib"), 2, 200, seed=46)[0])
    p = ctx.entry("scripts/ptq_sweep.py", "--methods", "minmax", "--bits", "8", "--reuse", "True", "--model",
                  "abpn", "--variant", "M2C8", "--scale", "2", "--pre_trained", ckpt, "--data_path", data,
                  "--eval_datasets", "S", "--calib_path", calib, "--calib_num", "2", "--cache_dir",
                  os.path.join(d, "cache"), "--output_path", os.path.join(d, "sweep"))
    lines = [line for line in p.stdout.splitlines() if line.startswith("W8A8 minmax")]
    return p, (lines[0] if lines else "")


@case("recent", 26, "ptq_sweep_reuse_with_another_checkpoint")
def _(ctx, d):
    """Kind 1: --reuse True took every row of an earlier sweep of another --pre_trained."""
    data = eval_data(ctx)
    p, first = _sweep_line(ctx, d, models(ctx)["abpn_M2C8_x2"], data)
    if ok_exit(p) or not first:
        return False, "first sweep: " + (ok_exit(p) or "no W8A8 row")
    other = ctx.py_json(_BIG_WEIGHTS_CODE, models(ctx)["abpn_M2C8_x2"], os.path.join(d, "other.ckpt"))
    p, second = _sweep_line(ctx, d, other, data)
    if ok_exit(p):
        return either(refused(p), (False, ok_exit(p)))
    if "reused" in second:
        return False, f"took the earlier checkpoint's row: {second}"
    return True, f"measured again: {second}"


@case("recent", 26, "ptq_sweep_empty_methods")
def _(ctx, d):
    """Kind 8: --methods '' ended in a KeyError traceback."""
    return refused(ctx.entry("scripts/ptq_sweep.py", "--methods", ""), mention=("methods",))


@case("recent", 26, "ptq_sweep_help_lists_its_options")
def _(ctx, d):
    """Kind 8: ptq_sweep --help did not list its own --methods/--bits/--reuse."""
    p = ctx.entry("scripts/ptq_sweep.py", "--help")
    missing = [f for f in ("--methods", "--bits", "--reuse") if f not in p.stdout]
    return (False, f"--help lacks {missing}") if ok_exit(p) or missing else (True, "--help lists its options")


@case("recent", 26, "eval_fp_scope_everything")
def _(ctx, d):
    """Kind 8: --fp_scope '*' said 'min() arg is an empty sequence' / 'matches no layer'."""
    p = ctx.entry("eval.py", *tiny_eval_args(ctx, d, "--quant_method", "minmax", "--fp_scope", "*",
                                             "--calib_path", os.path.dirname(write_images(
                                                 os.path.join(d, "calib"), 2, 200, seed=47)[0])))
    return refused(p, mention=("fp_scope", "floating point"))


@case("recent", 26, "eval_output_folder_name_too_long")
def _(ctx, d):
    """Kind 8: a 300-character folder name failed on the progress bar's line."""
    args = tiny_eval_args(ctx, d)
    args[args.index("--output_path") + 1] = os.path.join(d, "o" * 300)
    args[args.index("--result_file") + 1] = os.path.join(d, "o" * 300, "r.json")
    return refused(ctx.entry("eval.py", *args, "--save_sr", "True"), mention=("bytes long",),
                   mention_any=("output_path", "result_file"))


@case("recent", 26, "yaml_alias_bomb")
def _(ctx, d):
    """Kind 2: 506 bytes of nested aliases took more than 6 GiB."""
    levels = ["  a: &a [8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"] + [  # every alias inside bit_table, a key the config has
        f"  {chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8)]
    path = os.path.join(d, "bomb.yaml")
    with open(path, "w") as fh:
        fh.write("_base_: " + os.path.join(ctx.root, "DIV2K_config.yaml") + "\n" + "bit_table:\n" + "\n".join(levels) + "\n")
    p = ctx.entry("eval.py", "--config_path", path)
    held, why = refused(p, mention=("alias",))
    if held and len(p.stderr) > 2000:
        return False, f"refused in a {len(p.stderr)}-character 'line'"
    return held, why


_HUGE_WINDOW_ONNX = f"""
import json, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from onnx_files import save_huge_window_onnx
print("JSON:" + json.dumps(save_huge_window_onnx(sys.argv[1])))
"""


@case("recent", 26, "infer_onnx_with_a_40000_pixel_window")
def _(ctx, d):
    """Kind 2: a 40x50 image padded to a declared 40000x40000 window took 6 GiB."""
    model = ctx.py_json(_HUGE_WINDOW_ONNX, os.path.join(d, "huge.onnx"))
    return _infer_refusal(ctx, d, model, ("window",))


@case("recent", 26, "train_into_a_folder_a_live_run_holds")
def _(ctx, d):
    """Kind 3: two runs into one --ckpt_dir both exited 0 with interleaved rows."""
    folder = os.path.join(d, "ck")
    os.makedirs(folder)
    with open(os.path.join(folder, ".run.lock"), "w") as fh:  # held by this (live) sweep process
        json.dump({"pid": os.getpid(), "host": os.uname().nodename}, fh)
    p = ctx.entry("train.py", *train_args(ctx, d))
    held, why = refused(p, mention=("in use",))
    left = sorted(set(os.listdir(folder)) - {".run.lock"})
    return (False, f"refused but wrote {left}") if held and left else (held, why)


_BIG_WEIGHTS_CODE = r"""
import json, sys
import numpy as np
import mindspore as ms
raw = ms.load_checkpoint(sys.argv[1])
meta = {k: v for k, v in raw.items() if not hasattr(v, "asnumpy")}
params = [{"name": k, "data": ms.Tensor(v.asnumpy() * (1e4 if k.endswith("weight") else 1.0))}
          for k, v in raw.items() if hasattr(v, "asnumpy")]
ms.save_checkpoint(params, sys.argv[2], append_dict=meta)
print("JSON:" + json.dumps(sys.argv[2]))
"""


@case("recent", 26, "export_onnx_failing_its_check_keeps_the_older_file")
def _(ctx, d):
    """Kind 4: an ONNX export that failed its check had already replaced the older file."""
    out = os.path.join(d, "m.onnx")
    args = ["--model", "abpn", "--variant", "M2C8", "--scale", "2", "--file_format", "ONNX", "--input_shape",
            "1,3,16,24", "--export_file", out]
    p = ctx.entry("export.py", "--pre_trained", models(ctx)["abpn_M2C8_x2"], *args)
    if ok_exit(p) or not os.path.isfile(out):
        return False, "first export: " + (ok_exit(p) or "no file")
    before = sha(out)
    big = ctx.py_json(_BIG_WEIGHTS_CODE, models(ctx)["abpn_M2C8_x2"], os.path.join(d, "big.ckpt"))
    p = ctx.entry("export.py", "--pre_trained", big, *args)
    if p.rc == 0:
        return True, "answered: the large-weight model exported and passed its check"
    held, why = refused(p)
    if held and sha(out) != before:
        return False, "refused, but the older m.onnx was replaced first"
    return held, why


@case("recent", 26, "export_mobile_window_smaller_than_receptive_field")
def _(ctx, d):
    """Kind 5: --input_shape 1,3,1,1 exported a file whose PSNR was 6 dB off, with exit 0."""
    return _export_refusal(ctx, d, "ORT", ("--input_shape", "1,3,1,1"), ("receptive radius",), name="m.ort")


@case("recent", 26, "export_batch_of_four")
def _(ctx, d):
    """Kind 5: a batch-4 file that eval.py and infer.py then refuse."""
    return _export_refusal(ctx, d, "ONNX", ("--input_shape", "4,3,16,24"), ("batch",), name="m.onnx")


@case("recent", 26, "train_path_with_a_symlinked_sub_folder")
def _(ctx, d):
    """Kind 6: images behind a symlinked sub-folder of --train_path were skipped."""
    train = os.path.join(d, "train")
    write_images(train, 1, 48, seed=48)
    write_images(os.path.join(d, "elsewhere"), 3, 48, seed=49)
    os.symlink(os.path.join(d, "elsewhere"), os.path.join(train, "linked"))
    args = train_args(ctx, d, steps=1, val_every=1)
    args[args.index("--train_path") + 1] = train
    p = ctx.entry("train.py", *args)
    bad = ok_exit(p)
    if bad:
        return False, bad
    return (True, "read all 4 images") if re.search(r"\b4 images\b", p.stdout) else \
        (False, "did not train on the 4 images: " + next((l for l in p.stdout.splitlines() if "image" in l), "?"))


@case("recent", 26, "infer_with_quantization_options")
def _(ctx, d):
    """Kind 6: infer.py accepted and ignored quantization options."""
    img = write_images(os.path.join(d, "in"), 1, 24, seed=61)[0]
    p = ctx.entry("infer.py", *infer_args(ctx, d, img, "--w_bit", "4"))
    named = next((line for line in p.stdout.splitlines() if "--w_bit" in line and "no effect" in line), None)
    if not ok_exit(p) and named:
        return True, "named: " + named[:200]
    return either(refused(p, mention=("w_bit",)), (False, "exit 0 without naming --w_bit"))


@case("recent", 26, "eval_tflite_radius_edited_to_zero")
def _(ctx, d):
    """Kind 7: a .tflite whose sr.receptive_radius was edited to 0 gave seams of 42 levels, silently."""
    edited = os.path.join(d, "r0.tflite")
    ctx.py_json(_EDIT_TFLITE_META_CODE, mobile_files(ctx)["float_tflite"], edited, "sr.receptive_radius", "0")
    return _infer_refusal(ctx, d, edited, ("receptive radius",))


_SAME_SIZE_ONNX = r"""
import json, sys
import onnx
x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 32, 32])
y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 32, 32])
m = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                           opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
onnx.save(m, sys.argv[1])
print("JSON:" + json.dumps(sys.argv[1]))
"""


@case("recent", 26, "eval_a_file_that_is_not_an_upscaler")
def _(ctx, d):
    """Kind 7: a 1x32x32x3 -> 1x32x32x3 file was evaluated as 'sesr-M5 x1' with exit 0."""
    model = ctx.py_json(_SAME_SIZE_ONNX, os.path.join(d, "same.onnx"))
    return refused(ctx.entry("eval.py", *_file_eval_args(ctx, d, model)), mention=("upscaler",))


# ----------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------

def select(only):
    if not only:
        return list(CASES)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [c for c in CASES if c.kind in wanted or c.name in wanted or f"{c.kind}/{c.name}" in wanted]
    unknown = [w for w in wanted if not any(w in (c.kind, c.name, f"{c.kind}/{c.name}") for c in CASES)]
    if unknown:
        raise SystemExit(f"error: --only: unknown kind or case {unknown}; kinds: {', '.join(KINDS)}")
    return chosen


def run_case(ctx, c):
    """Run one case; returns its result dict (status HELD, FAILED or SKIPPED)."""
    d = tempfile.mkdtemp(prefix="case-", dir=ctx.work)  # neutral name: judges search output for words
    ctx.begin_case()
    start = time.time()
    try:
        if "shared" in c.needs and not ctx.shared:
            raise Skip("SR_SHARED is not set")
        held, reason = c.fn(ctx, d)
        status = "HELD" if held else "FAILED"
    except Skip as exc:
        status, reason = "SKIPPED", str(exc)
    except Exception as exc:  # pylint: disable=broad-except  (a broken setup is a failure of the case)
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        status, reason = "FAILED", f"case setup failed: {type(exc).__name__}: {first}"
    return {"kind": c.kind, "item": c.item, "name": c.name, "status": status, "reason": reason,
            "seconds": round(time.time() - start, 1), "commands": ctx.commands()}


def summarize(results):
    table = collections.OrderedDict()
    for kind in KINDS:
        rows = [r for r in results if r["kind"] == kind and r["status"] != "SKIPPED"]
        if rows or any(r["kind"] == kind for r in results):
            table[kind] = {"tried": len(rows), "held": sum(r["status"] == "HELD" for r in rows),
                           "skipped": sum(r["kind"] == kind and r["status"] == "SKIPPED" for r in results)}
    return table


def _area(kind):
    """The kind's description without its item numbers (those are the catalogue's bookkeeping)."""
    return re.sub(r" \([^()]*\d[^()]*\)$", "", KINDS[kind])


def reliability_table(now, before=()):
    """Markdown lines of the per-kind table: tried and held in the sweep report ``now`` (a ``--json``
    payload) and, for the kinds a ``before`` report ran, how many held there (the same cases run against
    the tree before their fixes). Counts exclude skipped cases."""
    held_before = {}
    for report in before:
        for kind, row in report["kinds"].items():
            held_before[kind] = f"{row['held']} of {row['tried']}"
    lines = ["| kind | area | tried | held | held before its fixes |", "|---|---|---|---|---|"]
    for kind, row in now["kinds"].items():
        lines.append(f"| `{kind}` | {_area(kind) if kind in KINDS else kind} | {row['tried']} | {row['held']} | "
                     f"{held_before.get(kind, '-')} |")
    skipped = sum(row["skipped"] for row in now["kinds"].values())
    lines.append(f"| **total** | | **{now['tried']}** | **{now['held']}** | |")
    lines += ["", f"Written by `python tests/bad_input_sweep.py --table {{now}}` from the full run "
                  f"`{_command_tail(now['command'])}` ({now['seconds'] / 60:.0f} min on 2 cores"
                  + (f"; {skipped} skipped" if skipped else "") + ")"
              + "".join(f" and the run `{_command_tail(r['command'])}` against the tree before those fixes"
                        for r in before) + "."]
    return lines


def _command_tail(command):
    """``command`` from the script's name on (without the Python executable's path)."""
    for folder in ("tests/", "scripts/"):
        if folder in command:
            return "python " + command[command.index(folder):]
    return command


def write_table(now_path, before_paths, md_path):
    """Write :func:`reliability_table` of the reports into the ``sweep`` block of ``md_path``."""
    sys.path.insert(0, PROJECT_ROOT)
    from src.utils.readme_block import write_block  # pylint: disable=import-outside-toplevel
    with open(now_path, encoding="utf-8") as fh:
        now = json.load(fh)
    before = []
    for path in before_paths:
        with open(path, encoding="utf-8") as fh:
            before.append(json.load(fh))
    lines = reliability_table(now, before)
    lines[-1] = lines[-1].replace("{now}", " ".join([now_path] + [f"--before {p}" for p in before_paths])
                                  + f" --md {md_path}")
    if not write_block(md_path, "sweep", lines):
        print(f"error: {md_path} has no <!-- sweep:begin --> / <!-- sweep:end --> block", file=sys.stderr)
        return 2
    print(f"wrote the sweep table into {md_path}")
    return 0


def print_report(results, table, out=sys.stdout):
    print(f"\n{'kind':<16}{'tried':>6}{'held':>6}  area", file=out)
    for kind, row in table.items():
        extra = f" ({row['skipped']} skipped)" if row["skipped"] else ""
        print(f"{kind:<16}{row['tried']:>6}{row['held']:>6}  {KINDS[kind]}{extra}", file=out)
    tried = sum(r["tried"] for r in table.values())
    held = sum(r["held"] for r in table.values())
    skipped = sum(r["skipped"] for r in table.values())
    print(f"\ntotal: {held} held of {tried}" + (f" ({skipped} skipped)" if skipped else ""), file=out)
    failed = [r for r in results if r["status"] == "FAILED"]
    if failed:
        print("\nFAILED:", file=out)
        for r in failed:
            print(f"  {r['kind']}/{r['name']} (item {r['item']}): {r['reason']}", file=out)
    skipped_rows = [r for r in results if r["status"] == "SKIPPED"]
    if skipped_rows:
        print("\nSKIPPED:", file=out)
        for r in skipped_rows:
            print(f"  {r['kind']}/{r['name']}: {r['reason']}", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=PROJECT_ROOT, help="project checkout to test (default: this one)")
    parser.add_argument("--only", default="", help="comma-separated kinds or case names")
    parser.add_argument("--json", default="", help="write every result here")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (each child is capped by --mem_gb)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per child process")
    parser.add_argument("--mem_gb", type=float, default=6.0, help="address-space limit per child (GiB)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--table", default="", metavar="REPORT.json",
                        help="run nothing: write the per-kind table of this --json report into --md")
    parser.add_argument("--before", action="append", default=[], metavar="REPORT.json",
                        help="with --table: a report of some kinds run against the tree before their fixes")
    parser.add_argument("--md", default=os.path.join(PROJECT_ROOT, "docs", "reliability.md"),
                        help="with --table: the Markdown file holding the sweep block")
    args = parser.parse_args(argv)
    if args.table:
        return write_table(args.table, args.before, args.md)
    cases = select(args.only)
    if args.list:
        for c in cases:
            print(f"{c.kind}/{c.name} (item {c.item})")
        print(f"{len(cases)} cases")
        return 0
    root = os.path.abspath(args.root)
    for script in ("eval.py", "infer.py", "export.py", "train.py", CONVERT):
        if not os.path.isfile(os.path.join(root, script)):
            print(f"error: --root {root} has no {script}", file=sys.stderr)
            return 2
    shared = os.environ.get("SR_SHARED", "")
    shared = os.path.abspath(shared) if shared and os.path.isdir(shared) else None
    work = tempfile.mkdtemp(prefix="bad_input_sweep-")
    ctx = Ctx(root, work, shared, args.timeout, args.mem_gb)
    print(f"bad-input sweep: {len(cases)} cases against {root} with {sys.executable}"
          f" (shared data: {shared or 'not set, those cases are skipped'}; work folder {work})", flush=True)
    start = time.time()
    results = [None] * len(cases)
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {pool.submit(run_case, ctx, c): i for i, c in enumerate(cases)}
        for fut in concurrent.futures.as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            print(f"[{sum(x is not None for x in results):>3}/{len(cases)}] {r['status']:<7} {r['kind']}/{r['name']}"
                  f" ({r['seconds']:.0f} s): {r['reason'][:200]}", flush=True)
    table = summarize(results)
    print_report(results, table)
    elapsed = time.time() - start
    print(f"\n{elapsed / 60:.1f} min; command: {' '.join(_quote(a) for a in [sys.executable] + sys.argv)}")
    if args.json:
        payload = {"root": root, "python": sys.executable, "shared": shared, "seconds": round(elapsed, 1),
                   "command": " ".join(_quote(a) for a in [sys.executable] + sys.argv),
                   "held": sum(r["held"] for r in table.values()), "tried": sum(r["tried"] for r in table.values()),
                   "kinds": table, "cases": results}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
