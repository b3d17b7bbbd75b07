"""Where the stages read and write: the paths of dvc.yaml, named once."""

from pathlib import Path

# data and models (DVC outs, cached)
PARAMS_OK = Path("data/params.ok")  # written once params.yaml is valid (stage params)
ROLLOUTS = Path("data/rollouts")
LATENTS = Path("data/latents")
PPO_MODEL = Path("models/ppo.pt")
PPO_BASELINE_MODEL = Path("models/ppo_baseline.pt")
VAE = Path("models/vae.pt")
MDNRNN = Path("models/mdnrnn.pt")
CONTROLLER = Path("models/controller.pt")
CONTROLLER_Z = Path("models/controller_z.pt")
CONTROLLERS = {"zh": CONTROLLER, "z": CONTROLLER_Z}  # by the controller's inputs
EVAL_VIDEO = Path("metrics/eval_drive.mp4")
DREAM_VIDEO = Path("metrics/dream.mp4")


def round_models(n):
    """The models of round n of the iterative procedure (params iterate.rounds): its mdnrnn.pt and
    controller.pt (the VAE stays models/vae.pt). Round 0 is the controller stage's: models/."""
    return Path("models") if n == 0 else Path(f"models/rounds/{n}")


def round_latents(n):
    """The latent episodes round n trains on: the encode stage's, then each round's new episodes
    added to the previous round's."""
    return LATENTS if n == 0 else Path(f"data/rounds/{n}")


def round_metrics(n):
    """Round n's metrics directory: collect.json, mdnrnn/, controller/."""
    return Path(f"metrics/rounds/{n}")


# metrics (in git): dvclive directories and JSON files
PPO_METRICS = Path("metrics/ppo")
PPO_BASELINE_METRICS = Path("metrics/ppo_baseline")
COLLECT_METRICS = Path("metrics/collect.json")
VAE_METRICS = Path("metrics/vae")
VAE_RECONSTRUCTION = Path("metrics/vae_reconstruction.png")
ENCODE_METRICS = Path("metrics/encode.json")
MDNRNN_METRICS = Path("metrics/mdnrnn")
CONTROLLER_METRICS = {"zh": Path("metrics/controller"), "z": Path("metrics/controller_z")}


def controller_metrics(n, inputs="zh"):
    """The CMA-ES logs (dvclive) of round n's controller on `inputs` ("zh" or "z"); round 0's are
    the controller stages' (only the z+h controller has rounds)."""
    return round_metrics(n) / "controller" if n else CONTROLLER_METRICS[inputs]


EVAL_METRICS = Path("metrics/eval.json")
DREAM_METRICS = Path("metrics/dream.json")

# wall-clock seconds and rates per stage (not tracked: they differ between identical runs)
TIMINGS = Path("timings")
# progress of long stages, for resuming after a kill: in DVC's scratch directory (untracked; deleted
# when the stage ends, and never among the outputs, even when DVC restores them from its run cache)
PROGRESS = Path(".dvc/tmp/wm/progress")
