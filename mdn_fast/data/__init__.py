"""Data: the dataset readers (synthetic default, MA-52, iMiGUE), their checks and the prediction CSV.

The skeleton geometry they share with the model (layouts, boxes, pose features, value checks) lives in
``mdn_fast.skeleton``; its names are re-exported here, where the first releases had them.
"""
from .. import skeleton as _skeleton
from ..skeleton import *  # noqa: F401,F403  exactly skeleton.__all__, so the two lists cannot drift
from .synthetic import BODY_NAMES, BODY_OF_CLASS, CLASS_NAMES, RHYTHM_PAIRS, SyntheticMicroActions
from . import openpose_json
from .imigue import IMiGUEDataset
from .ma52 import BODY_OF_ACTION, MA52Dataset, read_label_names, read_list
from .prediction_csv import read_prediction_csv, write_prediction_csv
from . import safe_pickle
from .check import check_dataset

__all__ = [
    *_skeleton.__all__,
    "SyntheticMicroActions", "CLASS_NAMES", "BODY_NAMES", "BODY_OF_CLASS", "RHYTHM_PAIRS",
    "MA52Dataset", "IMiGUEDataset", "read_list", "read_label_names", "BODY_OF_ACTION",
    "write_prediction_csv", "read_prediction_csv", "openpose_json", "safe_pickle", "check_dataset",
]
