"""The scripts' one path rule: ``python scripts/NAME.py`` puts ``scripts/`` first on ``sys.path``, so a script
imports this module first and it puts the project root there too (``src``, ``model_utils``); it also sets the
CPU runtime defaults before MindSpore loads (``model_utils.runtime_env``, through ``import model_utils``)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the user's own ONEDNN_MAX_CPU_ISA (None: unset), read before model_utils sets the project's default
ORIGINAL_ONEDNN_ISA = os.environ.get("ONEDNN_MAX_CPU_ISA")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import model_utils  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
