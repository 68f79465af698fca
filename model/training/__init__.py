"""Training and evaluation on any labelled dataset: the dataset readers and checks (`datasets`:
COCO, Pascal VOC, YOLO, DeepForest CSV), the run's splits (`splits`), training crops and their
loader (`data`), the training loop and its command (`train`), the metrics log and curves
(`progress`), COCO-style evaluation per class (`evaluate`) and the release step that turns a
run into a shipped checkpoint (`release`); recipes (JSON) in `recipes/`.

May import every other `model` package; nothing below imports it.
"""
