//! `ticketbound-api` refuses to start when its identity claims cannot be carried by its issuer's tokens: the
//! built binary, run with the environment the template gives it, exits with the reason before serving anything.

use std::process::Command;

const REQUIRED: &[(&str, &str)] = &[
    ("TABLE_NAME", "t"),
    ("SCHEDULE_GROUP", "g"),
    (
        "EXPIRY_FUNCTION_ARN",
        "arn:aws:lambda:eu-west-1:123456789012:function:f",
    ),
    ("SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
    ("SCHEDULE_DLQ_ARN", "arn:aws:sqs:eu-west-1:123456789012:q"),
];

#[test]
fn the_api_refuses_to_start_with_an_email_claim_its_issuer_never_issues() {
    let output = Command::new(env!("CARGO_BIN_EXE_ticketbound-api"))
        .env_clear()
        .envs(REQUIRED.iter().copied())
        .env(
            "OIDC_ISSUER",
            "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        )
        .env("EMAIL_CLAIM", "preferred_username")
        .output()
        .expect("the binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it must not start: {stderr}");
    assert!(
        stderr.contains("identity claims: EMAIL_CLAIM=preferred_username")
            && stderr.contains("never carry `preferred_username`"),
        "{stderr}"
    );
}
