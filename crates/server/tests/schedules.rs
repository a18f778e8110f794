//! Schedules through the API: bad input refused naming the rule with nothing created,
//! management (list, show, update, enable, disable, delete), the coming fire times, a
//! pipeline that active schedules start refusing to be disabled, and roles.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::{Value, json};

const PIPELINE: &str = r#"name: nightly
parameters:
  epochs: {type: int, default: 3}
steps:
  - name: train
    command: ["true"]
"#;

/// An API with workspace `mlws` and one pipeline; returns the pipeline's id.
async fn api() -> (TestApi, String) {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "mlws"})).await;
    let pipeline = api
        .ok("POST", "/v1/workspaces/mlws/pipelines", json!({"definition": PIPELINE}))
        .await;
    (api, pipeline["id"].as_str().unwrap().to_owned())
}

fn hourly(pipeline_id: &str) -> Value {
    json!({
        "pipelineId": pipeline_id,
        "experimentName": "nightly",
        "recurrence": {"frequency": "Hour", "interval": 1},
        "parameterAssignments": {"epochs": 5},
    })
}

fn on_change(pipeline_id: &str) -> Value {
    json!({
        "pipelineId": pipeline_id,
        "experimentName": "arrivals",
        "datastore": "workspaceblobstore",
        "pathOnDatastore": "incoming",
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_rule_and_nothing_is_created() {
    let (api, pipeline) = api().await;
    let recurrence = |r: Value| with(hourly(&pipeline), "recurrence", r);
    let cases = [
        (
            recurrence(json!({"frequency": "Day", "interval": 1, "timeZone": "Mars/Base"})),
            "unknown time zone \"Mars/Base\"",
        ),
        (
            recurrence(json!({"frequency": "Day", "interval": 1,
                "startTime": "2030-05-01T00:00:00Z", "endTime": "2030-04-01T00:00:00Z"})),
            "is after end time",
        ),
        (
            recurrence(json!({"frequency": "Hour", "interval": 0})),
            "interval must be at least 1",
        ),
        (
            recurrence(json!({"frequency": "Minute", "interval": 1, "hours": [3]})),
            "hours and minutes apply only to Day and Week recurrences (got hours on Minute)",
        ),
        (
            recurrence(json!({"frequency": "Year", "interval": 1})),
            "unknown frequency \"Year\"",
        ),
        (
            with(hourly(&pipeline), "maxConcurrent", json!(0)),
            "maxConcurrent must be at least 1",
        ),
        (
            with(hourly(&pipeline), "parameterAssignments", json!({"epochs": "many"})),
            "epochs",
        ),
        (
            with(hourly(&pipeline), "kind", json!("change")),
            "a change schedule needs `datastore` and `pathOnDatastore`",
        ),
        (
            with(hourly(&pipeline), "datastore", json!("workspaceblobstore")),
            "a schedule fires at times (`recurrence`) or on changes",
        ),
        (
            with(on_change(&pipeline), "datastore", json!("nope")),
            "no datastore `nope`",
        ),
        (
            with(on_change(&pipeline), "pathOnDatastore", json!("in/../../x")),
            "`..` is not allowed",
        ),
        (
            with(on_change(&pipeline), "pathOnDatastore", json!("/etc")),
            "it is absolute",
        ),
        (
            with(on_change(&pipeline), "pollingInterval", json!(0)),
            "the polling interval must be at least 1 minute (got 0 seconds)",
        ),
        (
            with(on_change(&pipeline), "pollingIntervalSeconds", json!(5)),
            "the polling interval must be at least 1 minute (got 5 seconds)",
        ),
        (
            with(on_change(&pipeline), "dataPathParameterName", json!("input")),
            "has no data-path parameter `input`",
        ),
        (
            with(hourly(&pipeline), "misfirePolicy", json!("sometimes")),
            "sometimes",
        ),
    ];
    for (body, rule) in cases {
        let refused = api
            .call("PUT", "/v1/workspaces/mlws/schedules/s", Some(body.clone()))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}: {}", refused.body);
        assert!(refused.message().contains(rule), "{body}: {}", refused.message());
    }
    let unknown = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/schedules/s",
            Some(hourly("no-such-pipeline")),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let listed = api
        .ok("GET", "/v1/workspaces/mlws/schedules?all=true", json!(null))
        .await;
    assert_eq!(listed["value"], json!([]));
}

#[tokio::test]
async fn schedules_are_listed_shown_updated_enabled_and_deleted() {
    let (api, pipeline) = api().await;
    let created = api
        .call("PUT", "/v1/workspaces/mlws/schedules/hourly", Some(hourly(&pipeline)))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let body = &created.body;
    assert_eq!(body["status"], "Active");
    assert_eq!(body["kind"], "time");
    assert_eq!(body["misfirePolicy"], "latest");
    assert_eq!(body["overlapPolicy"], "skip");
    assert_eq!(body["maxConcurrent"], 1);
    assert!(body["nextFireTime"].is_string(), "{body}");
    assert!(
        body["recurrence"]["startTime"].is_string(),
        "the anchor is kept: {body}"
    );
    let off = with(hourly(&pipeline), "status", json!("Disabled"));
    api.ok("PUT", "/v1/workspaces/mlws/schedules/off", off).await;

    let active = api.ok("GET", "/v1/workspaces/mlws/schedules", json!(null)).await;
    let names = |list: &Value| {
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&active), [json!("hourly")]);
    let all = api
        .ok("GET", "/v1/workspaces/mlws/schedules?all=true", json!(null))
        .await;
    assert_eq!(names(&all), [json!("hourly"), json!("off")]);
    let other = api
        .ok(
            "GET",
            "/v1/workspaces/mlws/schedules?all=true&pipelineId=x",
            json!(null),
        )
        .await;
    assert_eq!(names(&other), Vec::<Value>::new());

    let stale = api
        .call_if_match(
            "PATCH",
            "/v1/workspaces/mlws/schedules/hourly",
            Some(json!({"maxConcurrent": 2})),
            Some("\"old\""),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.body);
    let etag = body["etag"].as_str().unwrap();
    let patched = api
        .call_if_match(
            "PATCH",
            "/v1/workspaces/mlws/schedules/hourly",
            Some(json!({"maxConcurrent": 2, "overlapPolicy": "queue", "misfirePolicy": "all"})),
            Some(etag),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["overlapPolicy"], "queue");
    assert_eq!(patched.body["parameterAssignments"]["epochs"], 5);
    let switch = api
        .call(
            "PATCH",
            "/v1/workspaces/mlws/schedules/hourly",
            Some(json!({"kind": "change"})),
        )
        .await;
    assert_eq!(switch.status, StatusCode::CONFLICT, "{}", switch.body);
    assert!(
        switch.message().contains("cannot become change-based"),
        "{}",
        switch.message()
    );

    let disabled = api
        .ok("POST", "/v1/workspaces/mlws/schedules/hourly/disable", json!({}))
        .await;
    assert_eq!(disabled["status"], "Disabled");
    assert_eq!(disabled["nextFireTime"], Value::Null);
    let enabled = api
        .ok("POST", "/v1/workspaces/mlws/schedules/hourly/enable", json!({}))
        .await;
    assert!(enabled["nextFireTime"].is_string());

    let next = api
        .ok("GET", "/v1/workspaces/mlws/schedules/hourly/next?count=3", json!(null))
        .await;
    assert_eq!(next["timeZone"], "UTC");
    assert_eq!(next["value"].as_array().unwrap().len(), 3);
    let runs = api
        .ok("GET", "/v1/workspaces/mlws/schedules/hourly/runs", json!(null))
        .await;
    assert_eq!(runs["value"], json!([]));

    let deleted = api.call("DELETE", "/v1/workspaces/mlws/schedules/HOURLY", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let gone = api.call("GET", "/v1/workspaces/mlws/schedules/hourly", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_coming_fire_times_are_given_in_utc_and_on_the_zones_clock() {
    let (api, pipeline) = api().await;
    let daily = with(
        hourly(&pipeline),
        "recurrence",
        json!({"frequency": "Day", "interval": 1, "hours": [9], "minutes": [30],
               "timeZone": "Europe/Berlin", "startTime": "2030-01-01T00:00:00+01:00"}),
    );
    api.ok("PUT", "/v1/workspaces/mlws/schedules/daily", daily).await;
    let next = api
        .ok("GET", "/v1/workspaces/mlws/schedules/daily/next?count=2", json!(null))
        .await;
    assert_eq!(next["timeZone"], "Europe/Berlin");
    assert_eq!(
        next["value"],
        json!([
            {"utc": "2030-01-01T08:30:00Z", "local": "2030-01-01T09:30:00+01:00"},
            {"utc": "2030-01-02T08:30:00Z", "local": "2030-01-02T09:30:00+01:00"},
        ])
    );
}

#[tokio::test]
async fn a_pipeline_that_active_schedules_start_cannot_be_disabled() {
    let (api, pipeline) = api().await;
    api.ok("PUT", "/v1/workspaces/mlws/schedules/b", hourly(&pipeline))
        .await;
    api.ok("PUT", "/v1/workspaces/mlws/schedules/a", hourly(&pipeline))
        .await;
    let refused = api
        .call(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{pipeline}/disable"),
            Some(json!({})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused.message().contains("active schedules use it: a, b"),
        "{}",
        refused.message()
    );
    api.ok("POST", "/v1/workspaces/mlws/schedules/a/disable", json!({}))
        .await;
    api.ok("DELETE", "/v1/workspaces/mlws/schedules/b", json!(null)).await;
    api.ok(
        "POST",
        &format!("/v1/workspaces/mlws/pipelines/{pipeline}/disable"),
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn readers_read_schedules_and_contributors_write_them() {
    let (api, pipeline) = api().await;
    api.ok("PUT", "/v1/workspaces/mlws/schedules/s", hourly(&pipeline))
        .await;
    let mut keys = Vec::new();
    for (name, role) in [("reader", "Reader"), ("contributor", "Contributor")] {
        let created = api.ok("POST", "/v1/principals", json!({"name": name})).await;
        api.ok(
            "POST",
            "/v1/roleAssignments",
            json!({"assignee": name, "role": role, "workspace": "mlws"}),
        )
        .await;
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let (reader, contributor) = (&keys[0], &keys[1]);
    for uri in [
        "/v1/workspaces/mlws/schedules",
        "/v1/workspaces/mlws/schedules/s",
        "/v1/workspaces/mlws/schedules/s/next",
        "/v1/workspaces/mlws/schedules/s/runs",
    ] {
        let read = api.call_as(reader, "GET", uri, None, None).await;
        assert_eq!(read.status, StatusCode::OK, "{uri}: {}", read.body);
    }
    let writes = [
        ("PUT", "/v1/workspaces/mlws/schedules/t", Some(hourly(&pipeline))),
        (
            "PATCH",
            "/v1/workspaces/mlws/schedules/s",
            Some(json!({"maxConcurrent": 3})),
        ),
        ("POST", "/v1/workspaces/mlws/schedules/s/disable", Some(json!({}))),
        ("POST", "/v1/workspaces/mlws/schedules/s/enable", Some(json!({}))),
        ("DELETE", "/v1/workspaces/mlws/schedules/t", None),
    ];
    for (method, uri, body) in writes {
        let refused = api.call_as(reader, method, uri, body.clone(), None).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{method} {uri}: {}",
            refused.body
        );
        let allowed = api.call_as(contributor, method, uri, body, None).await;
        assert!(allowed.status.is_success(), "{method} {uri}: {}", allowed.body);
    }
}

#[tokio::test]
async fn the_schedule_routes_are_in_the_openapi_document() {
    let (api, _) = api().await;
    let doc = api.call("GET", "/openapi.json", None).await;
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/v1/workspaces/{workspace}/schedules",
        "/v1/workspaces/{workspace}/schedules/{name}",
        "/v1/workspaces/{workspace}/schedules/{name}/next",
        "/v1/workspaces/{workspace}/schedules/{name}/runs",
        "/v1/workspaces/{workspace}/schedules/{name}/enable",
        "/v1/workspaces/{workspace}/schedules/{name}/disable",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }
}

#[tokio::test]
async fn a_change_schedule_shows_its_watch_and_stays_change_based() {
    let (api, pipeline) = api().await;
    let created = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/schedules/arrivals",
            Some(on_change(&pipeline)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let body = &created.body;
    assert_eq!(body["kind"], "change");
    assert_eq!(body["datastore"], "workspaceblobstore");
    assert_eq!(body["pathOnDatastore"], "incoming");
    assert_eq!(body["pollingInterval"], 5, "Azure ML's default: {body}");
    assert_eq!(body["recursive"], false);
    assert!(body["nextPollTime"].is_string(), "{body}");
    assert!(body["nextFireTime"].is_null(), "{body}");

    let next = api
        .call("GET", "/v1/workspaces/mlws/schedules/arrivals/next", None)
        .await;
    assert_eq!(next.status, StatusCode::BAD_REQUEST);
    assert!(next.message().contains("is change-based"), "{}", next.message());
    let to_time = json!({"recurrence": {"frequency": "Hour", "interval": 1}});
    let switch = api
        .call("PATCH", "/v1/workspaces/mlws/schedules/arrivals", Some(to_time))
        .await;
    assert_eq!(switch.status, StatusCode::CONFLICT, "{}", switch.body);
    assert!(
        switch.message().contains("change-based and cannot become time-based"),
        "{}",
        switch.message()
    );
    let changed = api
        .ok(
            "PATCH",
            "/v1/workspaces/mlws/schedules/arrivals",
            json!({"pollingInterval": 10, "recursive": true}),
        )
        .await;
    assert_eq!(
        (changed["pollingInterval"].clone(), changed["recursive"].clone()),
        (json!(10), json!(true))
    );
    assert_eq!(changed["pathOnDatastore"], "incoming", "what a change leaves out stays");
}
