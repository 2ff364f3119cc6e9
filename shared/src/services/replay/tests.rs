use super::*;
use crate::consumers::testkit::{ORG, world};
use crate::domain::delivery::DeliveryState;
use crate::ports::DeliveryLog;

/// Every failed delivery of `since..until`.
fn failed_between(since: Timestamp, until: Timestamp) -> ReplayParams {
    ReplayParams {
        since,
        until,
        states: vec![DeliveryState::Failed],
        event_types: vec![],
    }
}

#[test]
fn windows_and_states() {
    let now = time::now();
    let day = chrono::TimeDelta::days(1);
    let month = Duration::from_secs(30 * 86_400);
    assert!(check_window(now - day, now, now, month).is_ok());
    assert!(check_window(now, now, now, month).is_err());
    assert!(check_window(now - day * 31, now, now, month).is_err());
    assert!(parse_state("failed").is_ok() && parse_state("delivered").is_ok());
    assert!(parse_state("pending").is_err() && parse_state("lost").is_err());
}

#[tokio::test]
async fn one_active_replay_per_endpoint() {
    let w = world();
    let (e, _) = w.endpoint("http://127.0.0.1:9/x", |e| e).await;
    let now = time::now();
    let params = failed_between(now - chrono::TimeDelta::hours(1), now);
    let Started::Job(job) = start(&w.deps, ORG, e.id, params.clone(), false, now)
        .await
        .expect("start")
    else {
        panic!("a job");
    };
    assert!(matches!(
        start(&w.deps, ORG, e.id, params.clone(), false, now).await,
        Err(ServiceError::Conflict(_))
    ));
    let canceled = cancel(&w.deps, ORG, job.id, now).await.expect("cancel");
    assert_eq!(canceled.state, JobState::Canceled);
    assert!(matches!(
        start(&w.deps, ORG, e.id, params, false, now).await,
        Ok(Started::Job(_))
    ));
    assert!(matches!(
        get(&w.deps, "other_org", job.id).await,
        Err(ServiceError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_run_that_dies_mid_page_resumes_without_sending_twice() {
    let mut w = world();
    let captured = std::sync::Arc::new(crate::metrics::Captured::default());
    w.deps.metrics = crate::metrics::Metrics::to(captured.clone());
    let (e, _) = w.endpoint("http://127.0.0.1:9/x", |e| e).await;
    let earlier = time::now() - chrono::TimeDelta::minutes(5);
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut ev = w.event("a.b", "{}").await;
        ev.created_at = earlier + chrono::TimeDelta::seconds(i);
        let mut d = Delivery::first(&ev, e.id, 2);
        d.state = DeliveryState::Failed;
        d.attempts = 2;
        w.stores
            .deliveries
            .save(&d, Expected::New)
            .await
            .expect("save");
        ids.push(d.id);
    }
    let now = time::now();
    let params = failed_between(earlier - chrono::TimeDelta::minutes(1), now);
    let Ok(Started::Job(job)) = start(&w.deps, ORG, e.id, params, false, now).await else {
        panic!("a job");
    };
    assert_eq!(job.matched, 5);
    let msg = w.stores.jobs.take_sent().pop().expect("job message");
    let pacing = Pacing {
        page: 2,
        pause: Duration::ZERO,
    };
    // A budget already spent: one page, then hand over.
    let p = run(&w.deps, &msg, pacing, Instant::now())
        .await
        .expect("run");
    assert_eq!(p, Progress::More);
    let j = get(&w.deps, ORG, job.id).await.expect("job");
    assert_eq!((j.state, j.processed), (JobState::Running, 2));
    assert_eq!(w.stores.queue.take_sent().len(), 2);
    // Each page's progress is a metric document while the job runs.
    let docs: Vec<serde_json::Value> = captured
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let progress: Vec<_> = docs.iter().filter(|d| d["function"] == "replay").collect();
    assert_eq!(progress.len(), 1, "{docs:?}");
    assert_eq!(
        (
            &progress[0]["outcome"],
            &progress[0]["ReplayProcessed"],
            &progress[0]["ReplayRemaining"]
        ),
        (
            &serde_json::json!("running"),
            &serde_json::json!(2.0),
            &serde_json::json!(3.0)
        )
    );
    // A run that died after writing the first delivery of the next page, before its send
    // and its checkpoint: the resumed run must not send that one again.
    let victim = w
        .stores
        .deliveries
        .get(e.id, j.page[0])
        .await
        .expect("get")
        .expect("stored");
    let requeued = victim.requeued(time::now(), Duration::from_secs(60), 3);
    w.stores
        .deliveries
        .save(&requeued, Expected::of(&victim, true))
        .await
        .expect("requeue");
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(
        run(&w.deps, &msg, pacing, far).await.expect("run"),
        Progress::Done
    );
    let j = get(&w.deps, ORG, job.id).await.expect("job");
    assert_eq!((j.state, j.processed), (JobState::Succeeded, 5));
    let sent: Vec<_> = w
        .stores
        .queue
        .take_sent()
        .into_iter()
        .map(|m| m.delivery_id)
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(!sent.contains(&victim.id));
    // Done is done: a redelivered message changes nothing.
    assert_eq!(
        run(&w.deps, &msg, pacing, far).await.expect("run"),
        Progress::Done
    );
    assert!(w.stores.queue.take_sent().is_empty());
    let _ = ids;
}

#[tokio::test]
async fn a_checkpoint_whose_answer_was_lost_counts_as_written() {
    let w = world();
    let (e, _) = w.endpoint("http://127.0.0.1:9/x", |e| e).await;
    let now = time::now();
    let params = failed_between(now - chrono::TimeDelta::hours(1), now);
    let Ok(Started::Job(job)) = start(&w.deps, ORG, e.id, params, false, now).await else {
        panic!("a job");
    };
    let mut next = (*job).clone();
    next.version += 1;
    next.state = JobState::Running;
    // The write landed; the SDK's retry of it then loses its condition.
    w.deps.jobs.save(&next).await.expect("first write");
    assert!(checkpoint(&w.deps, &next).await.expect("checkpoint"));
    // Someone else's write is not ours.
    let mut other = next.clone();
    other.version += 1;
    other.processed = 7;
    w.deps.jobs.save(&other).await.expect("their write");
    let mut mine = next.clone();
    mine.version += 1;
    assert!(!checkpoint(&w.deps, &mine).await.expect("checkpoint"));
}

/// `capy.replay.finished` events in the organization's log.
async fn finished_events(w: &crate::consumers::testkit::World) -> Vec<crate::domain::event::Event> {
    let q = crate::ports::EventQuery {
        limit: 50,
        event_type: Some("capy.replay.finished".into()),
        ..Default::default()
    };
    w.deps.events.list(ORG, &q).await.expect("list").0
}

#[tokio::test]
async fn a_job_that_ends_is_announced_once_whoever_ended_it() {
    use crate::domain::endpoint::Endpoint;
    let w = world();
    let (e, _) = w
        .endpoint("http://127.0.0.1:9/x", |e| Endpoint {
            event_types: vec!["capy.*".into()],
            ..e
        })
        .await;
    let (watcher, _) = w
        .endpoint("http://127.0.0.1:9/w", |e| Endpoint {
            event_types: vec!["capy.replay.finished".into()],
            ..e
        })
        .await;
    let earlier = time::now() - chrono::TimeDelta::minutes(5);
    for _ in 0..3 {
        let ev = w.event("a.b", "{}").await;
        let mut d = Delivery::first(&ev, e.id, 2);
        d.state = DeliveryState::Failed;
        d.attempts = 2;
        d.updated_at = earlier;
        w.stores
            .deliveries
            .save(&d, Expected::New)
            .await
            .expect("save");
    }
    let now = time::now();
    let params = failed_between(earlier - chrono::TimeDelta::hours(1), now);
    let Ok(Started::Job(job)) = start(&w.deps, ORG, e.id, params.clone(), false, now).await else {
        panic!("a job");
    };
    let msg = w.stores.jobs.take_sent().pop().expect("job message");
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(
        run(&w.deps, &msg, Pacing::default(), far)
            .await
            .expect("run"),
        Progress::Done
    );
    let replayed: Vec<_> = w.stores.queue.take_sent();
    assert_eq!(
        replayed.len(),
        4,
        "3 replayed and 1 announcement: {replayed:?}"
    );
    let announced = finished_events(&w).await;
    assert_eq!(announced.len(), 1);
    assert_eq!(
        announced[0].targets,
        vec![watcher.id],
        "never the replayed endpoint"
    );
    let data: serde_json::Value = serde_json::from_str(&announced[0].payload).expect("JSON");
    assert_eq!(
        (&data["job_id"], &data["state"], &data["counts"]),
        (
            &serde_json::json!(job.id.to_string()),
            &serde_json::json!("succeeded"),
            &serde_json::json!({ "matched": 3, "processed": 3 })
        )
    );
    assert!(get(&w.deps, ORG, job.id).await.expect("job").announced);
    // A redelivered message announces nothing more.
    run(&w.deps, &msg, Pacing::default(), far)
        .await
        .expect("run");
    assert_eq!(finished_events(&w).await.len(), 1);
    assert!(w.stores.queue.take_sent().is_empty());

    // Cancelled while queued: the worker that picks up its message announces it.
    let Ok(Started::Job(job)) = start(&w.deps, ORG, e.id, params, false, now).await else {
        panic!("a job");
    };
    let msg = w.stores.jobs.take_sent().pop().expect("job message");
    cancel(&w.deps, ORG, job.id, time::now())
        .await
        .expect("cancel");
    assert_eq!(
        finished_events(&w).await.len(),
        1,
        "not by the cancel request"
    );
    run(&w.deps, &msg, Pacing::default(), far)
        .await
        .expect("run");
    let announced = finished_events(&w).await;
    assert_eq!(announced.len(), 2);
    let states: Vec<(String, String)> = announced
        .iter()
        .map(|e| {
            let data: serde_json::Value = serde_json::from_str(&e.payload).expect("JSON");
            (
                data["job_id"].as_str().expect("id").into(),
                data["state"].as_str().expect("state").into(),
            )
        })
        .collect();
    assert!(
        states.contains(&(job.id.to_string(), "canceled".into())),
        "{states:?}"
    );
}

#[tokio::test]
async fn a_dead_lettered_job_ends_failed_and_frees_its_endpoint() {
    let w = world();
    let (e, _) = w.endpoint("http://127.0.0.1:9/x", |e| e).await;
    let now = time::now();
    let params = failed_between(now - chrono::TimeDelta::hours(1), now);
    let Ok(Started::Job(job)) = start(&w.deps, ORG, e.id, params.clone(), false, now).await else {
        panic!("a job");
    };
    let msg = w.stores.jobs.take_sent().pop().expect("job message");
    let mut record = crate::consumers::testkit::record(
        "m-1",
        &serde_json::to_string(&msg).expect("json"),
        time::now(),
    );
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), "10".into());
    let mut batch = aws_lambda_events::sqs::SqsEvent::default();
    batch.records.push(record);
    let out = crate::consumers::dead_letter::dead_letter_batch(&w.deps, batch).await;
    assert!(out.batch_item_failures.is_empty());
    let j = get(&w.deps, ORG, job.id).await.expect("job");
    assert_eq!(j.state, JobState::Failed);
    assert!(
        j.error.as_deref().is_some_and(|e| e.contains("10 times")),
        "{j:?}"
    );
    assert!(matches!(
        start(&w.deps, ORG, e.id, params, false, now).await,
        Ok(Started::Job(_))
    ));
}
