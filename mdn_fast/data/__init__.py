"""Data: keypoint layouts, entity boxes and masks, pose features, and datasets (synthetic default)."""
from .boxes import check_keypoints, entity_boxes, entity_mask
from .layouts import BOX_RULES, ENTITIES, Layout, get_layout, layout_names, register_layout
from .pose_features import POSE_FEATURE_DIM, body_centre_scale, entity_joint_counts, pose_features
from .synthetic import BODY_NAMES, BODY_OF_CLASS, CLASS_NAMES, RHYTHM_PAIRS, SyntheticMicroActions
from . import layouts_extra  # noqa: F401  registers coco18_hands28, coco17, miga22 (data-only additions)
from . import openpose_json
from .imigue import IMiGUEDataset
from .ma52 import BODY_OF_ACTION, MA52Dataset, read_label_names, read_list
from .prediction_csv import read_prediction_csv, write_prediction_csv
from . import safe_pickle
from .check import check_dataset
from .validate import check_frame_values, check_keypoint_values

__all__ = [
    "ENTITIES", "BOX_RULES", "Layout", "register_layout", "get_layout", "layout_names",
    "check_keypoints", "entity_boxes", "entity_mask", "check_keypoint_values", "check_frame_values",
    "POSE_FEATURE_DIM", "pose_features", "entity_joint_counts", "body_centre_scale",
    "SyntheticMicroActions", "CLASS_NAMES", "BODY_NAMES", "BODY_OF_CLASS", "RHYTHM_PAIRS",
    "MA52Dataset", "IMiGUEDataset", "read_list", "read_label_names", "BODY_OF_ACTION",
    "write_prediction_csv", "read_prediction_csv", "openpose_json", "safe_pickle", "check_dataset",
]
