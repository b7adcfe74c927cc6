"""Model geometry of a skeleton: keypoint layouts, entity boxes and masks, pose features, value checks.

What ``mdn_fast.nn`` needs from the keypoints, apart from the dataset readers (``mdn_fast.data``), so
``import mdn_fast`` loads no reader, video decoder or data check.

- ``layouts``: ``Layout``, ``register_layout`` / ``get_layout``, the entities and box rules, ``body25``.
- ``layouts_extra``: the real-data layouts ``coco18_hands28`` (MA-52), ``coco17``, ``miga22`` (iMiGUE),
  and the hand-block order check the readers use. Imported here so ``MicroDualNet(layout=...)`` finds
  them without importing a reader.
- ``boxes``: ``entity_boxes`` / ``entity_mask`` from keypoints; ``pose_features``: the pose path's input.
- ``validate``: non-finite keypoint / frame checks that name their source.
"""
from . import layouts_extra  # noqa: F401  registers coco18_hands28, coco17, miga22
from .boxes import check_keypoints, entity_boxes, entity_mask
from .layouts import BOX_RULES, ENTITIES, Layout, get_layout, layout_names, register_layout
from .pose_features import POSE_FEATURE_DIM, body_centre_scale, entity_joint_counts, pose_features
from .validate import check_frame_values, check_keypoint_values

__all__ = ["ENTITIES", "BOX_RULES", "Layout", "register_layout", "get_layout", "layout_names", "check_keypoints",
           "entity_boxes", "entity_mask", "check_keypoint_values", "check_frame_values", "POSE_FEATURE_DIM",
           "pose_features", "entity_joint_counts", "body_centre_scale"]
