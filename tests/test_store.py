from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from prmodel.layers import LayerConfig
from prmodel.measure.frames import layers_from_frame
from prmodel.measure.store import (
    FRAME_COLUMNS,
    SCHEMA_VERSION,
    Measurement,
    MeasurementStore,
    StoreError,
)

FINGERPRINT = {"target": "test", "cpu": "x"}


def conv(out: int, **params: object) -> LayerConfig:
    return LayerConfig.create(
        "conv", channels=8, height=8, width=8, out_channels=out, kernel=3, **params
    )


def ok(
    layer: LayerConfig, latency: float, target_id: str = "t1", digest: str = "h1"
) -> Measurement:
    return Measurement(
        layer=layer,
        target_id=target_id,
        fingerprint_hash=digest,
        latency_us=latency,
        median_us=latency + 1,
        min_us=latency - 1,
        p10_us=latency - 0.5,
        p90_us=latency + 2,
        mean_us=latency + 1.5,
        n=30,
        rounds=3,
        wall_median_us=latency + 5,
        reorder_median_us=2.0,
        extra={"rel_ci": 0.004},
    )


@pytest.fixture
def store(tmp_path: Path) -> MeasurementStore:
    with MeasurementStore(tmp_path / "deep" / "m.sqlite") as s:
        yield s


def test_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "m.sqlite"
    with MeasurementStore(path):
        pass
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert path.exists() and mode == "wal"


def test_record_round_trip(store: MeasurementStore) -> None:
    layer = conv(5, activation="relu", padding=1)
    measurement = ok(layer, 10.0)
    store.record(measurement)
    assert store.get("t1", "h1", layer.key) == measurement
    frame = store.frame()
    assert tuple(frame.columns) == FRAME_COLUMNS
    assert layers_from_frame(frame) == [layer]
    assert frame.loc[0, "extra"] == '{"rel_ci": 0.004}'


def test_error_rows_are_hidden_unless_asked(store: MeasurementStore) -> None:
    store.record(ok(conv(1), 3.0))
    failed = Measurement.failed(conv(2), target_id="t1", fingerprint_hash="h1", error="boom")
    store.record(failed)
    assert list(store.frame()["out_channels"]) == [1]
    frame = store.frame(include_errors=True)
    assert sorted(frame["status"]) == ["error", "ok"]
    assert store.get("t1", "h1", conv(2).key) == failed
    assert store.measured_keys("t1", "h1") == {conv(1).key, conv(2).key}


def test_record_upserts(store: MeasurementStore) -> None:
    store.record(Measurement.failed(conv(3), target_id="t1", fingerprint_hash="h1", error="x"))
    store.record(ok(conv(3), 7.0))
    frame = store.frame(include_errors=True)
    assert len(frame) == 1
    assert frame.loc[0, "status"] == "ok" and frame.loc[0, "latency_us"] == 7.0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [1, 2, 3]),
        ({"target_id": "t2"}, [3]),
        ({"target_id": "t1", "fingerprint_hash": "h9"}, [2]),
        ({"kind": "conv"}, [1, 2, 3]),
        ({"kind": "dense"}, []),
        ({"layer_keys": [conv(2).key]}, [2]),
        ({"layer_keys": []}, []),
    ],
)
def test_frame_filters(store: MeasurementStore, filters: dict, expected: list[int]) -> None:
    store.record(ok(conv(1), 1.0))
    store.record(ok(conv(2), 2.0, digest="h9"))
    store.record(ok(conv(3), 3.0, target_id="t2"))
    assert sorted(store.frame(**filters)["out_channels"]) == expected


def test_many_layer_keys(store: MeasurementStore) -> None:
    # More keys than SQLite accepts as bound variables in one statement.
    store.record(ok(conv(4), 4.0))
    keys = [f"k{i}" for i in range(40_000)] + [conv(4).key]
    assert list(store.frame(layer_keys=keys)["out_channels"]) == [4]


def test_plan_membership_is_many_to_many(store: MeasurementStore) -> None:
    for out in (1, 2, 3):
        store.record(ok(conv(out), float(out)))
    store.add_to_plan("pr-conv", "t1", "h1", [conv(1).key, conv(2).key])
    store.add_to_plan("test-conv", "t1", "h1", [conv(2).key, conv(3).key])
    store.add_to_plan("test-conv", "t1", "h1", [conv(3).key])  # idempotent
    store.add_to_plan("other-target", "t2", "h1", [conv(1).key])
    assert sorted(store.frame(plan="pr-conv")["out_channels"]) == [1, 2]
    assert sorted(store.frame(plan="test-conv")["out_channels"]) == [2, 3]
    assert store.frame(plan="other-target").empty
    assert store.frame(plan="nope").empty
    assert store.plan_names() == ["other-target", "pr-conv", "test-conv"]
    assert store.plan_names(target_id="t2") == ["other-target"]


def test_a_changed_plan_replaces_only_its_own_target_s_members(store: MeasurementStore) -> None:
    store.add_to_plan("pr-conv", "t1", "h1", [conv(1).key, conv(2).key])
    store.add_to_plan("pr-conv", "t2", "h2", [conv(3).key])
    dropped = store.set_plan_members("pr-conv", "t1", "h1", [conv(2).key, conv(4).key])
    assert dropped == 1  # conv(1) on t1
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT target_id, layer_key FROM plan_members WHERE plan = 'pr-conv'")
        members = sorted(rows.fetchall())
    assert members == sorted(
        [("t1", conv(2).key), ("t1", conv(4).key), ("t2", conv(3).key)]
    )  # t2's member of a plan of the same name is kept


def test_register_target_keeps_fingerprint(store: MeasurementStore) -> None:
    digest = store.register_target("t1", FINGERPRINT)
    store.record(ok(conv(1), 1.0, digest=digest))
    targets = store.targets()
    assert list(targets["target_id"]) == ["t1"]
    assert '"cpu": "x"' in targets.loc[0, "fingerprint"]
    assert store.summary().to_dict("records")[0]["ok"] == 1


def test_machine_speed_by_hour_from_the_canary(store: MeasurementStore) -> None:
    # two points in hour 04 with the canary at 100 and 110 µs, one in hour 05 at 90 µs
    readings = [(1, "2026-11-27T04:10:00+00:00", 100.0), (2, "2026-11-27T04:50:00+00:00", 110.0),
                (3, "2026-11-27T05:05:00+00:00", 90.0)]  # fmt: skip
    for out, when, canary in readings:
        store.record(replace(ok(conv(out), 5.0), measured_at=when, extra={"canary_us": canary}))
    store.record(ok(conv(4), 5.0))  # no canary (a simulator, or measured before it was kept)
    speed = store.machine_speed()
    assert speed["hour"].tolist() == ["2026-11-27T04", "2026-11-27T05"]
    assert speed["points"].tolist() == [2, 1]
    assert speed["canary_us"].tolist() == pytest.approx([105.0, 90.0])
    assert speed["relative"].tolist() == pytest.approx([105 / 90, 1.0])
    assert set(speed["target_id"]) == {"t1"} and set(speed["fingerprint"]) == {"h1"}


def test_machine_speed_is_empty_without_canary_readings(store: MeasurementStore) -> None:
    store.record(ok(conv(1), 5.0))
    assert store.machine_speed().empty


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export(store: MeasurementStore, tmp_path: Path, suffix: str) -> None:
    digest = store.register_target("t1", {"cpu_model": "Example CPU", "threads": 1})
    store.record(ok(conv(1), 1.0, digest=digest))
    store.record(ok(conv(2), 2.0, target_id="t2"))
    out = tmp_path / f"out{suffix}"
    assert store.export(out, target_id="t1") == 1
    back = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(back.columns) == [*FRAME_COLUMNS, "fingerprint"]
    assert list(back["latency_us"]) == [1.0]
    # the file names the machine that measured it, not only a hash of it
    assert json.loads(back["fingerprint"].iloc[0]) == {"cpu_model": "Example CPU", "threads": 1}


def test_export_refuses_other_formats(store: MeasurementStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"out\.xlsx.*\.parquet or \.csv"):
        store.export(tmp_path / "out.xlsx")


def test_store_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with MeasurementStore(path) as s:
        s.record(ok(conv(1), 1.0))
    with MeasurementStore(path) as s:
        assert s.measured_keys("t1", "h1") == {conv(1).key}


def test_wrong_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    MeasurementStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="schema version"):
        MeasurementStore(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match=r"cannot open measurement store .*m\.sqlite"):
        MeasurementStore(path)
