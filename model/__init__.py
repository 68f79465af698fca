"""dcnserve model package: the dcn operators (`model.ops`), layers (`model.layers`)."""
from . import ops  # noqa: F401  (loads the operator library and its shape functions)
