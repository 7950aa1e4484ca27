#!/usr/bin/env python3
"""gRPC's proxyless xDS client (grpcio) with xDS channel credentials (gRFC
A29), configured by GRPC_XDS_BOOTSTRAP: its certificate, and so who it is
to the servers, comes from the bootstrap's certificate provider.

Commands, one per line on stdin, each answered by one JSON line
{"code": .., "reply": ..}:
  call TARGET METHOD [NAME=VALUE ...]
      one call of METHOD (/service/method) to TARGET (xds:///SERVICE),
      with these metadata entries, waiting for the channel to be ready
      (10 s). The code is the gRPC status code's name ("OK",
      "PERMISSION_DENIED", ..), the reply the server's JSON answer."""

import json
import sys

import grpc
import grpc.experimental


def main():
    xds = grpc.xds_channel_credentials(
        fallback_credentials=grpc.experimental.insecure_channel_credentials()
    )
    channels = {}
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) < 3 or words[0] != "call":
            continue
        target, method = words[1], words[2]
        metadata = [tuple(w.split("=", 1)) for w in words[3:]]
        if target not in channels:
            channels[target] = grpc.secure_channel(target, xds)
        call = channels[target].unary_unary(method)
        try:
            reply = call(b"", timeout=10, wait_for_ready=True, metadata=metadata)
            answer = {"code": "OK", "reply": json.loads(reply)}
        except grpc.RpcError as e:
            answer = {"code": e.code().name, "details": e.details()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
