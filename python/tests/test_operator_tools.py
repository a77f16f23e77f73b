"""The operator tools' wrappers (reset, savepoints, get-at, paged history, list-stages, labels,
export and import of a stage)
where they do more than pass a value on: `history_entries` and `history` page through a history
too large for one answer, values are range-checked before wasm, and options lift to None. The
behaviour itself is the conformance cases' (tests/conformance/cases/operator-tools.json)."""

from __future__ import annotations

import pytest

from pipeline_checkpoint import (
    Checkpoint,
    Checkpointer,
    Codec,
    DictStorage,
    HistoryEntry,
    HistoryPage,
    HistoryRequest,
    ImportAction,
    ImportReceipt,
    InvalidInput,
    OperatorState,
    Options,
    Regression,
    ResetOrigin,
    ResetReceipt,
    ResetRequest,
    ResumePoint,
    Runtime,
    SavepointInfo,
    StageExport,
    StageSummary,
    StoredCopy,
    StoredSavepoint,
    Watermark,
)

MiB = 1 << 20


def cp(sequence: int, offset: int, *, state: bytes = b"", epoch: int = 1) -> Checkpoint:
    return Checkpoint(
        run_id="run",
        stage="stage",
        sequence=sequence,
        epoch=epoch,
        watermark=Watermark(offset=offset, event_time_ms=offset),
        operator_states=[OperatorState("count", state)],
        at_ms=sequence,
    )


def test_history_and_history_entries_read_a_history_larger_than_one_answer_whole() -> None:
    # 8 MiB of memory serves answers of 2 MiB (a quarter) and accepts checkpoints of 300 kB
    # (3 x (300 kB + 1 MiB) + 4 MiB <= 8 MiB): ten of 250 kB need two pages.
    runtime = Runtime(max_memory_bytes=8 * MiB)
    options = Options(namespace="test", max_retained=10, max_checkpoint_bytes=300_000)
    checkpointer = Checkpointer.open(DictStorage(), None, options, runtime=runtime)
    written = [cp(s, s, state=bytes([s]) * 250_000) for s in range(1, 11)]
    for c in written:
        checkpointer.write(c)

    # The component's own limit: its one-answer `history` export refuses this history, and a
    # page of the largest size (max_bytes 0) holds fewer than all.
    with pytest.raises(InvalidInput) as too_large:
        checkpointer._call("[method]checkpointer.history", "run", "stage")
    assert too_large.value.field == "history"
    first = checkpointer.history_page("run", "stage", HistoryRequest(100))
    assert first.next_after is not None and 0 < len(first.entries) < 10

    # The host reads it whole all the same, page by page, as the Rust host does.
    entries = checkpointer.history_entries("run", "stage")
    assert [e.checkpoint for e in entries] == written
    assert all(isinstance(e, HistoryEntry) and e.reset is None for e in entries)
    assert all(e.encoded_bytes > 250_000 for e in entries)
    history = checkpointer.history("run", "stage")
    assert history == written
    assert history[-1] == checkpointer.get("run", "stage")
    assert history == [e.checkpoint for e in entries]


def test_history_entries_of_nothing_is_empty_and_small_pages_concatenate() -> None:
    checkpointer = Checkpointer.open(
        DictStorage(), None, Options(namespace="test", max_retained=5, max_checkpoint_bytes=65536)
    )
    assert checkpointer.history_entries("run", "stage") == []
    for s in range(1, 6):
        checkpointer.write(cp(s, s * 10))
    pages, request = [], HistoryRequest(2)
    while True:
        page = checkpointer.history_page("run", "stage", request)
        assert isinstance(page, HistoryPage)
        pages.append([e.checkpoint.sequence for e in page.entries])
        if page.next_after is None:
            break
        request = HistoryRequest(after_sequence=page.next_after, max_checkpoints=2)
    assert pages == [[1, 2], [3, 4], [5]]
    assert [e.checkpoint for e in checkpointer.history_entries("run", "stage")] == (
        checkpointer.history("run", "stage")
    )


def test_reset_and_savepoints_lift_to_the_package_types() -> None:
    checkpointer = Checkpointer.open(
        DictStorage(), None, Options(namespace="test", max_retained=3, max_checkpoint_bytes=65536)
    )
    checkpointer.write(cp(1, 10, state=b"\x0a", epoch=2))
    info = checkpointer.create_savepoint("run", "stage", "keep")
    assert info == SavepointInfo(
        name="keep",
        point=ResumePoint("run", "stage", 1, 2, Watermark(10, 10)),
        at_ms=1,
        encoded_bytes=info.encoded_bytes,
    )
    receipt = checkpointer.reset(ResetRequest("run", "stage", Watermark(3, 0), at_ms=7))
    assert isinstance(receipt, ResetReceipt)
    assert (receipt.checkpoint.sequence, receipt.checkpoint.epoch) == (2, 3)
    assert receipt.origin == ResetOrigin(1, 2, Watermark(10, 10), None)
    restored = checkpointer.restore_savepoint("run", "stage", "keep", at_ms=8, epoch=9)
    assert restored.origin.savepoint == "keep"
    assert restored.checkpoint.operator_states == (OperatorState("count", b"\x0a"),)
    assert checkpointer.get_at("run", "stage", 3) == restored.checkpoint
    [summary] = checkpointer.list_stages()
    assert isinstance(summary, StageSummary)
    assert summary.latest is not None and summary.latest.epoch == 9
    assert summary.reset == restored.origin and summary.damage is None
    assert summary.savepoints == 1
    assert checkpointer.list_stages("other") == []
    assert checkpointer.delete_savepoint("run", "stage", "keep") is True
    assert checkpointer.delete_savepoint("run", "stage", "keep") is False


def test_export_and_import_copy_a_stage_byte_for_byte() -> None:
    options = Options(namespace="test", max_retained=3, max_checkpoint_bytes=65536)
    source, target = DictStorage(), DictStorage()
    exporter = Checkpointer.open(source, None, options)
    for s in range(1, 6):
        exporter.write(cp(s, s * 10, state=bytes([s])))
    exporter.create_savepoint("run", "stage", "keep", 4)
    exported = exporter.export_stage("run", "stage")
    assert isinstance(exported, StageExport)
    assert (exported.run_id, exported.stage) == ("run", "stage")
    assert isinstance(exported.latest, bytes)
    assert [c.sequence for c in exported.retained] == [3, 4, 5]
    assert all(isinstance(c, StoredCopy) and isinstance(c.bytes, bytes) for c in exported.retained)
    assert [(p.name, type(p.bytes)) for p in exported.savepoints] == [("keep", bytes)]

    importer = Checkpointer.open(target, None, options)
    dry = importer.import_stage(exported, dry_run=True)
    assert dry.action is ImportAction.CREATED and target.list_keys("") == []
    receipt = importer.import_stage(exported)
    assert receipt == ImportReceipt(ImportAction.CREATED, 5, 0, receipt.bytes_written)
    assert receipt.bytes_written == len(exported.latest) + sum(
        len(e.bytes) for e in (*exported.retained, *exported.savepoints)
    )
    assert sorted(target.list_keys("")) == sorted(source.list_keys(""))
    assert all(target.get(k).value == source.get(k).value for k in source.list_keys(""))
    assert importer.history("run", "stage") == exporter.history("run", "stage")
    assert importer.export_stage("run", "stage") == exported
    # Again: every entry is there with the same bytes, nothing is written.
    assert importer.import_stage(exported) == ImportReceipt(ImportAction.IDENTICAL, 0, 0, 0)
    # Into another namespace of the same store.
    other = Checkpointer.open(source, None, Options("other", 3, 65536))
    assert other.import_stage(exported).action is ImportAction.CREATED
    assert other.get("run", "stage") == exporter.get("run", "stage")


def test_importing_over_an_older_stage_needs_replace_older() -> None:
    options = Options(namespace="test", max_retained=2, max_checkpoint_bytes=65536)
    older = Checkpointer.open(DictStorage(), None, options)
    for s in (1, 2):
        older.write(cp(s, s))
    newer = Checkpointer.open(DictStorage(), None, options)
    for s in (1, 2, 3, 4):
        newer.write(cp(s, s + 100))
    exported, before = newer.export_stage("run", "stage"), older.export_stage("run", "stage")

    with pytest.raises(InvalidInput) as refused:
        older.import_stage(exported)
    assert refused.value.field == "replace-older"
    assert older.get("run", "stage") == cp(2, 2)
    dry = older.import_stage(exported, replace_older=True, dry_run=True)
    assert dry.action is ImportAction.REPLACED
    assert older.get("run", "stage") == cp(2, 2)
    receipt = older.import_stage(exported, replace_older=True)
    assert receipt == dry == ImportReceipt(ImportAction.REPLACED, 3, 2, receipt.bytes_written)
    assert older.history("run", "stage") == newer.history("run", "stage")
    assert older.import_stage(exported).action is ImportAction.IDENTICAL
    # The newer store refuses the older chain, even with `replace_older`: it is newer.
    with pytest.raises(Regression):
        newer.import_stage(before, replace_older=True)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.reset(ResetRequest("run", "stage", Watermark(0, 0), epoch=-1, at_ms=0)),
         "request.epoch"),
        (lambda c: c.reset(ResetRequest("run", "stage", Watermark(0, 0), at_ms=1 << 64)),
         "request.at-ms"),
        (lambda c: c.history_page("run", "stage", HistoryRequest(1 << 32)),
         "request.max-checkpoints"),
        (lambda c: c.history_page("run", "stage", HistoryRequest(1, after_sequence=-1)),
         "request.after-sequence"),
        (lambda c: c.get_at("run", "stage", -1), "sequence"),
        (lambda c: c.create_savepoint("run", "stage", "n", sequence="1"), "sequence"),
        (lambda c: c.restore_savepoint("run", "stage", 5, at_ms=0), "name"),
        (lambda c: c.list_stages(7), "run-id"),
        (lambda c: c.import_stage(StageExport("run", "stage", "00")), "exported.latest"),
        (lambda c: c.import_stage(StageExport("run", "stage", None, retained=[StoredCopy(-1, b"")])),
         "exported.retained[0].sequence"),
        (lambda c: c.import_stage(StageExport("run", "stage", None, savepoints=[StoredSavepoint(
            "n", [1])])), "exported.savepoints[0].bytes"),
        (lambda c: c.import_stage(("run", "stage", None)), "exported"),
        (lambda c: c.import_stage(StageExport("run", "stage", None), 1), "replace-older"),
        (lambda c: c.import_stage(StageExport("run", "stage", None), dry_run=None), "dry-run"),
        (lambda c: c.export_stage("run", b"stage"), "stage"),
    ],
)  # fmt: skip
def test_values_are_checked_before_the_component_is_called(call, field) -> None:
    checkpointer = Checkpointer.open(
        DictStorage(), None, Options(namespace="test", max_retained=1, max_checkpoint_bytes=65536)
    )
    with pytest.raises(InvalidInput) as refused:
        call(checkpointer)
    assert refused.value.field == field


def test_restore_savepoint_takes_at_ms_by_name() -> None:
    checkpointer = Checkpointer.open(
        DictStorage(), None, Options(namespace="test", max_retained=1, max_checkpoint_bytes=65536)
    )
    with pytest.raises(TypeError):
        checkpointer.restore_savepoint("run", "stage", "keep", 5)  # type: ignore[misc]


def test_labels_are_the_components_lines() -> None:
    codec = Codec()
    assert codec.watermark_label(Watermark(42, 1_733_238_983_000)) == (
        "offset 42, event time 2024-12-03T15:16:23.000Z"
    )
    fresh = ResumePoint("r", "s", 0, 0, Watermark(0, 0))
    assert codec.resume_point_label(fresh) == (
        'run "r" stage "s" starts fresh at offset 0 (nothing stored)'
    )
    label = codec.checkpoint_label(cp(1, 0))
    assert label.startswith('run "run" stage "stage" #1 epoch 1 at offset 0')
    assert label.endswith(f"; {len(codec.encode(cp(1, 0)))} bytes)")
    with pytest.raises(InvalidInput) as refused:
        codec.watermark_label(Watermark(-1, 0))
    assert refused.value.field == "watermark.offset"
