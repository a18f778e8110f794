"""Publishes to an mlgrid topic with Microsoft's azure-eventgrid client.

Usage: azure_sdk_publish.py ENDPOINT KEY

Sends Event Grid events, CloudEvents and a raw dict the way Event Grid clients do, then
checks that a wrong key is refused with 401. The Rust test that runs this script reads
the topic's log back and checks every field.
"""

import sys
from datetime import datetime, timezone

from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, SystemEventNames


def main(endpoint: str, key: str) -> None:
    client = EventGridPublisherClient(endpoint, AzureKeyCredential(key))
    client.send(
        [
            EventGridEvent(
                subject="models/churn:3",
                event_type=SystemEventNames.MachineLearningServicesModelRegisteredEventName,
                data={"ModelName": "churn", "ModelVersion": 3, "ModelTags": {"stage": "prod"}, "ModelProperties": {}},
                data_version="1",
                id="sdk-eg-1",
                event_time=datetime(2026, 11, 26, 16, 0, 0, 123456, tzinfo=timezone.utc),
            ),
            EventGridEvent(subject="orders/2", event_type="Shop.OrderPlaced", data={"total": 12.5}, data_version="2.0", id="sdk-eg-2"),
        ]
    )
    client.send([CloudEvent(source="/mlgrid/tests", type="com.example.trained", data={"accuracy": 0.93}, subject="runs/7", id="sdk-ce-1")])
    client.send({"id": "sdk-dict-1", "subject": "raw", "eventType": "Raw.Dict", "eventTime": "2026-11-26T16:00:00Z", "data": None, "dataVersion": "1"})

    wrong = EventGridPublisherClient(endpoint, AzureKeyCredential("not-a-key"))
    try:
        wrong.send([EventGridEvent(subject="x", event_type="X", data={}, data_version="1")])
    except HttpResponseError as error:
        assert error.status_code == 401, error.status_code
    else:
        raise AssertionError("a wrong key was accepted")
    print("published 4 events with azure-eventgrid; a wrong key got 401")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
