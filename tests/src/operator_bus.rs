//! An operator bus on moto: an EventBridge bus whose rule sends everything Capy puts on it
//! to an SQS queue the test reads back.

use serde_json::json;

use crate::moto;

fn eventbridge() -> aws_sdk_eventbridge::Client {
    let conf = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto().endpoint)
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    aws_sdk_eventbridge::Client::from_conf(conf)
}

/// Creates the bus `name` and its inbox queue; returns the inbox's URL.
pub async fn create(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let eb = eventbridge();
    eb.create_event_bus()
        .name(name)
        .send()
        .await
        .expect("create bus");
    let queue = sqs
        .create_queue()
        .queue_name(format!("{name}-inbox"))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    eb.put_rule()
        .name("capy-to-inbox")
        .event_bus_name(name)
        .event_pattern(json!({"source": ["capy.webhooks"]}).to_string())
        .send()
        .await
        .expect("put rule");
    eb.put_targets()
        .rule("capy-to-inbox")
        .event_bus_name(name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("inbox")
                .arn(arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("put targets");
    queue
}
