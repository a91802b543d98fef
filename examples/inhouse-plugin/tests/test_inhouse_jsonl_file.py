"""``jsonl_file`` behaviour, called directly."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlplatform_inhouse.channels import JsonlFileChannel

from mlplatform.core.backends import Alert
from mlplatform.core.errors import BackendError


def make_alert(index: int = 1) -> Alert:
    return Alert(
        title=f"drift #{index}",
        severity="warning",
        state="firing",
        project="churn",
        labels={"feature": "age"},
        values={"mean_shift": 0.4},
        alert_id=index,
        occurred_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    )


def test_appends_one_json_line_per_alert(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "audit.jsonl"
    channel = JsonlFileChannel({"path": str(path)})
    channel.send(make_alert(1))
    channel.send(make_alert(2))
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [make_alert(1).to_dict(), make_alert(2).to_dict()]


def test_relative_path_is_under_data_dir(tmp_path: Path) -> None:
    channel = JsonlFileChannel({"path": "alerts/audit.jsonl"}, SimpleNamespace(data_dir=tmp_path))
    channel.send(make_alert())
    assert (tmp_path / "alerts" / "audit.jsonl").is_file()


def test_concurrent_sends_keep_lines_whole(tmp_path: Path) -> None:
    channel = JsonlFileChannel({"path": str(tmp_path / "audit.jsonl")})
    threads = [threading.Thread(target=channel.send, args=(make_alert(i),)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = sorted(json.loads(line)["alert_id"] for line in (tmp_path / "audit.jsonl").read_text().splitlines())
    assert ids == list(range(20))


def test_write_failure_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    channel = JsonlFileChannel({"path": str(tmp_path / "a-file" / "audit.jsonl")})
    with pytest.raises(BackendError, match="cannot write"):
        channel.send(make_alert())
