"""Video data: PyAV I/O, synthetic and natural clip generators, file datasets, mixing.

Importing this package loads only numpy, torch and the standard library (PyAV and Pillow are
imported when first used).

    from larp_lab.data import SyntheticVideos, VideoFolder, MixedDataset, collate_videos
"""

from .digits import DIGIT_NAMES, NUM_DIGIT_CLASSES, MovingDigits, digit_images
from .folder import VIDEO_EXTENSIONS, SkippedVideoWarning, VideoCSV, VideoFolder, find_videos
from .mix import MixedDataset, collate_videos
from .natural import BUNDLED_PHOTOS, PhotoPans, VideoWindows, bundled_photos
from .synthetic import CLASS_NAMES, NUM_CLASSES, SyntheticVideos, render_clip
from .video import (
    VideoError,
    VideoInfo,
    VideoLimits,
    count_frames,
    probe_video,
    read_video,
    save_frame_grid,
    side_by_side,
    to_uint8_frames,
    video_grid,
    write_video,
)

__all__ = [
    "BUNDLED_PHOTOS",
    "CLASS_NAMES",
    "DIGIT_NAMES",
    "NUM_CLASSES",
    "VIDEO_EXTENSIONS",
    "MixedDataset",
    "MovingDigits",
    "NUM_DIGIT_CLASSES",
    "PhotoPans",
    "SkippedVideoWarning",
    "SyntheticVideos",
    "VideoCSV",
    "VideoError",
    "VideoFolder",
    "VideoInfo",
    "VideoLimits",
    "VideoWindows",
    "bundled_photos",
    "collate_videos",
    "count_frames",
    "digit_images",
    "find_videos",
    "probe_video",
    "read_video",
    "render_clip",
    "save_frame_grid",
    "side_by_side",
    "to_uint8_frames",
    "video_grid",
    "write_video",
]
