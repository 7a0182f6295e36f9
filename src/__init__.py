"""Quantized super-resolution model zoo (MindSpore)."""
from model_utils.runtime_env import apply_cpu_runtime_defaults

# Must run before anything imports mindspore (see model_utils/runtime_env.py).
apply_cpu_runtime_defaults()
