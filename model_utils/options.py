"""Every configuration option, declared once.

One :class:`Option` per key carries its default, its rule (type and range or choices,
:mod:`model_utils.rules`), its help text and any old names; its :class:`Section` says which entry
scripts read it (``--help`` lists an entry script's own sections, each under its title). Everything
else is derived from this table:

- ``DIV2K_config.yaml`` (values, help strings, allowed values) is written from it
  (``python -m model_utils.options DIV2K_config.yaml``; a test checks the file is what it writes),
- :data:`RULES`, the rule each loaded value passes (:func:`model_utils.validate.validate`),
- :data:`SECTIONS` / :data:`ENTRY_SECTIONS`, the ``--help`` groups and who reads what,
- :data:`ALIASES` / :data:`RETIRED`, old option names that still work,
- ``docs/configuration.md`` (:mod:`model_utils.options_doc`),
- the typed sections ``src`` reads (``ReconConfig``, ``PaCConfig``, ...), filled by field name
  (:func:`src.utils.config_fill.fill_section`; a test checks every option of a section is a field).

The rules between options (:func:`cross_checks`) and the options that do nothing unless another holds
a value (:data:`NEEDS`) are here too, beside the options they name. An option of another entry
script's section is accepted (shared command lines in ``scripts/`` pass one option list to several
entry points) and has no effect there.
"""
import json
import sys
from dataclasses import dataclass

import yaml

from model_utils.rules import (MODEL_FAMILIES, SCALES, Bits, Bool, Choice, Float, InputShape, Int, List, Mapping,
                               ModelSpec, OrAuto, Pair, Text, fmt)

_PATH = dict(what="path")
_LR = Float(0.0, lo_open=True)


@dataclass(frozen=True)
class Option:
    """One configuration key: ``--key`` on the command line, ``key:`` in YAML, ``config.key`` in code."""
    key: str
    default: object
    rule: object
    help: str
    old_names: tuple = ()  # earlier names still accepted (a notice says the new one)


@dataclass(frozen=True)
class Section:
    """A group of options: its ``--help`` title, the entry scripts (train, eval, export, infer) that read it."""
    name: str
    title: str
    entries: tuple
    options: tuple


DECLARED = (
    Section('device', 'device', ('train', 'eval', 'export', 'infer'), (
        Option('enable_modelarts', False, Bool(),
               'run on Huawei ModelArts: before the run copy --data_url to --data_path and --checkpoint_url to '
               "--pre_trained, after it copy --output_path (and train.py's --ckpt_dir) to --train_url, with moxing "
               '(ModelArts only)'),
        Option('data_url', '', Text(), 'ModelArts: OBS folder of the data, copied to --data_path before the run'),
        Option('checkpoint_url', '', Text(),
               'ModelArts: OBS path of the checkpoint, copied to --pre_trained before the run'),
        Option('train_url', '', Text(), 'ModelArts: OBS folder the outputs are copied to after the run'),
        Option('device_target', 'CPU', Choice(["CPU", "GPU", "Ascend"]), 'CPU, GPU or Ascend'),
        Option('device_id', 0, Int(0, 4095), 'device index on the host'),
        Option('mode', 'graph', Choice(["graph", "pynative"]), 'graph (compiled, default) or pynative'),
    )),
    Section('model', 'model', ('train', 'eval', 'export', 'infer'), (
        Option('model', 'auto', Choice(("auto",) + MODEL_FAMILIES),
               'model family: abpn, edsr, sesr, etds, ecbsr; auto = the shipped default for the scale (SESR-M5 '
               'x2/x4, ABPN-M4C28 x3)'),
        Option('variant', 'auto', Text(required=True, what="variant name ('auto' = the default)"),
               'family variant, e.g. M4C28 (abpn), baseline/full (edsr), M5 (sesr), M4C32 (etds), M4C16 (ecbsr); '
               'auto = the default'),
        Option('scale', 2, Choice(SCALES, Int()), 'upscaling factor: 2, 3 or 4'),
        Option('default_models', {2: 'sesr/M5', 3: 'abpn/M4C28', 4: 'sesr/M5'},
               Mapping(Choice(SCALES, Int()), ModelSpec()),
               'YAML only: {scale: model/variant} that --model auto picks (the shipped default of each scale)'),
        Option('default_variants',
               {'abpn': 'M4C28', 'edsr': 'baseline', 'sesr': 'M5', 'etds': 'M4C32', 'ecbsr': 'M4C16'},
               Mapping(Choice(MODEL_FAMILIES), Text(required=True)),
               'YAML only: {model: variant} that --variant auto picks for a chosen --model'),
        Option('pre_trained', '', Text(**_PATH),
               'MindSpore .ckpt (eval.py: or an exported .onnx, .ort, .mindir or .tflite file) to evaluate; empty = '
               'the shipped pretrained/<model>_<variant>_x<scale>.ckpt'),
        Option('pretrained_dir', 'pretrained', Text(required=True, **_PATH), 'folder of shipped checkpoints'),
        Option('n_colors', 0, Choice([0, 1, 3], Int()),
               'image channels: 3 (RGB) or 1 (Y); 0 = family default (sesr 1, others 3)'),
        Option('act', 'prelu', Choice(["prelu", "relu"]),
               'sesr activation: prelu or relu (relu for fully quantized deployment)'),
        Option('linear_block_type', 'collapsed', Choice(["expanded", "collapsed", "collapsed_adder"]),
               'sesr training form: expanded, collapsed or collapsed_adder (AdderSESR)'),
        Option('feature_size', 0, Int(0, 4096),
               'sesr linear-block expansion width; 0 = variant default (256 for M3-M7, 64 for M11/XL)'),
        Option('adder_eta', 0.2, Float(0.0, lo_open=True), 'AdderSESR adaptive learning-rate factor eta'),
    )),
    Section('eval_data', 'evaluation data', ('eval', 'export'), (
        Option('data_path', './data', Text(required=True, **_PATH),
               'root holding DIV2K_valid_HR/ (official DIV2K layout) and benchmark/<Set>/HR/'),
        Option('eval_datasets', ['DIV2K'], List(Text(required=True), required=True),
               'comma-separated: DIV2K, Set5, Set14, B100, Urban100, Manga109, any benchmark/<name>, Samples'),
        Option('sample_fallback', True, Bool(),
               'with the shipped defaults, evaluate the built-in sample set when DIV2K is absent'),
    )),
    Section('cache', 'LR cache', ('train', 'eval', 'export'), (
        Option('cache_dir', './cache', Text(**_PATH), 'where LR images made by MATLAB-bicubic are cached'),
    )),
    Section('protocol', 'evaluation protocol', ('train', 'eval', 'export'), (
        Option('gt_mod', 12, Int(1, 1024), 'crop HR to a multiple of this (12 = published GTmod12 protocol)'),
        Option('metric_channel', 'y', Choice(["y", "rgb"]), 'y (BT.601 luma, published protocol) or rgb'),
        Option('shave', -1, Int(-1, 1024), 'border pixels excluded from metrics; -1 = scale'),
    )),
    Section('inference', 'inference (tiling, self-ensemble)', ('eval', 'export', 'infer'), (
        Option('self_ensemble', False, Bool(), 'average the 8 flips/transposes (x8 geometric ensemble)'),
        Option('tile_size', 0, Int(-1),
               'LR tile side for large images; 0 = automatic from max_tile_mem_gb, -1 = never tile'),
        Option('tile_overlap', -1, Int(-1),
               "LR context pixels around each tile; -1 = the model's receptive radius (exact)"),
        Option('max_tile_mem_gb', 2.0, Float(0.0, lo_open=True),
               'memory budget (GiB) of one tile (activations and float output) used to pick the automatic tile size;'
               ' a large image needs its 8-bit output plus about this much'),
        Option('pixel_range', 'auto', Choice(["auto", "1", "255"]),
               "pixel values an exported file without SR metadata (another project's .tflite/.onnx) takes: 1 ([0, "
               "1]), 255 (0..255) or auto (read from an integer input's quantization and proven on a test image, "
               'else refused)'),
    )),
    Section('train_data', 'training data', ('train',), (
        Option('train_path', './data/DIV2K_train_HR', Text(required=True, **_PATH),
               'DIV2K root / DIV2K_train_HR (official layout, LR from DIV2K_train_LR_bicubic/X<s>) or any folder of '
               'HR images (searched recursively; LR made by MATLAB bicubic and cached)'),
        Option('patch_size', 64, Int(1, 4096), 'LR patch side for training'),
        Option('batch_size', 16, Int(1, 65536), 'patches per step'),
        Option('val_data_path', './data', Text(required=True, **_PATH),
               'root of the validation sets (benchmark/<Set>/HR)'),
        Option('val_datasets', ['Set5'], List(Text(required=True)), 'comma-separated validation sets'),
        Option('num_workers', 2, Int(1, 256), 'data-loading threads of the GeneratorDataset pipeline'),
        Option('dataset_enlarge_ratio', 1, Int(1),
               'each image appears this many times per epoch (meaningful epochs on small sets)'),
        Option('channel_shuffle', False, Bool(), 'random RGB channel order augmentation (RGB models)'),
        Option('train_cache_gb', 4.0, Float(0.0),
               'keep decoded training images in memory up to this size; the rest are read per sample'),
    )),
    Section('optimisation', 'optimisation', ('train',), (
        Option('beta1', 0.9, Float(0.0, 1.0, hi_open=True), 'Adam beta1'),
        Option('beta2', 0.999, Float(0.0, 1.0, hi_open=True), 'Adam beta2'),
        Option('amsgrad', False, Bool(), 'use the AMSGrad variant of Adam'),
        Option('weight_decay', 0.0, Float(0.0), 'Adam weight decay'),
        Option('clip_grad_norm', 0.0, Float(0.0), 'clip gradients to this global L2 norm; 0 = off'),
        Option('ema_decay', 0.0, Float(0.0, 1.0, hi_open=True),
               'keep an EMA of the weights for validation and checkpoints (e.g. 0.999); 0 = off'),
        Option('amp_level', 'O0', Choice(["O0", "O1", "O2", "O3"]),
               'mixed precision O0 (float32), O1, O2, O3 on GPU/Ascend; CPU always trains in float32 (notice '
               'printed)'),
        Option('loss_scale', 'auto', Choice(["auto", "none", "static", "dynamic"]),
               'auto (dynamic with mixed precision, none in float32), none, static or dynamic'),
        Option('loss_scale_value', 65536.0, Float(0.0, lo_open=True), 'initial (dynamic) or fixed (static) loss scale'),
        Option('residual_loss_weight', 0.5, Float(0.0), 'ETDS: weight of L1(residual output, HR)'),
        Option('freeze_residual_steps', 0, Int(0),
               'ETDS: keep the residual stream frozen for this many steps (published 100000)'),
        Option('max_bad_steps', 10, Int(1),
               'stop after this many consecutive steps with non-finite loss/gradients (each is skipped)'),
    )),
    Section('schedule', 'learning-rate schedule', ('train',), (
        Option('lr', 0.001, _LR, 'peak Adam learning rate'),
        Option('min_lr', 1e-05, Float(0.0), 'final learning rate of the cosine schedule'),
        Option('warmup_steps', 0, Int(0), 'linear warm-up steps'),
        Option('total_steps', 100000, Int(1), 'training iterations'),
        Option('lr_scheduler', 'cosine', Choice(["cosine", "multistep"]),
               'cosine (lr -> min_lr) or multistep (lr x lr_gamma at each of lr_milestones); both after warmup_steps'),
        Option('lr_milestones', [], List(Int(1), increasing=True),
               'multistep: comma-separated steps where the lr is multiplied by lr_gamma'),
        Option('lr_gamma', 0.5, Float(0.0, 1.0, lo_open=True), 'multistep decay factor'),
    )),
    Section('training_run', 'training run (validation, checkpoints, logs)', ('train',), (
        Option('val_every', 2000, Int(1), 'validate and checkpoint every N steps'),
        Option('seed', 0, Int(0, 2 ** 32 - 1), 'random seed for patches and initialisation'),
        Option('ckpt_dir', './outputs/train', Text(required=True, **_PATH), 'where training checkpoints and logs go'),
        Option('init_from', '', Text(**_PATH),
               'checkpoint of the same family at another scale to start from (e.g. x2 for x4); copies matching '
               'tensors'),
        Option('qat', False, Bool(),
               'quantization-aware training: fine-tune --pre_trained with fake quantization (w_bit/a_bit, '
               'initialised by quant_method, default dbdc)'),
        Option('resume', False, Bool(),
               'continue from the newest training state in ckpt_dir; a state of a different run (other model, data, '
               'seed, batch, schedule, ...) is refused, naming the options that differ'),
        Option('overwrite', False, Bool(),
               'let a new run (resume False) replace the states, best/last checkpoints and CSV of an earlier run of '
               'the same model in ckpt_dir (refused otherwise)'),
        Option('save_every', 0, Int(0), 'write the resumable training state every N steps; 0 = at every validation'),
        Option('save_every_minutes', 10.0, Float(0.0),
               'also write it when this many minutes passed since the last one (0 = only by steps); Ctrl-C / SIGTERM'
               ' always write one before stopping'),
        Option('keep_last_ckpt', 3, Int(1), 'how many training-state files to keep (newest)'),
        Option('log_every', 100, Int(1), 'progress line (loss, lr, it/s, ETA) every N steps'),
        Option('tensorboard', False, Bool(), 'write TensorBoard scalars (tensorboardX) to <ckpt_dir>/tensorboard'),
    )),
    Section('quantization', 'quantization (eval.py: post-training, empty quant_method = float evaluation; export.py '
            '--quant int8: the phone path, dbdc_pac by default; train.py QAT: its initialisation)',
            ('train', 'eval', 'export'), (
        Option('quant_method', '', Choice(["", "minmax", "percentile", "omse", "dbdc", "dbdc_pac", "dbdc_recon"]),
               'post-training quantization: minmax, percentile, omse, dbdc, dbdc_pac, dbdc_recon (dbdc_pac then '
               'learned rounding with block reconstruction); empty = none'),
        Option('w_bit', 8, Bits(), 'weight bits (2-8; 0 or 32: weights not quantized)'),
        Option('a_bit', 8, Bits(), 'activation bits (2-8; 0 or 32: activations not quantized)'),
        Option('quant_placement', 'auto', Choice(["auto", "deploy", "ptq4sr"]),
               'which tensors the quantized model rounds: deploy (every tensor the full-integer phone file rounds, '
               "on its grids: the reported PSNR is the int8 file's), ptq4sr (conv inputs and weights only, as in the"
               ' PTQ4SR paper), auto (deploy at W8A8 with every layer quantized, else ptq4sr)'),
        Option('w_symmetric', True, Bool(), 'symmetric per-channel weight quantization (False = asymmetric)'),
        Option('int8_scope', ['first_last'], List(Text(required=True)),
               'layer name patterns kept at W8A8 when bits < 8; first_last = first and last layer'),
        Option('fp_scope', [], List(Text(required=True)), 'layer name patterns left in floating point'),
        Option('bit_table', {}, Mapping(Text(required=True), Pair(Bits())),
               'YAML only: {layer pattern: [w_bit, a_bit]}'),
        Option('calib_batch', 2, Int(1),
               'patches per statistics batch of the observers (percentile/DBDC bounds are averaged over batches); '
               'ABPN x3 DBDC: 2 -> 100 gives W8A8 Set5 33.44 -> 33.47 but W4A4 29.05 -> 28.95'),
        Option('equalize', 'auto', OrAuto(Bool()),
               'before calibrating, rescale ReLU/PReLU-separated conv pairs so every channel of the activation '
               "between them spans the same range (exact in float); auto: the bit width's dbdc_pac recipe (README), "
               'False for other methods'),
        Option('weight_grid', 'hessian', Choice(["hessian", "minmax"]),
               "weight step per output channel: hessian (chosen to minimise the layer's output error on the "
               "calibration data; ETDS x3 W8A8 all-weights Set5 -1.23 -> -0.05 dB) or minmax (the observer's max "
               '|w|)'),
        Option('input_minmax', True, Bool(),
               "bound the first layer's input (the image) by its min/max over the calibration data instead of the "
               "observer's averaged, clipped bounds (SESR x2 W8A8 Set5 -0.23 dB from that layer alone)"),
        Option('percentile', 0.9999, Float(0.5, 1.0, lo_open=True), 'percentile method: quantile kept at each end'),
        Option('dbdc_p', 'auto', OrAuto(Float(0.0, 0.5, lo_open=True, hi_open=True)),
               "DBDC: fraction of values clipped; auto: the bit width's dbdc_pac recipe (README), 1e-4 for dbdc"),
        Option('pac_hr_patch', 192, Int(1, 4096), 'HR size of calibration patches (LR = this / scale)'),
        Option('save_quant_ckpt', '', Text(**_PATH),
               'write the calibrated model (weights + bounds + quant config) here'),
    )),
    Section('calibration_data', 'calibration images (quantization; export --quant int8 of a checkpoint without '
            'deployment grids)', ('train', 'eval', 'export'), (
        Option('calib_path', './data/DIV2K_train_HR', Text(required=True, **_PATH),
               'folder of unlabeled images for calibration patches'),
        Option('calib_num', 100, Int(1, 1_000_000), 'number of calibration patches'),
        Option('calib_seed', 0, Int(0, 2 ** 32 - 1), 'seed for drawing calibration patches and PaC batches'),
    )),
    Section('pac', 'pixel-aware calibration (quant_method dbdc_pac)', ('train', 'eval', 'export'), (
        Option('pac_act_iters', 'auto', OrAuto(Int(0)),
               "PaC iterations on activation bounds; auto: the bit width's recipe (README)"),
        Option('pac_weight_iters', 'auto', OrAuto(Int(0)),
               "PaC iterations on weight bounds; auto: the bit width's recipe (README)"),
        Option('pac_act_lr', 0.005, Float(0.0), 'PaC activation-bound learning rate (cosine to pac_act_lr_min)'),
        Option('pac_act_lr_min', 0.002, Float(0.0), 'PaC final activation-bound learning rate'),
        Option('pac_weight_lr', 0.01, Float(0.0),
               "PaC weight-bound learning rate (cosine to pac_weight_lr_min); the paper code's 5e-6 leaves ABPN's "
               'weight bounds unchanged'),
        Option('pac_weight_lr_min', 0.001, Float(0.0), 'PaC final weight-bound learning rate'),
        Option('pac_batch', 2, Int(1),
               'patches per PaC optimisation step (drawn at random from the calib_num patches each iteration; the '
               "observers' statistics batch is calib_batch)"),
        Option('pac_feature_weight', 'auto', OrAuto(Float(0.0)),
               "PaC weight of the intermediate-feature term (0 = output term only); auto: the bit width's recipe "
               '(README)'),
        Option('pac_relative_features', True, Bool(),
               "divide each feature L1 by that feature's mean magnitude over the output's (scale-free layers)"),
        Option('pac_loss', 'auto', OrAuto(Choice(["l1", "l2"])),
               "PaC distance: l1 (paper) or l2 (squared errors); auto: the bit width's recipe (README)"),
        Option('pac_graph', True, Bool(),
               'run each PaC step as a compiled graph (False: the PyNative reference path with forward hooks, ~10x '
               'slower)'),
    )),
    Section('recon', 'learned rounding and block reconstruction (quant_method dbdc_recon)',
            ('train', 'eval', 'export'), (
        Option('recon_iters', 500, Int(1),
               'dbdc_recon: iterations per block of the learned rounding and activation bounds'),
        Option('recon_block', 2, Int(0),
               'dbdc_recon: consecutive quantized layers per reconstruction block (2, default: two convs with their '
               'activations; 1 = one conv; 0 = the whole network as one block); ABPN x3 W4A4 Set5 1: 32.34, 2: '
               '32.47, 3: 32.47, 0: 32.36 dB'),
        Option('recon_batch', 2, Int(1),
               'dbdc_recon: patches per reconstruction step (drawn from the calib_num patches)'),
        Option('recon_round_lr', 0.1, Float(0.0, lo_open=True),
               'dbdc_recon: Adam learning rate of the rounding variables (AdaRound)'),
        Option('recon_act_lr', 0.001, Float(0.0),
               "dbdc_recon: Adam learning rate of the block's activation bounds (cosine to 0); 0 = bounds fixed"),
        Option('recon_round_weight', 0.001, Float(0.0),
               'dbdc_recon: weight of the rounding regulariser that drives every weight to round down or up '
               "(AdaRound's lambda, on a loss relative to the block output's mean square)"),
        Option('recon_warmup', 0.2, Float(0.0, 1.0, hi_open=True),
               "dbdc_recon: fraction of each block's iterations before the rounding regulariser starts (beta then "
               'decays 20 -> 2)'),
        Option('recon_drop', 0.5, Float(0.0, 1.0, hi_open=True),
               'dbdc_recon: QDrop probability of passing an activation unquantized during reconstruction (0 = off)'),
        Option('recon_rounding', True, Bool(),
               "dbdc_recon: learn each weight's rounding (False: round to nearest; ablation)"),
        Option('recon_act', True, Bool(), "dbdc_recon: learn the block's activation bounds (ablation)"),
    )),
    Section('outputs', 'outputs', ('eval', 'export', 'infer'), (
        Option('output_path', './outputs', Text(required=True, **_PATH), 'folder for SR images and result files'),
    )),
    Section('eval_outputs', 'evaluation outputs', ('eval',), (
        Option('save_sr', False, Bool(), 'write SR images as PNG under output_path'),
        Option('result_file', '', Text(**_PATH),
               'JSON report path; empty = <output_path>/eval_<model>_<variant>_x<scale>.json'),
    )),
    Section('export', 'export', ('export',), (
        Option('file_format', 'ONNX', Choice(["MINDIR", "ONNX", "ORT", "TFLITE", "AIR"]),
               'export.py: MINDIR, ONNX, ORT (ORT-Mobile, from the mobile ONNX graph), TFLITE (LiteRT, mobile graph;'
               ' needs requirements-mobile.txt) or AIR (Ascend only)'),
        Option('target', 'auto', Choice(["auto", "mobile", "desktop"]),
               'export.py: mobile (fixed --input_shape, only ops phone delegates run: NNAPI/CoreML/TFLite) or '
               'desktop (dynamic H/W, x86 onnxruntime rewrites); auto = mobile for TFLITE/ORT, desktop for '
               'ONNX/MINDIR'),
        Option('export_file', '', Text(**_PATH), old_names=('file_name',), help=
               "export.py: the file written (its format's extension added when missing); empty = "
               '<output_path>/<model>_<variant>_x<scale>[_int8|_fp16][_mobile].<ext> (--file_name still works)'),
        Option('input_shape', '', InputShape(),
               'export.py: example input N,C,H,W (empty = 1,<n_colors>,360,640, the mobile benchmark LR size)'),
        Option('quant', 'none', Choice(["none", "float16", "int8"]),
               'export.py: none (float, or the fake-quant graph of a calibrated checkpoint), float16 (TFLITE: '
               'float16 weights) or int8 (ONNX QDQ / full-integer TFLITE from a calibrated/QAT checkpoint)'),
        Option('io_dtype', 'float32', Choice(["float32", "uint8"]),
               'export.py TFLITE int8: float32 input/output around the integer graph, or uint8 (RGB image bytes in '
               'and out, scale 1/255)'),
        Option('phone_extras', [], List(Choice(["ort", "float16"])),
               'export.py --quant int8 from float weights (the phone path): also write these files and score them: '
               'ort (int8 ORT-Mobile), float16 (TFLite float16 weights)'),
        Option('export_check', True, Bool(),
               'export.py: verify the written file against MindSpore on a real image (and a second size for dynamic '
               'shapes)'),
    )),
    Section('infer', 'images to upscale', ('infer',), (
        Option('input_path', '', Text(**_PATH),
               'infer.py: an image or a folder of images to upscale (PNGs written to output_path)'),
        Option('model_file', '', Text(**_PATH), old_names=('file_name',), help=
               'infer.py: the .ckpt, .onnx, .ort, .mindir or .tflite to run; empty = --pre_trained / the shipped '
               'checkpoint (--file_name still works)'),
    )),
)

OPTIONS = {option.key: option for section in DECLARED for option in section.options}
#: key -> its rule (:mod:`model_utils.rules`), in declaration order
RULES = {key: option.rule for key, option in OPTIONS.items()}
#: key -> its default (what DIV2K_config.yaml holds)
DEFAULTS = {key: option.default for key, option in OPTIONS.items()}
#: section name -> (title, keys), in declaration order
SECTIONS = {s.name: (s.title, tuple(o.key for o in s.options)) for s in DECLARED}
ENTRIES = ("train", "eval", "export", "infer")
#: entry script -> the sections it reads
ENTRY_SECTIONS = {entry: tuple(s.name for s in DECLARED if entry in s.entries) for entry in ENTRIES}
#: old names (``--file_name``): per entry script, the keys of its own sections that carry the old name;
#: without an entry script (``get_config`` called by a script or a test), every key that does
ALIASES = {entry: {old: keys for old in sorted({n for o in OPTIONS.values() for n in o.old_names})
                   if (keys := tuple(o.key for s in DECLARED if entry is None or entry in s.entries
                                     for o in s.options if old in o.old_names))}
           for entry in ENTRIES + (None,)}
#: old names accepted in a config file (an older copy of the defaults) by every entry script
RETIRED = tuple(sorted({name for option in OPTIONS.values() for name in option.old_names}))
_SECTION_OF = {o.key: s.name for s in DECLARED for o in s.options}


def section_of(key):
    """The section name holding ``key``, or None for a key of no section (a test config's own key)."""
    return _SECTION_OF.get(key)


def cross_checks(values):
    """Rules between keys: yield (option, message) for each violated one."""
    if values.get("lr_scheduler") == "cosine" and "lr" in values and "min_lr" in values \
            and values["min_lr"] > values["lr"]:
        yield "min_lr", (f"--min_lr {fmt(values['min_lr'])} is above --lr {fmt(values['lr'])}: the cosine "
                         "schedule would rise; min_lr must be in [0, lr]")
    for key in ("pac_act", "pac_weight"):
        low, high = values.get(f"{key}_lr_min"), values.get(f"{key}_lr")
        if low is not None and high is not None and low > high:
            yield f"{key}_lr_min", (f"--{key}_lr_min {fmt(low)} is above --{key}_lr {fmt(high)}; "
                                    f"{key}_lr_min must be in [0, {key}_lr]")
    method, patches = values.get("quant_method"), values.get("calib_num")
    for key, methods in (("pac_batch", ("dbdc_pac", "dbdc_recon")), ("recon_batch", ("dbdc_recon",))):
        if method in methods and isinstance(values.get(key), int) and isinstance(patches, int) \
                and values[key] > patches:
            yield key, (f"--{key} {values[key]} is above --calib_num {patches}: each step draws {key} distinct "
                        f"calibration patches; {key} must be <= calib_num")
    if method == "dbdc_recon" and values.get("recon_rounding") is False and values.get("recon_act") is False:
        yield "recon_rounding", ("--recon_rounding False with --recon_act False leaves nothing to reconstruct "
                                 "(the result would be dbdc_pac's); give one of them True, or use dbdc_pac")
    scale, patch = values.get("scale"), values.get("pac_hr_patch")
    if isinstance(scale, int) and isinstance(patch, int) and patch < scale:
        yield "pac_hr_patch", (f"--pac_hr_patch {patch} is below --scale {scale}: the LR calibration patch "
                               f"would be empty; pac_hr_patch must be >= scale")


def _keys_of(*names):
    """The keys of the named sections (a name that is no section is a key itself)."""
    return tuple(k for name in names for k in (SECTIONS[name][1] if name in SECTIONS else (name,)))


_PAC_METHODS = ("dbdc_pac", "dbdc_recon")
# Options that are read only when another option holds a value, per entry script: (entry, keys, needed(values),
# what is needed, what to do). An option among ``keys`` typed on the command line while ``needed`` is false
# would do nothing, so it is refused (one line naming both; see needs_problems).
NEEDS = (
    (("eval",), tuple(k for k in _keys_of("quantization", "calibration_data", "pac", "recon") if k != "quant_method"),
     lambda v: bool(v.get("quant_method")), "--quant_method (empty: the float model is evaluated)",
     "add --quant_method dbdc_pac (the default calibration; see --help) or drop them"),
    (("export",), _keys_of("quantization", "calibration_data", "pac", "recon", "eval_data", "phone_extras"),
     lambda v: v.get("quant") == "int8", "--quant int8 (they calibrate and score the int8 phone file)",
     "add --quant int8 or drop them"),
    (("eval", "export"), _keys_of("pac"), lambda v: v.get("quant_method") in ("",) + _PAC_METHODS,
     "--quant_method dbdc_pac or dbdc_recon", "pick one of those methods or drop them"),
    # an empty --quant_method is dbdc_pac on export.py's phone path (eval.py refuses it by the first rule)
    (("eval", "export"), _keys_of("recon"), lambda v: v.get("quant_method") == "dbdc_recon",
     "--quant_method dbdc_recon", "pick it or drop them"),
    (("eval", "export"), ("percentile",), lambda v: v.get("quant_method") == "percentile",
     "--quant_method percentile", "pick it or drop it"),
    (("eval", "export"), ("dbdc_p",), lambda v: not v.get("quant_method") or v["quant_method"].startswith("dbdc"),
     "--quant_method dbdc, dbdc_pac or dbdc_recon", "pick one of those methods or drop it"),
    (("train",), _keys_of("quantization", "calibration_data", "pac", "recon"), lambda v: bool(v.get("qat")),
     "--qat True (quantization-aware training; a float run reads no quantization option)",
     "add --qat True or drop them"),
    (("train",), ("min_lr",), lambda v: v.get("lr_scheduler") == "cosine", "--lr_scheduler cosine",
     "drop it or use the cosine schedule"),
    (("train",), ("lr_milestones", "lr_gamma"), lambda v: v.get("lr_scheduler") == "multistep",
     "--lr_scheduler multistep", "add --lr_scheduler multistep or drop them"),
    (("train",), ("loss_scale_value",), lambda v: v.get("loss_scale") != "none",
     "a loss scale (--loss_scale static, dynamic or auto)", "drop it or pick a loss scale"),
)


# ---- DIV2K_config.yaml, written from the declarations ----
YAML_HEADER = (
    "# Quantized mobile SR model zoo: default configuration.",
    "# Written by `python -m model_utils.options DIV2K_config.yaml` from model_utils/options.py (edit there).",
    "# Every scalar key can be overridden on the command line as --key value;",
    "# lists take comma-separated values (--eval_datasets Set5,Set14).",
)


def _yaml_scalar(value):
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.12f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    text = str(value)
    plain = text and not any(c in text for c in ":#,[]{}'\"") and yaml.safe_load(text) == text
    return text if plain else json.dumps(text)


def yaml_value(value):
    """``value`` as YAML flow text that reads back as the same value (checked: ValueError otherwise)."""
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{_yaml_scalar(k)}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    else:
        text = _yaml_scalar(value)
    if yaml.safe_load(f"k: {text}")["k"] != (list(value) if isinstance(value, tuple) else value):
        raise ValueError(f"{value!r} does not read back from YAML as itself ({text})")
    return text


def choices_of(rule):
    """The allowed values a rule lists (Choice, auto-or-Choice), or None."""
    choices = getattr(rule, "choices", None)
    if isinstance(rule, OrAuto) and not getattr(rule.inner, "choices", None):
        return None
    return list(choices) if choices else None


def yaml_text():
    """DIV2K_config.yaml: the values by section, then the help strings, then the allowed values."""
    lines = list(YAML_HEADER)
    for section in DECLARED:
        lines += ["", f"# ---- {section.title} ----"]
        lines += [f"{o.key}: {yaml_value(o.default)}" for o in section.options]
    lines += ["", "---", "# Help strings (shown by --help)"]
    lines += [f"{key}: {json.dumps(option.help)}" for key, option in OPTIONS.items()]
    lines += ["", "---", "# Allowed values"]
    lines += [f"{key}: {yaml_value(choices_of(o.rule))}" for key, o in OPTIONS.items() if choices_of(o.rule)]
    return "\n".join(lines) + "\n"


def generator_args(argv, usage):
    """``(check, path or None)`` of a generator's command line ``[--check] [PATH]`` (this module's and
    :mod:`model_utils.options_doc`'s); None after printing ``usage`` for anything else (a flag such as
    ``--help`` is never taken for a PATH to write)."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if any(a.startswith("-") for a in args) or len(args) > 1:
        print(f"usage: {usage}", file=sys.stderr)
        return None
    return check, (args[0] if args else None)


def main(argv=None):
    """``python -m model_utils.options [--check] [PATH]``: write the YAML (default DIV2K_config.yaml);
    ``--check``: exit 1 when the file differs from what would be written."""
    parsed = generator_args(argv, "python -m model_utils.options [--check] [PATH]  (PATH: DIV2K_config.yaml by "
                                  "default; --check: exit 1 when the file is not what would be written)")
    if parsed is None:
        return 2
    check, path = parsed
    path = path or "DIV2K_config.yaml"
    text = yaml_text()
    if check:
        with open(path, encoding="utf-8") as handle:
            same = handle.read() == text
        print(f"{path} {'is' if same else 'is NOT'} what model_utils/options.py writes")
        return 0 if same else 1
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {path} ({len(OPTIONS)} options)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
