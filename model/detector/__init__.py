"""The deformable Faster R-CNN detectors: builders per named configuration (`builders`), the
name -> builder table and checkpoint loading (`zoo`), the checkpoint format (`checkpoint`:
`<stem>.safetensors` + `<stem>.json` carrying classes, preprocessing and tiling), weight import
from other projects (`convert`) and the offset probes behind `/offsets` (`probe`).

Imports `model.ops` only. `checkpoint` imports no torch at module level.
"""
