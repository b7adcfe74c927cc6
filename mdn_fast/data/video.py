"""The RGB input pipeline, one name space: TSN-style frame sampling (``video_sampling``), decoding with
PyAV (``video_decode``) and the geometric transforms shared by frames and keypoints
(``video_transforms``). Every name is defined in one of those three and re-exported here.

Pipeline (MANet / TSN, as used for MA-52):
1. ``tsn_sample_indices``: split the clip into ``num_segments`` equal segments and take one frame per
   segment — a random offset inside the segment when training, the segment centre in evaluation.
2. ``decode_frames`` / ``decode_sampled``: decode only those frames -> uint8 ``[T, H, W, 3]`` (RGB).
   Only what they need reaches the H.264 decoder (GOPs without a sampled frame and unsampled
   non-reference pictures are skipped), and only the sampled frames are converted to RGB.
3. A ``CropPlan`` (short side -> 256, then a crop, then resize to 224x224):
   training: multi-scale crop (TSN/TSM ``GroupMultiScaleCrop``: side lengths ``base * s`` for
   s in (1, .875, .75, .66) with base = the short side, width/height scale indices at most one step
   apart, the crop placed at one of 13 fixed positions), then resized to 224;
   evaluation: centre 224 crop.
4. ``apply_to_frames``: the crop taken in the frames' own pixels (``CropPlan.source_box``), one
   antialiased resize of it to 224 on uint8, then one float conversion and the ImageNet mean/std (the
   previous whole-frame float pipeline is the benchmark's baseline: ``benchmarks/_previous_pipeline.py``).
   ``apply_to_keypoints``: the same geometric map applied to ``[T, J, 3]`` keypoints.
   Frames of a prepared (smaller) twin of the video: ``plan.for_frames(h, w)``; keypoints stay in the
   original video's pixels (``mdn_fast.data.prepare_videos``).

Coordinate convention (frames and keypoints agree on it): a keypoint ``(x, y)`` is in pixel-index
units of its frame, pixel ``i`` covering ``[i - .5, i + .5)``. A resize by factor ``s`` (the
``align_corners=False`` convention of ``torch.nn.functional.interpolate``) maps ``x -> (x + .5) s - .5``;
a crop at ``x0`` maps ``x -> x - x0``. Joints with confidence 0 (missing) stay ``(0, 0, 0)``. Joints that
fall outside the crop keep their confidence; their coordinates may lie outside ``[0, 224)``.
"""
from __future__ import annotations

from .video_decode import (ClipReadError, VideoReadError, count_frames, decode_frames, decode_sampled, open_video,
                           video_frame_size, video_info, video_stream)
from .video_sampling import frame_map, tsn_sample_indices
from .video_transforms import (IMAGENET_MEAN, IMAGENET_STD, MULTISCALE_SCALES, CropPlan, apply_to_frames,
                               apply_to_keypoints, crop_resize_uint8, make_crop_plan, short_side_size)

__all__ = ["ClipReadError", "VideoReadError", "count_frames", "decode_frames", "decode_sampled", "open_video",
           "video_frame_size", "video_info", "video_stream", "frame_map", "tsn_sample_indices", "IMAGENET_MEAN",
           "IMAGENET_STD", "MULTISCALE_SCALES", "CropPlan", "apply_to_frames", "apply_to_keypoints",
           "crop_resize_uint8", "make_crop_plan", "short_side_size"]
