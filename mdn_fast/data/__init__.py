"""Data: the dataset readers (synthetic default, MA-52, iMiGUE), their checks and the prediction CSV.

The skeleton geometry they share with the model (layouts, boxes, pose features, value checks) lives in
``mdn_fast.skeleton``; its names are re-exported here, where the first releases had them.
"""
from ..skeleton import (BOX_RULES, ENTITIES, POSE_FEATURE_DIM, Layout, body_centre_scale, check_frame_values,
                        check_keypoint_values, check_keypoints, entity_boxes, entity_joint_counts, entity_mask,
                        get_layout, layout_names, pose_features, register_layout)
from .synthetic import BODY_NAMES, BODY_OF_CLASS, CLASS_NAMES, RHYTHM_PAIRS, SyntheticMicroActions
from . import openpose_json
from .imigue import IMiGUEDataset
from .ma52 import BODY_OF_ACTION, MA52Dataset, read_label_names, read_list
from .prediction_csv import read_prediction_csv, write_prediction_csv
from . import safe_pickle
from .check import check_dataset

__all__ = [
    "ENTITIES", "BOX_RULES", "Layout", "register_layout", "get_layout", "layout_names",
    "check_keypoints", "entity_boxes", "entity_mask", "check_keypoint_values", "check_frame_values",
    "POSE_FEATURE_DIM", "pose_features", "entity_joint_counts", "body_centre_scale",
    "SyntheticMicroActions", "CLASS_NAMES", "BODY_NAMES", "BODY_OF_CLASS", "RHYTHM_PAIRS",
    "MA52Dataset", "IMiGUEDataset", "read_list", "read_label_names", "BODY_OF_ACTION",
    "write_prediction_csv", "read_prediction_csv", "openpose_json", "safe_pickle", "check_dataset",
]
