"""Process-level settings that must be in place before MindSpore is imported.

On x86 CPUs with AVX-512, oneDNN inside MindSpore 2.10 selects a reference
(non-JIT) convolution for the NCHW layouts MindSpore uses, which is ~100x
slower than the AVX2 JIT GEMM path. Capping oneDNN's ISA at AVX2 restores the
fast path. A value the user already exported is always respected.
"""
import os
import platform

_X86 = ("x86_64", "amd64", "i386", "i686")


def apply_cpu_runtime_defaults(environ=None):
    """Set ONEDNN_MAX_CPU_ISA=AVX2 on x86 unless the user chose a value.

    Returns the value in force afterwards (None on non-x86 machines).
    """
    env = os.environ if environ is None else environ
    if platform.machine().lower() not in _X86:
        return env.get("ONEDNN_MAX_CPU_ISA")
    env.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    return env["ONEDNN_MAX_CPU_ISA"]
