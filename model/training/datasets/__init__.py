"""Annotated datasets behind one interface: every format is read into a DetectionDataset of
Samples (`record`), checked (`checks`: missing images, boxes outside or of zero size, duplicate
ids, empty splits, classes without boxes, each counted in the dataset's Report) and opened by
path with its format detected (`formats.open_dataset`). One reader module per format: `coco`,
`voc`, `yolo`, `csv_boxes` (DeepForest's CSV).

    dataset = open_dataset("my_data/instances.json")
    image, target = dataset[0]      # [H, W, 3] uint8; {"boxes" [K, 4], "labels" [K], ...}

Imports no other `model` package (and no torch).
"""
from .checks import check_trainable
from .formats import (
           as_single_class,
           deepforest_data_dir,
           open_dataset,
           resolve,
           validation_path,
           with_classes,
)
from .record import DatasetError, DetectionDataset, Report, Sample, read_image

__all__ = ["open_dataset", "resolve", "validation_path", "with_classes", "as_single_class",
           "check_trainable",
           "deepforest_data_dir", "DatasetError", "DetectionDataset", "Report", "Sample",
           "read_image"]
