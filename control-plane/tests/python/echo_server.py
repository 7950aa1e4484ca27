#!/usr/bin/env python3
"""A gRPC server on grpcio answering /sinew.test.Echo/Call with its name.

Usage: echo_server.py NAME. Prints "port N" once serving on 127.0.0.1."""

import sys
from concurrent import futures

import grpc


def main():
    name = sys.argv[1].encode()

    def call(request, context):
        return name

    handler = grpc.method_handlers_generic_handler(
        "sinew.test.Echo",
        {"Call": grpc.unary_unary_rpc_method_handler(call)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    # Serves until stdin closes (the test ends or drops it).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
