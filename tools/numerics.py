"""Which settings change the bytes a stage computes: a digest of the same computations under
other CPU kernels and thread counts (each in a fresh process, as the settings are read when
torch and numpy load):

    python -m tools.numerics [--out reports/numerics.json]

The computations: 20 steps of the world-model agent (VAE encoder, controller, LSTM) on fixed
frames; 3 training steps of the VAE and the MDN-RNN's LSTM; 60 generations of CMA-ES (pycma,
867 parameters, population 16) on a fixed quadratic, with numpy's own loops native or without
their AVX-512 targets (on a CPU without AVX-512 both rows are the same). Two settings with the
same digest computed the same bytes. wm/compute.py fixes the settings from what this prints.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from wm.compute import KERNEL_PINS

# run in a fresh interpreter, with no pins but those given (the tools' __init__ would pin them)
AGENT_AND_TRAINING = """
import hashlib, numpy as np, torch
from wm.controller import Controller, apply
from wm.mdnrnn import MDNRNN
from wm.vae import ConvVAE, to_input, vae_loss
torch.set_num_threads(THREADS)
torch.manual_seed(0)
vae, mdnrnn, controller = ConvVAE(32).eval(), MDNRNN(32).eval(), Controller(32, 256)
frames = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
params = np.random.default_rng(1).standard_normal((32, controller.size)).astype(np.float32) * 0.1
agent = hashlib.md5()
with torch.inference_mode():
    state = mdnrnn.initial_state(32)
    for _ in range(20):
        z, _ = vae.encode(to_input(frames, "cpu"))
        action = apply(controller.batch(params), torch.cat([z, state[0][0]], 1))
        _, state = mdnrnn.lstm(torch.cat([z, action], 1)[:, None], state)
        agent.update(z.numpy().tobytes() + action.numpy().tobytes())
torch.manual_seed(0)
vae, mdnrnn = ConvVAE(32), MDNRNN(32)
optimizers = torch.optim.Adam(vae.parameters()), torch.optim.Adam(mdnrnn.parameters())
x, z = torch.rand(50, 3, 64, 64), torch.randn(8, 50, 35)
for _ in range(3):
    recon, mu, logvar = vae(x)
    out, _ = mdnrnn.lstm(z)
    loss = vae_loss(recon, x, mu, logvar, 0.5).total + mdnrnn.head(out).pow(2).mean()
    for optimizer in optimizers:
        optimizer.zero_grad()
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()
weights = [*vae.parameters(), *mdnrnn.parameters()]
training = hashlib.md5(b"".join(p.detach().numpy().tobytes() for p in weights))
print(agent.hexdigest()[:12], training.hexdigest()[:12])
"""
CMA_ES = """
import hashlib, warnings, numpy as np
warnings.filterwarnings("ignore")
import cma
target = np.random.default_rng(0).standard_normal(867)
es = cma.CMAEvolutionStrategy(np.zeros(867), 0.1, {"popsize": 16, "seed": 1, "verbose": -9})
for _ in range(60):
    candidates = es.ask()
    es.tell(candidates, [float(((c - target) ** 2).sum()) for c in candidates])
print(hashlib.md5(np.asarray(es.mean).tobytes()).hexdigest()[:12])
"""
ROOT = Path(__file__).resolve().parents[1]
NUMPY_PIN = "NPY_DISABLE_CPU_FEATURES"  # numpy's run-time dispatch of its own loops
KERNELS = {  # torch's kernels: each its own code path
    "native": {},
    "ATen generic (ATEN_CPU_CAPABILITY=default)": {"ATEN_CPU_CAPABILITY": "default"},
    "oneDNN SSE4.1 (DNNL_MAX_CPU_ISA=SSE41)": {"DNNL_MAX_CPU_ISA": "SSE41"},
    "MKL compatible (MKL_CBWR=COMPATIBLE)": {"MKL_CBWR": "COMPATIBLE"},
    "all four pinned to AVX2 (wm/compute.py)": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    },
}


def digest(code, env, threads=2):
    base = {k: v for k, v in os.environ.items() if k not in KERNEL_PINS}
    result = subprocess.run(
        [sys.executable, "-c", code.replace("THREADS", str(threads))],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    for name, env in KERNELS.items():
        results[f"kernels: {name}"] = digest(AGENT_AND_TRAINING, env)
    for threads in (1, 2, 3, 4, 8):
        results[f"torch threads: {threads}"] = digest(AGENT_AND_TRAINING, {}, threads)
    for threads in (1, 2, 4):
        results[f"CMA-ES, OpenBLAS threads: {threads}"] = digest(
            CMA_ES, {"OPENBLAS_NUM_THREADS": str(threads)}
        )
    for name, disabled in (("native", ""), ("AVX-512 loops off (wm/compute.py)", KERNEL_PINS[NUMPY_PIN])):
        results[f"CMA-ES, numpy's loops {name}, 1 thread"] = digest(
            CMA_ES, {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "Haswell", NUMPY_PIN: disabled}
        )
    for coretype in ("Haswell", "Zen", "Sandybridge"):
        results[f"CMA-ES, OpenBLAS kernels {coretype}, 1 thread"] = digest(
            CMA_ES, {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": coretype}
        )
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
