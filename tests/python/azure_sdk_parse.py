"""Parses events that mlgrid raised with Microsoft's azure-eventgrid client.

Usage: azure_sdk_parse.py < events.json   (a JSON array of Event Grid events)

Each event must parse as an EventGridEvent, and its data, subject and type must come
through unchanged: mlgrid's additions to the envelope (sequence, etag) must not get in
the way. Prints one line per event: eventType subject.
"""

import json
import sys

from azure.eventgrid import EventGridEvent, SystemEventNames


def main() -> None:
    raw = json.load(sys.stdin)
    known = {
        SystemEventNames.MachineLearningServicesModelRegisteredEventName,
        SystemEventNames.MachineLearningServicesModelDeployedEventName,
        SystemEventNames.MachineLearningServicesRunCompletedEventName,
        SystemEventNames.MachineLearningServicesRunStatusChangedEventName,
        SystemEventNames.MachineLearningServicesDatasetDriftDetectedEventName,
    }
    for item in raw:
        event = EventGridEvent.from_dict(item)
        assert event.event_type in known, event.event_type
        assert event.subject == item["subject"]
        assert event.id == item["id"]
        assert event.topic == item["topic"]
        assert event.data == item["data"], (event.data, item["data"])
        assert event.data_version == item["dataVersion"]
        print(event.event_type, event.subject)


if __name__ == "__main__":
    main()
