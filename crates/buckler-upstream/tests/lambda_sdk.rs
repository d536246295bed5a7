//! The real `aws-sdk-lambda` against the fake Invoke API over HTTP.

use buckler_testkit::{FakeLambda, LambdaReply};
use buckler_upstream::{InvokeFailure, LambdaInvoker, LambdaTarget};

fn credentials() {
    // The standard chain reads these; the fake only checks that requests are signed.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDBUCKLERTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "buckler-test-secret");
}

fn target(name: &str) -> LambdaTarget {
    LambdaTarget {
        function_name: name.to_owned(),
        qualifier: None,
        region: "us-east-1".to_owned(),
    }
}

#[tokio::test]
async fn invokes_signed_with_qualifier_and_maps_failures() {
    credentials();
    let fake = FakeLambda::start().await;
    fake.function("echo", |call| LambdaReply::Payload(call.payload.clone()));
    fake.function("broken", |_| {
        LambdaReply::FunctionError(bytes::Bytes::from_static(b"{\"errorMessage\":\"boom\"}"))
    });
    fake.function("busy", |_| LambdaReply::Throttle(Some(7)));
    let invoker = LambdaInvoker::new(Some(fake.endpoint()));

    let payload = invoker
        .invoke(&target("echo"), b"{\"x\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(&payload[..], b"{\"x\":1}");

    let arn = LambdaTarget {
        function_name: "arn:aws:lambda:us-east-1:123456789012:function:echo".to_owned(),
        qualifier: Some("live".to_owned()),
        region: "us-east-1".to_owned(),
    };
    invoker.invoke(&arn, b"{}".to_vec()).await.unwrap();
    let last = fake.calls().pop().unwrap();
    assert_eq!(last.function, "echo");
    assert_eq!(last.qualifier.as_deref(), Some("live"));
    assert_eq!(fake.unsigned_requests(), 0);

    let error = invoker
        .invoke(&target("broken"), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(error, InvokeFailure::FunctionError { ref kind, .. } if kind == "Unhandled"),
        "{error}"
    );
    let error = invoker
        .invoke(&target("busy"), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            InvokeFailure::Throttled {
                retry_after_seconds: Some(7)
            }
        ),
        "{error}"
    );
    let error = invoker
        .invoke(&target("missing"), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(error, InvokeFailure::Service(_)), "{error}");
    let error = invoker
        .invoke(
            &target("echo"),
            vec![b' '; buckler_upstream::MAX_PAYLOAD_BYTES + 1],
        )
        .await
        .unwrap_err();
    assert!(matches!(error, InvokeFailure::PayloadTooLarge), "{error}");
}
