"""dcnserve HTTP service: FastAPI app over a dynamic batcher and a detector backend.

The HTTP layer (this package except `model_backend`) never imports torch; it talks to the
`backend.Backend` interface.
"""
