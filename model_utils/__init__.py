"""Model-zoo utilities: configuration and device adapters."""
from model_utils.runtime_env import apply_cpu_runtime_defaults

# Must run before anything imports mindspore (see runtime_env).
apply_cpu_runtime_defaults()
