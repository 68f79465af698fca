"""Training and evaluation: the annotated data and training crops (`data`), the training loop
(`train`), COCO-style evaluation (`evaluate`) and the release step that turns a run into a
shipped checkpoint (`release`); recipes (JSON) in `recipes/`.

May import every other `model` package; nothing below imports it.
"""
