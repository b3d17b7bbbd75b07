"""How a stage computes, fixed in one place, so that the same params give the same bytes.

Measured on this project's machine (docs/results.md, "Same params, same bytes"):
- Kernels. torch (its ATen kernels, oneDNN's convolutions, MKL's matrix products) and numpy's
  OpenBLAS pick a code path by CPU at run time, and each path rounds differently: forcing
  torch's generic, SSE4.1 or MKL-compatible paths changed a VAE + MDN-RNN + controller step in
  the last bits, and CMA-ES amplifies such bits into another controller. `pin_kernels` caps all
  four at their AVX2 paths: what they choose anyway on an AVX2 CPU (the same bytes here, at no
  cost), and what an AVX-512 CPU then runs too, instead of its own.
- numpy's own loops. numpy dispatches its ufuncs at run time too: on an AVX-512 CPU, float64
  exp, log and power run AVX-512 loops (its X86_V4 targets) that round differently from the
  AVX2 and libm loops an AVX2 CPU runs. pycma's updates use them, so CMA-ES went another way:
  the default controller stage on an AVX-512 machine parted from the AVX2 machine's at
  generation 11. NPY_DISABLE_CPU_FEATURES takes those targets away (a CPU without them has
  nothing to take away).
- Threads. torch's intra-op threads: 1 and 2 give the same bytes, 3, 4 and 8 each give others,
  so the count is the `threads` param. OpenBLAS (CMA-ES's eigendecompositions): 1 and 2 threads
  differ and its default is the number of cores, so it runs 1 (the 867-dimensional
  decomposition is a few milliseconds every few generations).
"""

import os
import platform

# read by the libraries when they load: set before numpy or torch is imported
KERNEL_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorized kernels
    "DNNL_MAX_CPU_ISA": "AVX2",  # oneDNN (torch's CPU convolutions)
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: its AVX2 branch
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's OpenBLAS: its AVX2 kernels
    "OPENBLAS_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's own AVX-512 loops
}


def pin_kernels():
    """Pin the kernels and OpenBLAS's threads (KERNEL_PINS) for this process and its children,
    unless already set in the environment; x86-64 only (elsewhere the paths are others anyway).
    `WM_KERNELS=native` in the environment leaves the libraries their own choice (faster on some
    CPUs, other bytes on other CPUs). Call before numpy or torch is imported: the stages' and
    tools' package __init__ does."""
    if platform.machine().lower() not in ("x86_64", "amd64") or os.environ.get("WM_KERNELS") == "native":
        return
    for name, value in KERNEL_PINS.items():
        os.environ.setdefault(name, value)


def use_threads(threads):
    """torch's intra-op threads for this process (the `threads` param: the count changes the bytes)."""
    import torch

    torch.set_num_threads(threads)
