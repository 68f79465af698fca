"""dcnserve model package: the dcn operators (`model.ops`), layers (`model.layers`), the detector
(`model.detector`), runtimes (`model.runtimes`) and tiled inference (`model.tiling`).

Importing the package loads nothing: `model.ops` loads the operator library when imported."""
