"""Where the stages read and write: the paths of dvc.yaml, named once."""
from pathlib import Path

ROLLOUTS = Path("data/rollouts")
LATENTS = Path("data/latents")
PPO_DIR = Path("models/ppo")
PPO_MODEL = PPO_DIR / "best_model.zip"
PPO_BASELINE_DIR = Path("models/ppo_baseline")
PPO_BASELINE_MODEL = PPO_BASELINE_DIR / "best_model.zip"
VAE = Path("models/vae.pt")
MDNRNN = Path("models/mdnrnn.pt")
CONTROLLER = Path("models/controller.pt")
CONTROLLER_Z = Path("models/controller_z.pt")
