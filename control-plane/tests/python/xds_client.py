#!/usr/bin/env python3
"""gRPC's own proxyless xDS client (grpcio), configured by
GRPC_XDS_BOOTSTRAP, calling /sinew.test.Echo/Call on an xds:/// target.

Usage: xds_client.py xds:///SERVICE. Each line "call N" on stdin makes N
calls; the answer is one JSON line: {"served": {name: count}, "errors": [..]}.
"""

import json
import sys

import grpc


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    call = channel.unary_unary("/sinew.test.Echo/Call")
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "call":
            continue
        served, errors = {}, []
        for _ in range(int(words[1])):
            try:
                name = call(b"", timeout=10, wait_for_ready=True).decode()
                served[name] = served.get(name, 0) + 1
            except grpc.RpcError as e:
                errors.append(f"{e.code()}: {e.details()}")
        print(json.dumps({"served": served, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
