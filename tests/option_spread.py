"""In how many files of the project's code each configuration option's name is written.

A file counts when the option's name appears in it as a whole word (``recon_drop``, not ``drop``) in
``src/``, ``model_utils/`` or ``DIV2K_config.yaml`` (tests and docs are not counted): its value (the
YAML), its declaration (``model_utils/options.py``) and the code that reads it; the fewer, the fewer
places a change of the option touches. Library settings filled by field name (``ReconConfig.drop``
from ``recon_drop``) do not write the option's name.

    python tests/option_spread.py                         # every option, most-written first
    python tests/option_spread.py recon_drop pac_loss     # those options, with their files
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model_utils.options import OPTIONS  # noqa: E402  pylint: disable=wrong-import-position


def _texts(root=ROOT):
    texts = {"DIV2K_config.yaml": open(os.path.join(root, "DIV2K_config.yaml"), encoding="utf-8").read()}
    for package in ("src", "model_utils"):
        for folder, _, names in os.walk(os.path.join(root, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as handle:
                        texts[os.path.relpath(path, root)] = handle.read()
    return texts


def spread(keys=None, root=ROOT):
    """``{option: [files writing its name]}`` for ``keys`` (default: every declared option)."""
    texts = _texts(root)
    out = {}
    for key in keys or OPTIONS:
        pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])")
        out[key] = sorted(path for path, text in texts.items() if pattern.search(text))
    return out


def main(argv):
    root = ROOT
    if argv[:1] == ["--root"]:
        root, argv = argv[1], argv[2:]
    unknown = [key for key in argv if key not in OPTIONS]
    if unknown:
        print(f"error: not an option: {', '.join(unknown)} (model_utils/options.py declares them)", file=sys.stderr)
        return 2
    found = spread(argv or None, root)
    print("files  option: the files of src/, model_utils/ and DIV2K_config.yaml writing its name")
    for key, files in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{len(files):5d}  {key}: {' '.join(files) if argv else ''}".rstrip(": "))
    counts = [len(v) for v in found.values()]
    print(f"{len(found)} option(s): written in at most {max(counts)} files; {sum(c <= 3 for c in counts)} of them "
          f"in 3 files or fewer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
