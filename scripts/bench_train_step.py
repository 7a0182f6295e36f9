"""Step time of one ABPN-M4C28 x3 training step: this project (MindSpore graph mode) vs. PyTorch eager.

    python scripts/bench_train_step.py                          # both, 5 warm-up + 30 timed steps
    python scripts/bench_train_step.py --steps 100 --json outputs/bench_train_step.json
    python scripts/bench_train_step.py --only mindspore         # project side only (torch not needed)

What one step is, on both sides: batch 16 of random 64x64 RGB LR patches (numpy,
seeded; the same arrays for both frameworks) -> ABPN-M4C28 x3 (192x192 output,
clipped to [0, 1]) -> L1 loss against random 192x192 HR patches -> backward ->
Adam (lr 1e-3, betas (0.9, 0.999)).

- Project: exactly what src/engine/trainer.py runs. ``import model_utils`` first
  (ONEDNN_MAX_CPU_ISA before MindSpore loads), ``init_context("CPU", "graph")``,
  ``create_model("abpn", "M4C28", 3, form="train")``, ``SRLoss``, ``nn.Adam``,
  ``TrainStep(loss_cell, optimizer)`` (including its finite-value guard), called as
  ``step(lr, hr, freeze=0)``. MindSpore's thread settings are left at their defaults,
  as in training.
- PyTorch: the same network written in torch (conv 3->28, 4 x conv 28->28, conv
  28->27, conv 27->27, ReLU after every conv but the last, plus the anchor, pixel
  shuffle, clamp to [0, 1]), ``torch.optim.Adam``, ``F.l1_loss``, eager mode (no
  torch.compile), ``torch.set_num_threads(--threads)`` (default: os.cpu_count()).
  The project uses DCR channel order (tile anchor + DepthToSpace); torch uses the
  CRD counterpart (repeat_interleave anchor + pixel_shuffle): the same function up
  to a fixed permutation of conv_up/conv_last channels, and the same cost.

Timing: ``--warmup`` steps (the first one includes MindSpore's graph compile and is
reported separately), then ``--steps`` timed steps, each synchronised (``.asnumpy()``
on the MindSpore loss, ``.item()`` on the torch loss). Prints median and mean
ms/step, it/s (from the median), the first-step loss of each side (same order of
magnitude expected; not equal, the initialisations differ) and the ratio
MindSpore/PyTorch of the medians against the target (<= 1.5x).

The MindSpore side runs first; torch is imported only after it has finished, in
the same process (``--torch_process same``, the default; torch's bundled oneDNN is
separate from MindSpore's) or, with ``--torch_process sub`` or when importing torch
here fails, in a fresh subprocess of this script (``--only torch``, result passed
back as JSON). Either way the torch side gets the user's original
ONEDNN_MAX_CPU_ISA (as it was before model_utils capped it at AVX2 for MindSpore):
torch's oneDNN reads the same variable, and the cap would slow torch down on
AVX-512 machines and flatter the ratio.

torch is needed only for this benchmark and is not in requirements.txt; install it
with ``pip install torch==2.13.0`` (exit code 2 with a one-line message if missing).
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import _bootstrap  # noqa: E402  pylint: disable=wrong-import-position  (the project root on sys.path)

# Read before model_utils set its default: the torch side runs with the user's own value.
_ORIGINAL_ISA = _bootstrap.ORIGINAL_ONEDNN_ISA

MODEL, VARIANT, SCALE, NUM_BLOCK, NUM_FEAT, N_COLORS = "abpn", "M4C28", 3, 4, 28, 3
LR_RATE, BETAS = 1e-3, (0.9, 0.999)
TARGET_RATIO = 1.5
JSON_MARKER = "BENCH_TRAIN_STEP_JSON "
TORCH_FIX = "pip install torch==2.13.0"


def make_batch(batch_size, patch_size, seed):
    """Random LR (B, 3, p, p) and HR (B, 3, 3p, 3p) float32 in [0, 1]."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    hr_size = patch_size * SCALE
    lr = rng.random((batch_size, N_COLORS, patch_size, patch_size), dtype=np.float32)
    hr = rng.random((batch_size, N_COLORS, hr_size, hr_size), dtype=np.float32)
    return lr, hr


def time_steps(step, warmup, steps):
    """Run ``step()`` (synchronised, returns the loss) warmup + steps times; timings in ms."""
    warm_ms, losses = [], []
    for _ in range(max(1, warmup)):
        start = time.perf_counter()
        losses.append(step())
        warm_ms.append((time.perf_counter() - start) * 1000)
    timed = []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        timed.append((time.perf_counter() - start) * 1000)
    median = statistics.median(timed) if timed else float("nan")
    return {
        "first_step_ms": warm_ms[0],
        "warmup_ms": warm_ms,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "step_ms": timed,
        "median_ms": median,
        "mean_ms": statistics.fmean(timed) if timed else float("nan"),
        "it_per_s": 1000.0 / median if timed else float("nan"),
    }


def bench_mindspore(args, lr, hr):
    if "mindspore" in sys.modules:
        raise RuntimeError("mindspore was imported before model_utils: the oneDNN ISA default would not apply")
    import model_utils  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore import Tensor, nn  # pylint: disable=import-outside-toplevel
    from src.engine.context import init_context  # pylint: disable=import-outside-toplevel
    from src.engine.losses import SRLoss  # pylint: disable=import-outside-toplevel
    from src.engine.train_step import TrainStep  # pylint: disable=import-outside-toplevel
    from src.models.registry import create_model  # pylint: disable=import-outside-toplevel

    init_context("CPU", "graph")
    ms.set_seed(args.seed)
    net = create_model(MODEL, VARIANT, SCALE, form="train")
    opt = nn.Adam(net.trainable_params(), learning_rate=LR_RATE, beta1=BETAS[0], beta2=BETAS[1])
    step_cell = TrainStep(SRLoss(net), opt)
    step_cell.set_train(True)
    lr_t, hr_t, freeze = Tensor(lr), Tensor(hr), Tensor(0.0, ms.float32)

    def step():
        loss, _finite = step_cell(lr_t, hr_t, freeze)
        return float(loss.asnumpy())

    result = time_steps(step, args.warmup, args.steps)
    result.update(framework=f"MindSpore {ms.__version__} (graph)",
                  onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"), threads="default")
    return result


def build_torch_abpn(torch):
    """ABPN as in src/models/abpn.py, in torch (CRD pixel shuffle + matching anchor)."""
    tnn, fn = torch.nn, torch.nn.functional

    def conv(cin, cout):
        return tnn.Conv2d(cin, cout, 3, padding=1, bias=True)

    class TorchABPN(tnn.Module):
        def __init__(self, scale=SCALE, num_block=NUM_BLOCK, num_feat=NUM_FEAT, n_colors=N_COLORS):
            super().__init__()
            self.scale = scale
            out_ch = n_colors * scale * scale
            self.conv_first = conv(n_colors, num_feat)
            self.body = tnn.ModuleList([conv(num_feat, num_feat) for _ in range(num_block)])
            self.conv_up = conv(num_feat, out_ch)
            self.conv_last = conv(out_ch, out_ch)

        def forward(self, x):
            y = fn.relu(self.conv_first(x))
            for layer in self.body:
                y = fn.relu(layer(y))
            y = self.conv_last(fn.relu(self.conv_up(y)))
            anchor = x.repeat_interleave(self.scale * self.scale, dim=1)  # channel c*s^2 + k = x[c]
            return torch.clamp(fn.pixel_shuffle(y + anchor, self.scale), 0.0, 1.0)

    return TorchABPN()


def bench_torch(args, lr, hr):
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_torch_abpn(torch)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR_RATE, betas=BETAS)
    lr_t, hr_t = torch.from_numpy(lr), torch.from_numpy(hr)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(lr_t), hr_t)
        loss.backward()
        opt.step()
        return loss.item()

    result = time_steps(step, args.warmup, args.steps)
    result.update(framework=f"PyTorch {torch.__version__} (eager)",
                  onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"), threads=torch.get_num_threads())
    return result


def torch_subprocess(args, isa=None):
    """The torch side in a fresh interpreter (``--only torch``) with the user's original environment
    (or with ``ONEDNN_MAX_CPU_ISA=isa``)."""
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa is not None:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    elif _ORIGINAL_ISA is not None:
        env["ONEDNN_MAX_CPU_ISA"] = _ORIGINAL_ISA
    cmd = [sys.executable, os.path.abspath(__file__), "--only", "torch", "--emit_json",
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch_size", str(args.batch_size),
           "--patch_size", str(args.patch_size), "--threads", str(args.threads), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(JSON_MARKER):
            return json.loads(line[len(JSON_MARKER):])
    raise RuntimeError(f"torch subprocess failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")


def torch_same_process(args, lr, hr):
    """The torch side in this process, after MindSpore (subprocess if torch cannot be imported here)."""
    # oneDNN reads the variable when first used: restore the user's value before torch runs a conv.
    if _ORIGINAL_ISA is None:
        os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
    else:
        os.environ["ONEDNN_MAX_CPU_ISA"] = _ORIGINAL_ISA
    try:
        import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except Exception as exc:  # pylint: disable=broad-except
        print(f"note: importing torch after MindSpore failed ({exc!r}); running the torch side in a subprocess",
              file=sys.stderr)
        return torch_subprocess(args)
    return bench_torch(args, lr, hr)


def describe(name, res):
    warm = ", ".join(f"{t:.0f}" for t in res["warmup_ms"][1:])
    print(f"{name}: {res['framework']}, threads {res['threads']}, "
          f"ONEDNN_MAX_CPU_ISA={res['onednn_max_cpu_isa'] or '(unset)'}")
    first = "first step (includes graph compile)" if name == "mindspore" else "first step"
    print(f"  {first} {res['first_step_ms']:.0f} ms; other warm-up steps [{warm}] ms")
    print(f"  first-step loss {res['first_loss']:.5f}, last loss {res['last_loss']:.5f}")


def report(results, args):
    print()
    print(f"ABPN-{VARIANT} x{SCALE} training step: batch {args.batch_size}, LR {args.patch_size}x{args.patch_size} "
          f"-> HR {args.patch_size * SCALE}x{args.patch_size * SCALE}, L1, Adam lr {LR_RATE:g}; "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    for name, res in results.items():
        describe(name, res)
    print()
    print("| framework | median ms/step | mean ms/step | it/s |")
    print("|-----------|---------------:|-------------:|-----:|")
    for res in results.values():
        print(f"| {res['framework']} | {res['median_ms']:.1f} | {res['mean_ms']:.1f} | {res['it_per_s']:.2f} |")
    summary = {"config": {k: getattr(args, k) for k in ("steps", "warmup", "batch_size", "patch_size", "threads",
                                                        "seed", "only", "torch_process")},
               "model": f"{MODEL}-{VARIANT} x{SCALE}", "results": results, "target_ratio": TARGET_RATIO}
    if "mindspore" in results and "torch" in results:
        ratio = results["mindspore"]["median_ms"] / results["torch"]["median_ms"]
        met = ratio <= TARGET_RATIO
        print()
        print(f"ratio MindSpore/PyTorch = {ratio:.2f}x (target <= {TARGET_RATIO}x): {'met' if met else 'not met'}")
        summary.update(ratio=ratio, target_met=met)
    if "mindspore" in results and "torch_same_isa" in results:
        same = results["mindspore"]["median_ms"] / results["torch_same_isa"]["median_ms"]
        print(f"for reference, with torch's oneDNN capped like MindSpore's "
              f"(ONEDNN_MAX_CPU_ISA={results['torch_same_isa']['onednn_max_cpu_isa']}): {same:.2f}x")
        summary.update(ratio_same_isa=same)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="warm-up steps, at least 1; the first includes graph compile (default 5)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--patch_size", type=int, default=64, help="LR patch side; HR is 3x (default 64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch.set_num_threads (default os.cpu_count()); MindSpore keeps its defaults")
    parser.add_argument("--only", choices=("both", "mindspore", "torch"), default="both")
    parser.add_argument("--torch_process", choices=("same", "sub"), default="same",
                        help="torch side in this process after MindSpore (default) or in a fresh subprocess")
    parser.add_argument("--torch_same_isa", action="store_true",
                        help="also time torch (subprocess) with the oneDNN ISA cap MindSpore runs with (AVX2 here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--emit_json", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.only != "mindspore" and importlib.util.find_spec("torch") is None:
        print(f"error: PyTorch is not installed; it is needed only for this benchmark: {TORCH_FIX}", file=sys.stderr)
        return 2
    lr, hr = make_batch(args.batch_size, args.patch_size, args.seed)
    results = {}
    if args.only in ("both", "mindspore"):
        results["mindspore"] = bench_mindspore(args, lr, hr)
    if args.only == "torch":  # a child: the environment its parent gave, not the project's default
        if _ORIGINAL_ISA is None:
            os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
        else:
            os.environ["ONEDNN_MAX_CPU_ISA"] = _ORIGINAL_ISA
        results["torch"] = bench_torch(args, lr, hr)
    elif args.only == "both":
        results["torch"] = (torch_subprocess(args) if args.torch_process == "sub"
                            else torch_same_process(args, lr, hr))
    if args.torch_same_isa and "mindspore" in results and results["mindspore"]["onednn_max_cpu_isa"]:
        results["torch_same_isa"] = torch_subprocess(args, isa=results["mindspore"]["onednn_max_cpu_isa"])
        results["torch_same_isa"]["framework"] += f", ONEDNN_MAX_CPU_ISA={results['mindspore']['onednn_max_cpu_isa']}"
    if args.emit_json:
        print(JSON_MARKER + json.dumps(results["torch"]))
        return 0
    summary = report(results, args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
