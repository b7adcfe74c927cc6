"""Deterministic synthetic micro-action clips: the built-in default data (no downloads).

Each clip is one subject in BODY_25 keypoints (``[T, 25, 3]``: x, y in pixels of an ``image_size`` square
frame, confidence), doing one of ``CLASS_NAMES``. Classes come in the two kinds Micro-DualNet is about:
*position-defined* (a held configuration: head tilted, arms crossed, hands on hips, hand on chest, hand
at the face) and *motion-defined* (a rhythm: nodding, head shaking, leg shaking, shrugging, rubbing the
face, tapping the thigh slowly or quickly). Two pairs differ only in their temporal pattern, so no single
frame separates them: ``touching_face`` / ``rubbing_face`` (same hand position, still vs oscillating)
and ``tapping_thigh_slow`` / ``tapping_thigh_fast`` (same motion, period 6–10 vs 2.2–3 frames, random
phase). Body labels follow MA-52's coarse groups (``BODY_NAMES``, ``BODY_OF_CLASS``).

Per clip: standing or seated, body proportions, size, position and lean, which hand acts, idle head
pose and breathing, per-joint Gaussian noise (``noise`` torso lengths), random low confidences, joints
outside the frame and randomly dropped joints set to ``(0, 0, 0)`` (``drop_prob`` per joint and frame),
and with probability ``entity_drop_prob`` one entity dropped for 1–3 frames (an occlusion).

Determinism: everything comes from ``numpy.random.SeedSequence(seed, spawn_key=(split,))``; the same
arguments give bit-identical data on a machine; ``"train"`` and ``"val"`` use different streams.
The whole split is generated at construction, vectorised (thousands of clips in well under a second).
With ``render=True`` an item also carries stick-figure frames drawn with numpy along the layout's
skeleton (rendered on first access, cached as uint8 when ``cache=True``: ``T * S * S * 3`` bytes a clip).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..inputs import IMAGENET_MEAN, IMAGENET_STD
from ..skeleton.layouts import BODY25, ENTITIES

CLASS_NAMES = (
    "shrugging",            # 0  body        motion (a single raise and lower)
    "nodding",              # 1  head        motion
    "head_shaking",         # 2  head        motion
    "head_tilted",          # 3  head        position
    "arms_crossed",         # 4  upper limb  position
    "leg_shaking",          # 5  lower limb  motion
    "hands_on_hips",        # 6  body-hand   position
    "hand_on_chest",        # 7  body-hand   position
    "touching_face",        # 8  head-hand   position   } same place:
    "rubbing_face",         # 9  head-hand   motion     } still vs oscillating
    "tapping_thigh_slow",   # 10 leg-hand    motion     } same motion:
    "tapping_thigh_fast",   # 11 leg-hand    motion     } slow vs fast rhythm
)
BODY_NAMES = ("body", "head", "upper_limb", "lower_limb", "body_hand", "head_hand", "leg_hand")
BODY_OF_CLASS = (0, 1, 1, 1, 2, 3, 4, 4, 5, 5, 6, 6)
#: Classes only a temporal model can tell apart (pairs with the same single-frame distribution).
RHYTHM_PAIRS = ((8, 9), (10, 11))

_SPLITS = {"train": 0, "val": 1}
_R = BODY25.roles
_NUM_JOINTS = BODY25.num_joints

# Body coordinates: units of torso length (neck to mid-hip = 1), neck at the origin, y down; the
# subject faces the camera, so their right side is at negative x.
_STANDING = np.zeros((_NUM_JOINTS, 2))
_SEATED = np.zeros((_NUM_JOINTS, 2))
_COMMON = {
    "neck": (0, 0), "r_shoulder": (-0.36, 0.03), "l_shoulder": (0.36, 0.03), "mid_hip": (0, 1.0),
    "r_hip": (-0.2, 1.0), "l_hip": (0.2, 1.0), "r_elbow": (-0.42, 0.52), "l_elbow": (0.42, 0.52),
}
_LEGS_STANDING = {
    "r_wrist": (-0.46, 0.97), "l_wrist": (0.46, 0.97),
    "r_knee": (-0.21, 1.72), "l_knee": (0.21, 1.72), "r_ankle": (-0.21, 2.45), "l_ankle": (0.21, 2.45),
    "r_big_toe": (-0.27, 2.58), "r_small_toe": (-0.33, 2.56), "r_heel": (-0.2, 2.5),
    "l_big_toe": (0.27, 2.58), "l_small_toe": (0.33, 2.56), "l_heel": (0.2, 2.5),
}
_LEGS_SEATED = {  # thighs towards the camera: knees just below the hips, hands on the armrests
    "r_wrist": (-0.5, 0.92), "l_wrist": (0.5, 0.92),
    "r_knee": (-0.26, 1.2), "l_knee": (0.26, 1.2), "r_ankle": (-0.24, 1.85), "l_ankle": (0.24, 1.85),
    "r_big_toe": (-0.3, 1.97), "r_small_toe": (-0.36, 1.95), "r_heel": (-0.23, 1.9),
    "l_big_toe": (0.3, 1.97), "l_small_toe": (0.36, 1.95), "l_heel": (0.23, 1.9),
}
for _tmpl, _legs in ((_STANDING, _LEGS_STANDING), (_SEATED, _LEGS_SEATED)):
    for _name, _xy in {**_COMMON, **_legs}.items():
        _tmpl[_R[_name]] = _xy

# Head model (3-D, relative to the neck; z towards the camera), rotated then projected orthographically.
_HEAD_JOINTS = np.array([_R["nose"], _R["r_eye"], _R["l_eye"], _R["r_ear"], _R["l_ear"]])
_HEAD_POINTS = np.array([
    (0.0, -0.36, 0.22), (-0.065, -0.45, 0.18), (0.065, -0.45, 0.18), (-0.14, -0.42, 0.0), (0.14, -0.42, 0.0),
])  # the face lies well in front of the neck, so a nod moves the nose visibly in a frontal view

# Side index 0 = right, 1 = left; arm targets are written for the right side and mirrored in x.
_SHOULDER = np.array([_R["r_shoulder"], _R["l_shoulder"]])
_ELBOW = np.array([_R["r_elbow"], _R["l_elbow"]])
_WRIST = np.array([_R["r_wrist"], _R["l_wrist"]])
_HIP = np.array([_R["r_hip"], _R["l_hip"]])
_KNEE = np.array([_R["r_knee"], _R["l_knee"]])
_LOWER_LEG = np.array([[_R["r_ankle"], _R["r_big_toe"], _R["r_small_toe"], _R["r_heel"]],
                       [_R["l_ankle"], _R["l_big_toe"], _R["l_small_toe"], _R["l_heel"]]])
_MIRROR = np.array([1.0, -1.0])

# Colours of the rendered skeleton edges, by body part.
_PART_COLOURS = {"head": (255, 220, 40), "r_arm": (255, 70, 70), "l_arm": (70, 230, 70),
                 "trunk": (70, 150, 255), "r_leg": (240, 110, 240), "l_leg": (90, 240, 240)}
_EDGE_PART = ["head"] * 5 + ["r_arm"] * 3 + ["l_arm"] * 3 + ["trunk"] * 3 + ["r_leg"] * 5 + ["l_leg"] * 5
assert len(_EDGE_PART) == len(BODY25.skeleton)
_EDGE_COLOURS = np.array([_PART_COLOURS[p] for p in _EDGE_PART], dtype=np.uint8)


def _osc(rng, n, T, period_lo, period_hi):
    """sin(2 pi t / period + phase), [n, T], with a random period and phase per clip."""
    period = rng.uniform(period_lo, period_hi, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    t = np.arange(T)
    return np.sin(2 * np.pi * t[None, :] / period[:, None] + phase[:, None])


def _rotation(yaw, pitch, roll):
    """[..., 3, 3] = Rz(roll) @ Rx(pitch) @ Ry(yaw)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    o, z = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack([np.stack([cy, z, sy], -1), np.stack([z, o, z], -1), np.stack([-sy, z, cy], -1)], -2)
    rx = np.stack([np.stack([o, z, z], -1), np.stack([z, cp, -sp], -1), np.stack([z, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, z], -1), np.stack([sr, cr, z], -1), np.stack([z, z, o], -1)], -2)
    return rz @ rx @ ry


def generate_clips(n: int, T: int, rng: np.random.Generator, image_size: int = 64, noise: float = 0.02,
                   drop_prob: float = 0.05, entity_drop_prob: float = 0.15):
    """Generate ``n`` clips: ``(keypoints float32 [n, T, 25, 3], labels int64 [n])``.

    Every random draw is made for all clips regardless of their class, so the stream is consumed the
    same way whatever the labels are.
    """
    C = len(CLASS_NAMES)
    labels = rng.permutation(np.arange(n) % C)
    one = {c: labels == c for c in range(C)}
    t = np.arange(T)
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n,) + shape)  # noqa: E731

    seated = rng.random(n) < 0.5
    pose = np.where(seated[:, None, None], _SEATED, _STANDING)             # [n, J, 2]
    pose = pose * np.stack([u(0.9, 1.1), u(0.93, 1.07)], -1)[:, None, :]   # proportions
    pose = np.repeat(pose[:, None], T, axis=1)                            # [n, T, J, 2]
    active = (rng.random(n) < 0.5).astype(int)                             # acting hand: 0 right, 1 left
    idx = np.arange(n)

    # Head: idle pose + slow idle motion, then the head classes.
    yaw = rng.normal(0, 0.08, (n, 1)) + 0.03 * _osc(rng, n, T, 8, 16)
    pitch = rng.normal(0, 0.08, (n, 1)) + 0.03 * _osc(rng, n, T, 8, 16)
    roll = rng.normal(0, 0.06, (n, 1)) + 0.02 * _osc(rng, n, T, 8, 16)
    nod, shake = u(0.25, 0.4)[:, None] * _osc(rng, n, T, 3, 5.5), u(0.35, 0.6)[:, None] * _osc(rng, n, T, 3, 5.5)
    tilt = u(0.25, 0.45) * np.where(rng.random(n) < 0.5, -1.0, 1.0)
    pitch = pitch + one[1][:, None] * nod
    yaw = yaw + one[2][:, None] * shake
    roll = roll + one[3][:, None] * tilt[:, None]
    rot = _rotation(yaw, pitch, roll)                                      # [n, T, 3, 3]
    head = np.einsum("ntij,pj->ntpi", rot, _HEAD_POINTS)                   # [n, T, 5, 3]
    pose[:, :, _HEAD_JOINTS] = head[..., :2]

    # Shoulders: breathing for everyone, one shrug (raise and lower) for class 0.
    breath = 0.012 * _osc(rng, n, T, 6, 12)
    dur, amp = u(3, 6), u(0.1, 0.18)
    start = rng.uniform(0, 1, n) * (T - 1 - dur).clip(min=0)
    phase = (t[None, :] - start[:, None]) / dur[:, None]
    shrug = one[0][:, None] * amp[:, None] * np.where((phase > 0) & (phase < 1), np.sin(np.pi * phase), 0.0)
    lift = breath + shrug                                                  # [n, T], upwards

    # Arms [n, side, T, 2]: rest, then the class's configuration, then per-clip jitter and motion.
    elbow = pose[:, :, _ELBOW].transpose(0, 2, 1, 3).copy()
    wrist = pose[:, :, _WRIST].transpose(0, 2, 1, 3).copy()
    hip = pose[:, :, _HIP].transpose(0, 2, 1, 3)
    knee = pose[:, :, _KNEE].transpose(0, 2, 1, 3)
    shoulder = pose[:, :, _SHOULDER].transpose(0, 2, 1, 3)
    mir = np.array([[1.0, 1.0], [-1.0, 1.0]])                              # [side, xy] x-mirror

    def put(mask, sides, e_xy, w_xy):
        """Place the given sides (``"both"`` or ``"active"``) of clips in ``mask`` at right-side targets
        (a constant (x, y), or a function of (mask, side) giving [n_mask, T, 2])."""
        for s in (0, 1):
            m = mask & (True if sides == "both" else active == s)
            wrist[m, s] = w_xy(m, s) if callable(w_xy) else np.asarray(w_xy) * mir[s]
            if e_xy is not None:   # after the wrist: an elbow rule may read it
                elbow[m, s] = e_xy(m, s) if callable(e_xy) else np.asarray(e_xy) * mir[s]

    put(one[4], "both", (-0.38, 0.55), (0.22, 0.44))                       # arms crossed
    put(one[6], "both", (-0.62, 0.6), lambda m, s: hip[m, s] + np.array([-0.1, -0.02]) * mir[s])
    put(one[7], "active", (-0.3, 0.7), (0.02, 0.35))                       # hand on chest
    put(one[8] | one[9], "active", (-0.3, 0.35), (-0.12, -0.2))            # hand at the face
    tap_cls = one[10] | one[11]
    # Hand on the thigh, elbow out to the side of the shoulder–wrist midpoint.
    put(tap_cls, "active",
        lambda m, s: 0.5 * (shoulder[m, s] + wrist[m, s]) + np.array([-0.14, 0.0]) * mir[s],
        lambda m, s: 0.55 * hip[m, s] + 0.45 * knee[m, s] + np.array([-0.05, -0.03]) * mir[s])
    elbow += u(-0.06, 0.06, 2, 1, 2)
    wrist += u(-0.06, 0.06, 2, 1, 2)

    # Hand motion of the acting hand: rubbing (small fast circle-ish), tapping (lift and drop).
    rub_dir = rng.normal(size=(n, 2))
    rub_dir /= np.linalg.norm(rub_dir, axis=-1, keepdims=True)
    rub = (one[9] * u(0.06, 0.1))[:, None, None] * _osc(rng, n, T, 2, 4)[..., None] * rub_dir[:, None, :]
    tap_amp = u(0.08, 0.14)
    slow, fast = _osc(rng, n, T, 6, 10), _osc(rng, n, T, 2.2, 3)
    tap = tap_amp[:, None] * 0.5 * (1 + np.where(one[10][:, None], slow, fast)) * tap_cls[:, None]
    hand_move = rub + np.stack([np.zeros_like(tap), -tap], -1)              # [n, T, 2]
    wrist[idx, active] += hand_move
    elbow[idx, active] += 0.4 * hand_move

    pose[:, :, _ELBOW] = elbow.transpose(0, 2, 1, 3)
    pose[:, :, _WRIST] = wrist.transpose(0, 2, 1, 3)
    up = np.zeros((n, T, _NUM_JOINTS))
    up[:, :, _SHOULDER] = 1.0
    up[:, :, _ELBOW] = 0.8
    up[:, :, _WRIST] = np.where(one[4][:, None, None] | one[6][:, None, None], 0.7, 0.5)
    up[:, :, _HEAD_JOINTS] = 0.3
    pose[..., 1] -= up * lift[:, :, None]

    # Legs: per-clip knee offsets for everyone; leg shaking: lateral when standing, a bounce when seated.
    pose[:, :, _KNEE] += u(-0.04, 0.04, 1, 2, 2)
    shake_amp = (one[5] * u(0.05, 0.09))[:, None] * _osc(rng, n, T, 2, 3.5)      # [n, T]
    legs = np.stack([np.ones(n), rng.random(n) < 0.5], -1)                         # which legs shake
    dxy = np.where(seated[:, None, None], np.array([0.0, 1.0]), np.array([1.0, 0.0]))  # [n, 1, 2]
    for s in (0, 1):
        d = (legs[:, s, None, None] * shake_amp[..., None]) * dxy                  # [n, T, 2]
        pose[:, :, _KNEE[s]] += d
        pose[:, :, _LOWER_LEG[s]] += 0.3 * d[:, :, None]

    # Whole body: lean and sway about the mid-hip, size, position; pixels.
    S = float(image_size)
    lean = rng.normal(0, 0.05, (n, 1)) + 0.02 * _osc(rng, n, T, 8, 16)
    c, s_ = np.cos(lean)[..., None], np.sin(lean)[..., None]
    rel = pose - pose[:, :, _R["mid_hip"]][:, :, None]
    pose = pose[:, :, _R["mid_hip"]][:, :, None] + np.stack(
        [c * rel[..., 0] - s_ * rel[..., 1], s_ * rel[..., 0] + c * rel[..., 1]], -1)
    scale = S * u(0.15, 0.21)
    origin = np.stack([S * u(0.38, 0.62), 0.55 * scale + S * u(0.02, 0.12)], -1)
    xy = origin[:, None, None, :] + scale[:, None, None, None] * pose
    xy = xy + rng.normal(0, 1, xy.shape) * (noise * scale)[:, None, None, None]

    # Confidences: mostly high, a few low; ears turned away from the camera fade; off-frame and
    # randomly dropped joints become (0, 0, 0).
    conf = rng.uniform(0.55, 1.0, (n, T, _NUM_JOINTS))
    low = rng.random((n, T, _NUM_JOINTS)) < 0.03
    conf = np.where(low, rng.uniform(0.05, 0.3, conf.shape), conf)
    conf[:, :, _HEAD_JOINTS] *= np.where(head[..., 2] < -0.06, 0.2, 1.0)
    keep = (xy >= 0).all(-1) & (xy <= S - 1).all(-1) & (rng.random(conf.shape) >= drop_prob)
    ent_drop = rng.random(n) < entity_drop_prob
    ent_which = rng.integers(0, len(ENTITIES), n)
    run_len = rng.integers(1, 4, n)
    run_start = (rng.random(n) * (T - run_len + 1)).astype(int).clip(min=0)
    for k, e in enumerate(ENTITIES):
        m = ent_drop & (ent_which == k)
        frames = (t[None, :] >= run_start[m, None]) & (t[None, :] < (run_start + run_len)[m, None])
        sel = keep[m]
        sel[:, :, list(BODY25.entity_joints[e])] &= ~frames[:, :, None]
        keep[m] = sel
    kp = np.concatenate([xy, conf[..., None]], -1) * keep[..., None]
    return kp.astype(np.float32), labels.astype(np.int64)


def render_clip(keypoints: np.ndarray, image_size: int, rng: np.random.Generator, conf_thr: float = 0.25):
    """Stick figure of ``keypoints [T, 25, 3]`` -> uint8 ``[T, S, S, 3]``: a grey background with a little
    noise, coloured lines along ``BODY25.skeleton`` between confident joints."""
    T = keypoints.shape[0]
    S = int(image_size)
    bg = int(rng.integers(40, 110))
    img = rng.integers(bg - 8, bg + 9, (T, S, S, 3), dtype=np.uint8)      # grey with a little noise
    edges = np.array(BODY25.skeleton)                                       # [E, 2]
    a, b = keypoints[:, edges[:, 0]], keypoints[:, edges[:, 1]]             # [T, E, 3]
    ok = (a[..., 2] > conf_thr) & (b[..., 2] > conf_thr)
    # Enough samples per edge for the longest drawn edge to leave no gaps (spacing <= 0.5 px).
    length = np.linalg.norm(b[..., :2] - a[..., :2], axis=-1)
    P = int(2 * np.ceil(min(length[ok].max(initial=0.0), 2.0 * S))) + 2
    u = np.linspace(0.0, 1.0, P)[None, None, :, None]
    pts = a[:, :, None, :2] + (b[:, :, None, :2] - a[:, :, None, :2]) * u  # [T, E, P, 2]
    tt, ee, _ = np.nonzero(np.broadcast_to(ok[:, :, None], (T, edges.shape[0], P)))
    pts = np.rint(pts[ok].reshape(-1, 2)).astype(np.int64)
    colour = _EDGE_COLOURS[ee]
    thick = max(1, S // 48)
    for dx in range(thick):
        for dy in range(thick):
            x, y = pts[:, 0] + dx, pts[:, 1] + dy
            inside = (x >= 0) & (x < S) & (y >= 0) & (y < S)
            img[tt[inside], y[inside], x[inside]] = colour[inside]
    return img


class SyntheticMicroActions(Dataset):
    """Synthetic micro-action clips (see the module docstring).

    Item: ``dict(keypoints float32 [T, 25, 3], label int, body_label int)`` plus ``frames float32
    [T, 3, S, S]`` (ImageNet-normalised stick figures) when ``render=True``. Whole-split tensors are
    available as ``.keypoints [N, T, 25, 3]``, ``.labels [N]``, ``.body_labels [N]``.
    """

    layout = "body25"
    class_names = CLASS_NAMES
    body_names = BODY_NAMES
    num_classes = len(CLASS_NAMES)
    num_body_classes = len(BODY_NAMES)

    def __init__(self, num_clips: int = 1200, num_frames: int = 8, seed: int = 0, split: str = "train",
                 render: bool = False, image_size: int = 64, noise: float = 0.02, drop_prob: float = 0.05,
                 entity_drop_prob: float = 0.15, cache: bool = True):
        if split not in _SPLITS:
            raise ValueError(f"split: expected one of {tuple(_SPLITS)}, got {split!r}")
        if int(num_clips) != num_clips or num_clips < 1:
            raise ValueError(f"num_clips: expected an integer >= 1, got {num_clips!r}")
        if int(num_frames) != num_frames or num_frames < 2:
            raise ValueError(f"num_frames: expected an integer >= 2 (motion needs two frames), got {num_frames!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        if int(image_size) != image_size or image_size < 16:
            raise ValueError(f"image_size: expected an integer >= 16 pixels, got {image_size!r}")
        if not 0 <= noise < 1:
            raise ValueError(f"noise: expected a joint noise in torso lengths in [0, 1), got {noise!r}")
        for name, p in (("drop_prob", drop_prob), ("entity_drop_prob", entity_drop_prob)):
            if not 0 <= p < 1:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {p!r}")
        self.num_frames, self.seed, self.split = int(num_frames), int(seed), split
        self.render, self.image_size, self.cache = bool(render), int(image_size), bool(cache)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_SPLITS[split],)))
        kp, labels = generate_clips(int(num_clips), self.num_frames, rng, self.image_size, noise, drop_prob,
                                    entity_drop_prob)
        self.keypoints = torch.from_numpy(kp)
        self.labels = torch.from_numpy(labels)
        self.body_labels = torch.tensor(BODY_OF_CLASS, dtype=torch.int64)[self.labels]
        self._frames: dict[int, np.ndarray] = {}
        # uint8 -> normalised float lookup table, one row per channel: [3, 256].
        self._lut = ((np.arange(256, dtype=np.float32)[None, :] / 255 - np.array(IMAGENET_MEAN, np.float32)[:, None])
                     / np.array(IMAGENET_STD, np.float32)[:, None]).astype(np.float32)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def frames_uint8(self, index: int) -> np.ndarray:
        """Rendered clip ``index`` as uint8 ``[T, S, S, 3]`` (deterministic per index; cached if asked)."""
        img = self._frames.get(index)
        if img is None:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_SPLITS[self.split], 1, index)))
            img = render_clip(self.keypoints[index].numpy(), self.image_size, rng)
            if self.cache:
                self._frames[index] = img
        return img

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index = int(index) % len(self)
        item = {"keypoints": self.keypoints[index], "label": int(self.labels[index]),
                "body_label": int(self.body_labels[index])}
        if self.render:
            img = self.frames_uint8(index).transpose(0, 3, 1, 2)               # [T, 3, S, S] view
            frames = np.empty(img.shape, np.float32)
            for c in range(3):   # a table lookup per channel: several times faster than float math here
                np.take(self._lut[c], img[:, c], out=frames[:, c])
            item["frames"] = torch.from_numpy(frames)
        return item
