"""Service tests start their gRPC servers on free ports only where they ask for one."""
import os

os.environ.setdefault("DCN_GRPC_PORT", "0")
