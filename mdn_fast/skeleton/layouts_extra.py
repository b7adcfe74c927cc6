"""The real-data keypoint layouts: ``coco18_hands28`` (MA-52 pose release), ``coco17`` (COCO) and
``miga22`` (iMiGUE / MiGA challenge release), registered through ``register_layout`` (data only).

"left"/"right" are the subject's, as in OpenPose. Hand points are *fingertips* in the order thumb,
index, middle, ring, little (OpenPose hand-model indices 4, 8, 12, 16, 20 of its 21 hand joints).

Sources and assumptions (say which is which):
- ``coco18_hands28`` — facts.md: "OpenPose COCO-18 plus 5 points per hand (28 keypoints)". The COCO-18
  body order is OpenPose's (Nose, Neck, RShoulder, RElbow, RWrist, LShoulder, LElbow, LWrist, RHip,
  RKnee, RAnkle, LHip, LKnee, LAnkle, REye, LEye, REar, LEar). The 10 hand points follow as the LEFT
  hand's five points (18–22) then the RIGHT hand's (23–27): the public MA-52 28-keypoint model
  configuration links 18–22 to COCO-18 joint 7 (LWrist) and 23–27 to joint 4 (RWrist) (facts.md).
  ASSUMED: the five points per hand are the fingertips thumb..little. ``hand_groups_swapped`` still
  checks a file's data against this order, and the readers swap the blocks only when the data say so.
- ``coco17`` — the COCO keypoint order (nose, eyes, ears, shoulders, elbows, wrists, hips, knees,
  ankles; left before right). No neck, so the face uses the extent rule on nose and eyes, and the head
  the extent of nose, eyes and ears.
- ``miga22`` — from the MiGA challenge baseline (github.com/mikecheninoulu/SMG,
  classification/iMiGUE/stgcn_imigue/tools/imigue_gendata.py, ``used_joints``): the first 8 BODY_25
  joints, then BODY_25's 15–18 (eyes, ears), then 5 points of one hand and 5 of the other. That code
  names BODY_25's joint 2 "ShoulderLeft" (its names mirror OpenPose's person-centric sides) and the
  hand blocks "RightFinger1-5" then "LeftFinger1-5"; the MiGA-2023 track-1 graph
  (github.com/VUT-HFUT/MiGA2023_Track1, pyskl/utils/graph.py, "new layout") joins 12–16 to joint 4
  (BODY_25 RWrist) and 17–21 to joint 7 (LWrist). We follow that: 12–16 right hand, 17–21 left hand
  (subject's sides). ASSUMED: the five points per hand are the fingertips thumb..little (the release
  says "Finger1..5"). The challenge baseline's own renderer joins the blocks the other way round, so
  ``IMiGUEDataset`` checks the data (``hand_groups_swapped``) rather than trusting either.
  No lower body (seated subjects; the release keeps the upper body only): K = 5.
"""
from __future__ import annotations

import numpy as np

from .layouts import Layout, get_layout, register_layout

#: Fingertips among OpenPose's 21 hand joints: thumb, index, middle, ring, little.
HAND_TIPS_21 = (4, 8, 12, 16, 20)
FINGER_NAMES = ("Thumb", "Index", "Middle", "Ring", "Little")

#: BODY_25 index of each COCO-18 joint (the two formats share OpenPose's joint semantics).
COCO18_FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
#: BODY_25 index of each of the first 12 ``miga22`` joints.
MIGA22_FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18)

_COCO18_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                 "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")
_R_TIPS = tuple(f"R{f}Tip" for f in FINGER_NAMES)
_L_TIPS = tuple(f"L{f}Tip" for f in FINGER_NAMES)

_HAND_ROLES = {"left_hand": ("l_shoulder", "l_elbow", "l_wrist"),
               "right_hand": ("r_shoulder", "r_elbow", "r_wrist")}

# ------------------------------------------------------------------------------------------ coco18_hands28
COCO18_HANDS28 = register_layout(Layout(
    name="coco18_hands28",
    joint_names=_COCO18_NAMES + _L_TIPS + _R_TIPS,       # left hand's points first (public config)
    entity_joints={
        "head": (0, 1, 14, 15, 16, 17),
        "face": (0, 14, 15, 16, 17),
        "left_hand": (5, 6, 7, 18, 19, 20, 21, 22),     # arm that places the hand + its fingertips
        "right_hand": (2, 3, 4, 23, 24, 25, 26, 27),
        "torso": (1, 2, 5, 8, 11),
        "lower_body": (8, 9, 10, 11, 12, 13),
    },
    roles={"nose": 0, "neck": 1, "r_shoulder": 2, "r_elbow": 3, "r_wrist": 4, "l_shoulder": 5,
           "l_elbow": 6, "l_wrist": 7, "r_hip": 8, "r_knee": 9, "r_ankle": 10, "l_hip": 11,
           "l_knee": 12, "l_ankle": 13, "r_eye": 14, "l_eye": 15, "r_ear": 16, "l_ear": 17},
    box_rules={"face": "openpose_face", "left_hand": "openpose_hand", "right_hand": "openpose_hand"},
    hand_arm_roles=_HAND_ROLES,
    skeleton=((1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
              (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
              (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13))
    + tuple((7, j) for j in range(18, 23)) + tuple((4, j) for j in range(23, 28)),
    # No mid-hip joint in COCO-18: centre = neck, else shoulders, else hips; scale from the widths.
    center_joints=((1,), (2, 5), (8, 11)),
    scale_pairs=((2, 5, 1.0 / 0.7), (8, 11, 1.0 / 0.4)),
))

# ------------------------------------------------------------------------------------------ coco17
COCO17 = register_layout(Layout(
    name="coco17",
    joint_names=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                 "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
                 "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
    entity_joints={
        "head": (0, 1, 2, 3, 4),
        "face": (0, 1, 2),              # no neck role: extent of nose and eyes (inside the head box)
        "left_hand": (5, 7, 9),
        "right_hand": (6, 8, 10),
        "torso": (5, 6, 11, 12),
        "lower_body": (11, 12, 13, 14, 15, 16),
    },
    roles={"nose": 0, "l_eye": 1, "r_eye": 2, "l_ear": 3, "r_ear": 4, "l_shoulder": 5, "r_shoulder": 6,
           "l_elbow": 7, "r_elbow": 8, "l_wrist": 9, "r_wrist": 10, "l_hip": 11, "r_hip": 12,
           "l_knee": 13, "r_knee": 14, "l_ankle": 15, "r_ankle": 16},
    box_rules={"left_hand": "openpose_hand", "right_hand": "openpose_hand"},
    hand_arm_roles=_HAND_ROLES,
    skeleton=((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
              (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16)),
    center_joints=((5, 6), (11, 12)),
    scale_pairs=((5, 6, 1.0 / 0.7), (11, 12, 1.0 / 0.4)),
))

# ------------------------------------------------------------------------------------------ miga22
MIGA22 = register_layout(Layout(
    name="miga22",
    joint_names=("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                 "REye", "LEye", "REar", "LEar") + _R_TIPS + _L_TIPS,
    entity_joints={
        "head": (0, 1, 8, 9, 10, 11),
        "face": (0, 8, 9, 10, 11),
        "left_hand": (5, 6, 7, 17, 18, 19, 20, 21),
        "right_hand": (2, 3, 4, 12, 13, 14, 15, 16),
        # No hips in the release: neck, shoulders and elbows (seated, the elbows hang at mid-torso,
        # so the box reaches below the shoulder line instead of being a thin strip).
        "torso": (1, 2, 5, 3, 6),
    },
    roles={"nose": 0, "neck": 1, "r_shoulder": 2, "r_elbow": 3, "r_wrist": 4, "l_shoulder": 5,
           "l_elbow": 6, "l_wrist": 7, "r_eye": 8, "l_eye": 9, "r_ear": 10, "l_ear": 11},
    box_rules={"face": "openpose_face", "left_hand": "openpose_hand", "right_hand": "openpose_hand"},
    hand_arm_roles=_HAND_ROLES,
    skeleton=((1, 0), (0, 8), (8, 10), (0, 9), (9, 11), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7))
    + tuple((4, j) for j in range(12, 17)) + tuple((7, j) for j in range(17, 22)),
    center_joints=((1,), (2, 5)),
    scale_pairs=((2, 5, 1.0 / 0.7),),
))

#: Layouts with per-hand point blocks: name -> (right block, left block).
HAND_BLOCKS = {
    "coco18_hands28": (tuple(range(23, 28)), tuple(range(18, 23))),
    "miga22": (tuple(range(12, 17)), tuple(range(17, 22))),
}


def hand_groups_swapped(keypoints, layout, conf_thr: float = 0.05) -> bool | None:
    """Do the data put the "right" hand block next to the *left* wrist?

    keypoints: ``[..., J, 3]`` (any number of clips/frames). Over frames where both wrists and the
    points are confident, compares the summed distance of the two blocks to their own wrists with the
    distance to the opposite wrists. Returns True (swapped), False (as the layout says) or None (no
    usable frame, or the layout has no hand blocks).
    """
    layout = get_layout(layout)
    if layout.name not in HAND_BLOCKS:
        return None
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, layout.num_joints, 3)
    rb, lb = (list(b) for b in HAND_BLOCKS[layout.name])
    rw, lw = kp[:, layout.role("r_wrist")], kp[:, layout.role("l_wrist")]

    def block_dist(block, wrist):
        pts = kp[:, block]
        ok = (pts[..., 2] > conf_thr) & (wrist[:, None, 2] > conf_thr)
        d = np.linalg.norm(pts[..., :2] - wrist[:, None, :2], axis=-1)
        return np.where(ok, d, 0.0).sum(1), ok.sum(1)

    d_rr, n_rr = block_dist(rb, rw)
    d_rl, n_rl = block_dist(rb, lw)
    d_ll, n_ll = block_dist(lb, lw)
    d_lr, n_lr = block_dist(lb, rw)
    use = (n_rr > 0) & (n_rl > 0) & (n_ll > 0) & (n_lr > 0)
    if not use.any():
        return None
    straight = (d_rr / np.maximum(n_rr, 1) + d_ll / np.maximum(n_ll, 1))[use]
    crossed = (d_rl / np.maximum(n_rl, 1) + d_lr / np.maximum(n_lr, 1))[use]
    # majority vote over frames: robust to a few frames with crossed arms
    return bool((crossed < straight).mean() > 0.5)


def swap_hand_groups(keypoints: np.ndarray, layout) -> np.ndarray:
    """Exchange the right and left hand blocks of ``[..., J, C]`` keypoints (a copy)."""
    layout = get_layout(layout)
    if layout.name not in HAND_BLOCKS:
        raise ValueError(f"layout {layout.name!r} has no hand blocks to swap; layouts with hand blocks: "
                         f"{sorted(HAND_BLOCKS)}")
    rb, lb = (list(b) for b in HAND_BLOCKS[layout.name])
    out = np.array(keypoints, copy=True)
    out[..., rb, :], out[..., lb, :] = keypoints[..., lb, :], keypoints[..., rb, :]
    return out
