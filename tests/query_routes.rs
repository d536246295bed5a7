//! Templates holding `?` or `#` (as AWS documents write them), through real sockets: a query
//! part is a predicate on the request's query, more specific than the bare path, and a
//! fragment is dropped. The request reaches the upstream with its query as sent.

use buckler_tests::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parts_route_on_the_query_and_fragments_are_dropped() {
    let plain = FakeUpstream::builder("plain")
        .doc(
            Swagger2Doc::new("plain", "1")
                .op("get", "/{Bucket}")
                .op("put", "/{Bucket}")
                .to_json(),
        )
        .start()
        .await;
    let acl = FakeUpstream::builder("acl")
        .doc(
            Swagger2Doc::new("acl", "1")
                .op("get", "/{Bucket}?acl")
                .op("get", "/{Bucket}?list-type=2")
                .op("post", "/#X-Amz-Target=Svc.One")
                .op("post", "/#X-Amz-Target=Svc.Two")
                .to_json(),
        )
        .start()
        .await;
    let config = config_text(&[(&plain.url(), 1), (&acl.url(), 1)], "");
    let gw = TestGateway::start_ready(&config).await;

    assert_eq!(gw.get("/b").await.upstream(), "plain");
    let reply = gw.get("/b?acl").await;
    assert_eq!(reply.upstream(), "acl");
    assert_eq!(reply.json()["query"], "acl", "forwarded as sent");
    assert_eq!(gw.get("/b?x=1&acl=").await.upstream(), "acl");
    assert_eq!(gw.get("/b?list-type=2").await.upstream(), "acl");
    assert_eq!(gw.get("/b?list-type=1").await.upstream(), "plain");
    // PUT is declared only without the predicate: the less specific template takes it.
    let put = Request::put(gw.url("/b?acl"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(gw.send(put).await.upstream(), "plain");
    // `/#X-Amz-Target=...` is routed as `/`.
    let post = Request::post(gw.url("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reply = gw.send(post).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.upstream(), "acl");
}
