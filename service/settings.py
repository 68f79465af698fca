"""Typed service settings: environment variables `DCN_<NAME>`, overridden by command-line flags
`--<name>` (underscores as dashes)."""
import argparse
from typing import List, Literal, Optional

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DCN_", extra="ignore")

    host: str = Field("127.0.0.1", description="interface to bind (0.0.0.0 in containers)")
    port: int = Field(8000, ge=1, le=65535)
    checkpoint: Optional[str] = Field(
        None, description="checkpoint stem (<stem>.safetensors + <stem>.json); default: the "
                          "shipped tree-crown detector")
    model_repository: Optional[str] = Field(
        None, description="folder of <model>/<version>/ checkpoints (Triton's layout): every "
                          "model is served, the newest version by default; replaces checkpoint")
    default_model: Optional[str] = Field(None, description="the model of /detect without "
                                                           "?model= (default: the first by name)")
    model_versions: int = Field(1, ge=1, description="newest versions of each model served")
    model_loading: Literal["startup", "first_use"] = Field(
        "startup", description="first_use: only the default model loads at start-up, the "
                               "others on their first request")
    backend: Literal["auto", "torch", "torchscript", "onnxruntime"] = Field(
        "auto", description="auto: the fastest here, same detections (ONNX Runtime with the "
                            "dcn op library on a CPU, eager torch on a GPU); /readyz names it")
    device: Literal["cpu", "cuda", "auto"] = Field("auto", description="auto: cuda if available")
    max_batch_size: int = Field(8, ge=1, le=256, description="tiles per backend call")
    max_delay_ms: float = Field(10.0, ge=0, le=10_000,
                                description="longest wait for a batch to fill after its first "
                                            "request")
    queue_size: int = Field(64, ge=1, description="waiting requests beyond which /detect 503s")
    request_timeout_s: float = Field(30.0, gt=0, description="queue + inference; then 504")
    max_tiles: int = Field(64, ge=1, description="model runs (views x tiles) one image may cost; "
                                                 "checked from the image header (413 beyond)")
    stall_timeout_s: float = Field(60.0, gt=0, description="a backend call running longer makes "
                                                           "the service not ready (503)")
    stall_exit_s: float = Field(300.0, ge=0, description="a backend call running longer exits "
                                                         "the process (status 3) for a restart; "
                                                         "0: never")
    max_upload_bytes: int = Field(20 * 2**20, ge=1024, description="request body limit (413)")
    max_image_pixels: int = Field(40_000_000, ge=1,
                                  description="width x height limit checked before decoding")
    recent_results: int = Field(256, ge=0, description="detections kept for GET /offsets/{id}")
    recent_results_bytes: int = Field(256 * 2**20, ge=0,
                                      description="memory bound of the kept uploads")
    tta: int = Field(1, description="test-time augmentation: 1, 2, 4 or 8 flipped/transposed "
                                    "views per tile, fused (multiplies the inference cost; "
                                    "on the shipped model 4 views lower validation AP@0.5, "
                                    "0.539 -> 0.512)")
    threads: int = Field(0, ge=0, description="intra-op threads (0: the runtime's default)")
    cache_dir: Optional[str] = Field(None, description="where TorchScript/ONNX exports are "
                                                       "cached (default ~/.cache/dcnserve)")
    grpc_port: int = Field(8001, ge=0, le=65535, description="Open Inference Protocol over "
                                                            "gRPC (0: off)")
    api_keys: SecretStr = Field(SecretStr(""), description="inference keys: comma-separated, or "
                                                          "@FILE with one key a line (empty: "
                                                          "no keys)")
    admin_keys: SecretStr = Field(SecretStr(""), description="model management keys, same form "
                                                            "(empty: management is off)")
    cors_origins: str = Field("", description="comma-separated origins allowed by CORS "
                                              "(empty: CORS off)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("tta")
    @classmethod
    def _views(cls, value: int) -> int:
        if value not in (1, 2, 4, 8):
            raise ValueError("tta takes 1, 2, 4 or 8 views")
        return value


def parse_args(argv: Optional[List[str]] = None) -> Settings:
    """Settings from the environment with command-line flags on top."""
    parser = argparse.ArgumentParser(prog="dcnserve", description="deformable-conv detector "
                                     "inference service")
    for name, field in Settings.model_fields.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                            help=f"{field.description or ''} (env DCN_{name.upper()}, "
                                 f"default {field.default})")
    args = parser.parse_args(argv)
    return Settings(**{k: v for k, v in vars(args).items() if v is not None})
