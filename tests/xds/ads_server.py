#!/usr/bin/env python3
"""A state-of-the-world ADS server on grpcio and the published xds-protos
package, so that Sinew's discovery client is tested against an
implementation that shares no code or types with it.

Resource sets arrive on stdin, one JSON document per line, each a new
version:

    {"listeners": {"reviews": "reviews"},        listener -> RDS route name
     "routes": {"reviews": [["reviews-v1", 1]]},  route -> weighted clusters
     "clusters": {"reviews-v1": "ROUND_ROBIN"},   cluster -> lb policy
     "endpoints": {"reviews-v1": ["127.0.0.1:8080"]}}

It prints "port N" once serving, then a JSON line for every request that
carries an error_detail (a NACK): {"nack": type_url, "version": ..., "message": ...}.
"""

import json
import queue
import sys
import threading
from concurrent import futures

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, wrappers_pb2

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# Config sources point at the ADS stream, as gRPC requires.
ADS = config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())

lock = threading.Lock()
state = {"version": 0, "resources": {}}
streams = []


def packed(message):
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped


def build(spec):
    resources = {LISTENER: {}, ROUTE: {}, CLUSTER: {}, ENDPOINTS: {}}
    for name, route in spec.get("listeners", {}).items():
        hcm = hcm_pb2.HttpConnectionManager(
            rds=hcm_pb2.Rds(route_config_name=route, config_source=ADS),
            http_filters=[
                hcm_pb2.HttpFilter(
                    name="envoy.filters.http.router", typed_config=packed(router_pb2.Router())
                )
            ],
        )
        resources[LISTENER][name] = packed(
            listener_pb2.Listener(
                name=name, api_listener=api_listener_pb2.ApiListener(api_listener=packed(hcm))
            )
        )
    for name, split in spec.get("routes", {}).items():
        action = route_components_pb2.RouteAction(
            weighted_clusters=route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(
                        name=cluster, weight=wrappers_pb2.UInt32Value(value=weight)
                    )
                    for cluster, weight in split
                ]
            )
        )
        host = route_components_pb2.VirtualHost(
            name="all",
            domains=["*"],
            routes=[
                route_components_pb2.Route(
                    match=route_components_pb2.RouteMatch(prefix="/"), route=action
                )
            ],
        )
        resources[ROUTE][name] = packed(
            route_pb2.RouteConfiguration(name=name, virtual_hosts=[host])
        )
    for name, policy in spec.get("clusters", {}).items():
        resources[CLUSTER][name] = packed(
            cluster_pb2.Cluster(
                name=name,
                type=cluster_pb2.Cluster.EDS,
                eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
                    service_name=name, eds_config=ADS
                ),
                lb_policy=cluster_pb2.Cluster.LbPolicy.Value(policy),
            )
        )
    for name, addresses in spec.get("endpoints", {}).items():
        endpoints = []
        for address in addresses:
            host, port = address.rsplit(":", 1)
            endpoints.append(
                endpoint_components_pb2.LbEndpoint(
                    endpoint=endpoint_components_pb2.Endpoint(
                        address=address_pb2.Address(
                            socket_address=address_pb2.SocketAddress(
                                address=host, port_value=int(port)
                            )
                        )
                    )
                )
            )
        resources[ENDPOINTS][name] = packed(
            endpoint_pb2.ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(
                        locality=base_pb2.Locality(region="eu", zone="eu-1a"),
                        lb_endpoints=endpoints,
                    )
                ],
            )
        )
    return resources


class Stream:
    def __init__(self):
        self.out = queue.Queue()
        self.subscribed = {}
        self.sent = {}
        self.nonce = 0

    def respond(self, type_url):
        """Queues the current version of one type; call with `lock` held."""
        names = self.subscribed.get(type_url, [])
        chosen = [
            any_
            for name, any_ in state["resources"].get(type_url, {}).items()
            if not names or name in names
        ]
        self.nonce += 1
        self.sent[type_url] = state["version"]
        self.out.put(
            discovery_pb2.DiscoveryResponse(
                version_info=str(state["version"]),
                resources=chosen,
                type_url=type_url,
                nonce=str(self.nonce),
            )
        )


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def StreamAggregatedResources(self, request_iterator, context):
        stream = Stream()
        with lock:
            streams.append(stream)

        def read():
            try:
                for request in request_iterator:
                    if request.HasField("error_detail"):
                        print(
                            json.dumps(
                                {
                                    "nack": request.type_url,
                                    "version": request.version_info,
                                    "message": request.error_detail.message,
                                }
                            ),
                            flush=True,
                        )
                    with lock:
                        names = list(request.resource_names)
                        changed = stream.subscribed.get(request.type_url) != names
                        stream.subscribed[request.type_url] = names
                        if changed or stream.sent.get(request.type_url) != state["version"]:
                            stream.respond(request.type_url)
            except grpc.RpcError:
                pass
            stream.out.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                response = stream.out.get()
                if response is None:
                    return
                yield response
        finally:
            with lock:
                streams.remove(stream)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Ads(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        resources = build(json.loads(line))
        with lock:
            state["version"] += 1
            state["resources"] = resources
            for stream in streams:
                for type_url in list(stream.subscribed):
                    stream.respond(type_url)
    server.stop(0)


if __name__ == "__main__":
    main()
