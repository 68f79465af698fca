"""dcnserve HTTP service: FastAPI app over a dynamic batcher and a detector backend.

The HTTP layer (this package except `model_backend`) never imports the model package or torch;
it talks to the `backend.Backend` interface. With the ONNX Runtime backend the whole process runs
without torch.
"""

VERSION = "0.1.0"
