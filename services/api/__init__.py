"""The generated gRPC API (from protos/lpm/v1). Import the modules from here:

    from services.api import identity_pb2, identity_pb2_grpc, common_pb2

The code is generated on first import when missing or stale (see codegen.py).
"""

import sys

from services.api.codegen import GENERATED, generate, is_current

if not is_current():
    generate()
if str(GENERATED) not in sys.path:
    sys.path.insert(0, str(GENERATED))

from lpm.v1 import common_pb2, identity_pb2, identity_pb2_grpc  # noqa: E402

__all__ = ["common_pb2", "identity_pb2", "identity_pb2_grpc"]
