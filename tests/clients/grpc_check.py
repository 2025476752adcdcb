#!/usr/bin/env python3
"""A third-party gRPC client (grpcio, the reference implementation) against an agent's status
socket, as grpcurl would be used: lists the services through server reflection, describes the
Status service's methods from the reflected descriptors, and asks the gRPC health service about
muster.v1.Status. Prints one JSON object; exits 1 if a call fails.

Usage: grpc_check.py /path/to/muster.sock
"""
import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from google.protobuf.descriptor_pool import DescriptorPool


def main() -> int:
    # grpcio would send the socket's path as :authority, which is not a valid authority (HTTP/2
    # servers reset the stream); name the host as a TCP client would.
    channel = grpc.insecure_channel(
        "unix://" + sys.argv[1], options=[("grpc.default_authority", "localhost")]
    )
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = DescriptorPool(database)
    status = pool.FindServiceByName("muster.v1.Status")
    methods = sorted(m.name for m in status.methods)
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="muster.v1.Status"), timeout=5
    )
    print(
        json.dumps(
            {
                "services": services,
                "status_methods": methods,
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
