"""H.264 mp4 files (yuv420p, playable in browsers) from lists of RGB uint8 frames."""

import cv2
import imageio_ffmpeg
import numpy as np

from wm.io import atomic_path


def upscale(frame, height):
    """Nearest-neighbour resize of an (H, W, 3) frame to `height` rows, keeping the aspect ratio."""
    width = round(frame.shape[1] * height / frame.shape[0])
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_NEAREST)


def side_by_side(left, right, height=256, gap=8):
    """Two (H, W, 3) frames scaled to `height` and joined with a black gap."""
    spacer = np.zeros((height, gap, 3), dtype=np.uint8)
    return np.concatenate([upscale(left, height), spacer, upscale(right, height)], axis=1)


def write_mp4(path, frames, fps=30):
    """Write RGB uint8 frames (all the same shape, even sides) as an H.264 mp4, atomically."""
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    height, width = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-f", "mp4"],
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
        writer.close()


def write_png(path, image):
    """Write an RGB uint8 image as PNG, atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{path}: could not encode PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
