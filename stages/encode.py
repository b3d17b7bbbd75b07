"""Stage encode: every episode's frames -> VAE mu and logvar, one latent file per episode.

outs: data/latents/episode_XXXXX.npz; metrics/encode.json
"""

from tqdm import tqdm

from wm import paths
from wm.compute import use_threads
from wm.config import load_params
from wm.episodes import list_files
from wm.errors import main
from wm.io import Timer, atomic_dir, load_model, resolve_device, write_json
from wm.vae import ConvVAE, encode_episode


@main
def run():
    params = load_params()
    use_threads(params.threads)
    files = list_files(paths.ROLLOUTS, "episode")
    vae = load_model(paths.VAE, ConvVAE, z_dim=params.vae.z_dim)
    device = resolve_device(params.device)
    timer = Timer("encode")
    frames = 0
    with atomic_dir(paths.LATENTS) as out_dir:
        for path in tqdm(files, desc="encode", unit="ep"):
            frames += encode_episode(vae, path, out_dir / path.name, params.encode.batch_size, device)
    write_json(
        paths.ENCODE_METRICS,
        {
            "episodes": len(files),
            "frames": frames,
        },
    )
    timer.save(frames_per_second=round(frames / timer.seconds, 1))


if __name__ == "__main__":
    run()
