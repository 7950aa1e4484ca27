#!/usr/bin/env python3
"""An xDS-enabled gRPC server on grpcio (gRFC A36) with xDS server
credentials (gRFC A29), configured by GRPC_XDS_BOOTSTRAP: its Listener, and
so whether it requires mTLS, comes from the control plane.

Usage: xds_secure_server.py NAME ADDRESS. Listens on ADDRESS and prints
"ready" once started (serving begins when the Listener arrives). Answers
/sinew.test.Echo/Call with JSON: its name, the number of calls it has
handled, and the caller's identity as gRPC saw it (peer identities and the
auth context)."""

import json
import sys
import threading
from concurrent import futures

import grpc


def main():
    name, address = sys.argv[1], sys.argv[2]
    lock = threading.Lock()
    calls = [0]

    def call(request, context):
        with lock:
            calls[0] += 1
            handled = calls[0]
        auth = {
            key: [v.decode(errors="replace") for v in values]
            for key, values in context.auth_context().items()
        }
        peers = [p.decode(errors="replace") for p in context.peer_identities() or []]
        return json.dumps(
            {"name": name, "calls": handled, "peer_identities": peers, "auth": auth}
        ).encode()

    handler = grpc.method_handlers_generic_handler(
        "sinew.test.Echo",
        {"Call": grpc.unary_unary_rpc_method_handler(call)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    server.add_secure_port(address, credentials)
    server.start()
    print("ready", flush=True)
    # Serves until stdin closes (the test ends or drops it).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
