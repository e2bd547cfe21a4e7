//! `ticketbound-floor`: the floor the functions' cold start is measured against (BENCHMARKS.md, "Packaging and
//! cold start"). It does what every function must do before its first event and nothing else: start the
//! runtime and telemetry, load the AWS SDK configuration the functions use and build the same three clients,
//! then answer every request `200 {}`. Not in the template: it is never deployed.

use lambda_http::{Body, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    ticketbound::telemetry::init_lambda();
    let sdk =
        ticketbound::wiring::aws_sdk_config(ticketbound::wiring::AwsTimeouts::default()).await;
    // Built and kept, as the functions keep theirs, so their construction counts and nothing is optimized away.
    let clients = (
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_scheduler::Client::new(&sdk),
        aws_sdk_secretsmanager::Client::new(&sdk),
    );
    let clients = &clients;
    lambda_http::run(service_fn(move |_request: Request| async move {
        let _ = clients;
        Ok::<_, lambda_http::Error>(Response::new(Body::from("{}")))
    }))
    .await
}
