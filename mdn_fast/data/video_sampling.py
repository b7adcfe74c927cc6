"""TSN-style frame sampling (MANet / TSN, as used for MA-52) and the mapping of frame indices between two
streams of one clip (video frames onto pose frames). Pure numpy: the pose-only readers (iMiGUE) use it
without the decoder or torch."""
from __future__ import annotations

import numpy as np


def tsn_sample_indices(num_frames: int, num_segments: int, train: bool,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN segment sampling: one frame index per segment, ``int64 [num_segments]`` in ``[0, num_frames)``.

    The clip is cut into ``num_segments`` segments of length ``num_frames / num_segments`` (fractional);
    training takes a uniform random offset inside each segment, evaluation the segment centre. Clips
    shorter than ``num_segments`` repeat frames (indices stay sorted).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    seg = num_frames / num_segments
    base = np.arange(num_segments, dtype=np.float64) * seg
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        pos = base + rng.random(num_segments) * seg
    else:
        pos = base + seg / 2.0
    return np.clip(np.floor(pos).astype(np.int64), 0, num_frames - 1)



def frame_map(num_src: int, num_dst: int, indices: np.ndarray) -> np.ndarray:
    """Map frame indices of a ``num_dst``-frame stream onto a ``num_src``-frame stream of the same clip
    (e.g. video frames onto pose frames when the two counts differ): proportional, clamped."""
    idx = np.asarray(indices, dtype=np.int64)
    if num_src == num_dst:
        return idx
    mapped = np.floor((idx + 0.5) * num_src / num_dst).astype(np.int64)
    return np.clip(mapped, 0, num_src - 1)

