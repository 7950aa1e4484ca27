#!/usr/bin/env python3
"""gRPC's proxyless xDS client (grpcio) with xDS channel credentials (gRFC
A29), configured by GRPC_XDS_BOOTSTRAP, and a plaintext client beside it.

Commands, one per line on stdin, each answered by one JSON line
{"replies": [..], "errors": [{"code": .., "details": ..}]}:
  call TARGET N   N calls to TARGET (xds:///SERVICE) over xDS credentials,
                  waiting for the channel to be ready (10 s each);
  try TARGET N    the same, failing fast when the channel cannot connect;
  plain ADDR N    N calls straight to ADDR (host:port) in plaintext,
                  failing fast.
A reply is the server's JSON answer."""

import json
import sys

import grpc
import grpc.experimental


def main():
    xds = grpc.xds_channel_credentials(
        fallback_credentials=grpc.experimental.insecure_channel_credentials()
    )
    channels = {}

    def channel(kind, target):
        key = (kind, target)
        if key not in channels:
            if kind == "plain":
                channels[key] = grpc.insecure_channel(target)
            else:
                channels[key] = grpc.secure_channel(target, xds)
        return channels[key]

    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 3:
            continue
        kind, target, n = words[0], words[1], int(words[2])
        call = channel(kind, target).unary_unary("/sinew.test.Echo/Call")
        replies, errors = [], []
        for _ in range(n):
            try:
                reply = call(b"", timeout=10, wait_for_ready=(kind == "call"))
                replies.append(json.loads(reply))
            except grpc.RpcError as e:
                errors.append({"code": e.code().name, "details": e.details()})
        print(json.dumps({"replies": replies, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
