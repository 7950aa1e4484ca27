#!/usr/bin/env python3
"""An xDS-enabled gRPC server on grpcio (gRFC A36) with xDS server
credentials (gRFC A29): its Listener, and so its transport and its RBAC
filters (gRFC A41), come from the control plane named by
GRPC_XDS_BOOTSTRAP.

Usage: xds_rbac_server.py ADDRESS. Listens on ADDRESS and prints "ready"
once started. Answers every unary method of sinew.test.Echo with JSON: the
method and the number of calls its handlers have run (a refused call never
reaches them)."""

import json
import sys
import threading
from concurrent import futures

import grpc


class Echo(grpc.GenericRpcHandler):
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0

    def service(self, handler_call_details):
        method = handler_call_details.method
        if not method.startswith("/sinew.test.Echo/"):
            return None

        def call(request, context):
            with self.lock:
                self.calls += 1
                handled = self.calls
            return json.dumps({"method": method, "calls": handled}).encode()

        return grpc.unary_unary_rpc_method_handler(call)


def main():
    address = sys.argv[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((Echo(),))
    credentials = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    server.add_secure_port(address, credentials)
    server.start()
    print("ready", flush=True)
    # Serves until stdin closes (the test ends or drops it).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
