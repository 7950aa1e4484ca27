//! Route matching: a service's routes made from fuzzed matchers (paths,
//! methods, headers, weighted splits) are applied to a mesh, then fuzzed
//! requests go through `Mesh::route`. Nothing panics, the route taken is
//! the first that matches, and the cluster picked is one its split names
//! with a positive weight.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderName, HeaderValue, Method, Request};
use libfuzzer_sys::fuzz_target;
use sinew::config::{
    ClusterConfig, EndpointConfig, HeaderMatch, MeshConfig, PathMatch, RouteConfig, RouteMatch,
    ServiceConfig, WeightedCluster,
};
use sinew::mesh::Mesh;
use std::sync::OnceLock;

const SERVICE: &str = "svc";
const CLUSTERS: [&str; 3] = ["a", "b", "c"];

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<FuzzRoute>,
    requests: Vec<FuzzRequest>,
}

#[derive(Arbitrary, Debug)]
struct FuzzRoute {
    path: Option<FuzzPath>,
    method: Option<String>,
    headers: Vec<FuzzHeader>,
    split: Vec<(u8, u32)>,
}

#[derive(Arbitrary, Debug)]
enum FuzzPath {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Arbitrary, Debug)]
struct FuzzHeader {
    name: String,
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
    present: Option<bool>,
}

#[derive(Arbitrary, Debug)]
struct FuzzRequest {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn mesh() -> &'static Mesh {
    static MESH: OnceLock<Mesh> = OnceLock::new();
    MESH.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(Mesh::builder().build())
            .expect("an empty mesh")
    })
}

fn config(routes: Vec<FuzzRoute>) -> MeshConfig {
    let routes = routes
        .into_iter()
        .map(|r| RouteConfig {
            matcher: RouteMatch {
                path: r.path.map(|p| match p {
                    FuzzPath::Exact(p) => PathMatch::exact(p),
                    FuzzPath::Prefix(p) => PathMatch::prefix(p),
                    FuzzPath::Regex(p) => PathMatch::regex(p),
                }),
                method: r.method,
                headers: r
                    .headers
                    .into_iter()
                    .map(|h| HeaderMatch {
                        name: h.name,
                        exact: h.exact,
                        prefix: h.prefix,
                        regex: h.regex,
                        present: h.present,
                    })
                    .collect(),
            },
            split: r
                .split
                .into_iter()
                .map(|(c, weight)| WeightedCluster {
                    cluster: CLUSTERS[usize::from(c) % CLUSTERS.len()].to_owned(),
                    weight,
                })
                .collect(),
            ..RouteConfig::default()
        })
        .collect();
    let mut config = MeshConfig::default();
    config.services.insert(
        SERVICE.to_owned(),
        ServiceConfig {
            routes,
            ..ServiceConfig::default()
        },
    );
    for (i, name) in CLUSTERS.iter().enumerate() {
        let cluster = ClusterConfig {
            endpoints: vec![EndpointConfig::new(format!("127.0.0.1:{}", 9000 + i))],
            ..ClusterConfig::default()
        };
        config.clusters.insert((*name).to_owned(), cluster);
    }
    config
}

fn request(r: FuzzRequest) -> Option<Request<()>> {
    let mut request = Request::builder()
        .method(Method::from_bytes(r.method.as_bytes()).ok()?)
        .uri(r.path)
        .body(())
        .ok()?;
    for (name, value) in r.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(&value).ok()?;
        request.headers_mut().append(name, value);
    }
    Some(request)
}

fuzz_target!(|input: Input| {
    let mesh = mesh();
    if mesh.apply(config(input.routes)).is_err() {
        return;
    }
    let snapshot = mesh.snapshot();
    let service = snapshot.service(SERVICE).expect("the service just applied");
    for r in input.requests {
        let Some(request) = request(r) else {
            continue;
        };
        let first = service
            .routes()
            .iter()
            .position(|route| route.matches(&request));
        match mesh.route(SERVICE, &request) {
            Ok(decision) => {
                let route = decision.route();
                let taken = service.routes().iter().position(|r| std::ptr::eq(r, route));
                assert_eq!(taken, first, "not the first route that matches");
                let named = taken
                    .and_then(|i| snapshot.config().services.get(SERVICE)?.routes.get(i))
                    .is_some_and(|config| {
                        config
                            .split
                            .iter()
                            .any(|w| w.cluster == decision.cluster() && w.weight > 0)
                    });
                assert!(
                    named,
                    "picked `{}`, which the route's split does not name",
                    decision.cluster()
                );
            }
            Err(e) => assert_eq!(first, None, "a matching route, yet {e}"),
        }
    }
});
