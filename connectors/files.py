"""JSON Lines files as the flow's inputs and outputs, for `replay`.

Each input file is one partition of its topic; a record's offset is its line number (from 0).
Outputs go to `<out>/<topic>.jsonl`, one file per contract output, created even when empty.
"""

from __future__ import annotations

from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.records import OutputBatch, OutputRecord, RawBatch

OUTPUT_TOPICS = ("alerts", "merchant-notifications", "route-scores", "dead-letter")


class _FileReader(StatefulSourcePartition):
    def __init__(self, role: str, path: Path, start_line: int, batch_size: int):
        self.role, self.batch_size = role, batch_size
        self.file = path.open("rb")
        self.line = 0
        for _ in range(start_line):
            self.file.readline()
            self.line += 1
        self.finished = False

    def next_batch(self) -> list[RawBatch]:
        if self.finished:
            raise StopIteration
        records = []
        for _ in range(self.batch_size):
            raw = self.file.readline()
            if not raw:
                self.finished = True
                break
            value = raw.rstrip(b"\r\n")
            if value.strip():
                records.append((self.line, None, value))
            self.line += 1
        return [RawBatch(self.role, 0, records, self.finished)]

    def snapshot(self) -> int:
        return self.line

    def close(self) -> None:
        self.file.close()


class JsonLinesInputs(FixedPartitionedSource):
    def __init__(self, files: dict[str, Path], batch_size: int = 10_000):
        self.files = files  # contract topic name -> file
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"{role}/0" for role in self.files]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        role = for_part.rsplit("/", 1)[0]
        return _FileReader(role, self.files[role], resume_state or 0, self.batch_size)


class _FileWriter(StatelessSinkPartition):
    def __init__(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files = {topic: (out_dir / f"{topic}.jsonl").open("wb") for topic in OUTPUT_TOPICS}

    def write_batch(self, items: list[OutputRecord | OutputBatch]) -> None:
        for item in items:
            out = self.files[item.topic]
            if type(item) is OutputBatch:
                out.write(b"\n".join([value for _key, value in item.records]))
            else:
                out.write(item.value)
            out.write(b"\n")

    def close(self) -> None:
        for out in self.files.values():
            out.close()


class JsonLinesOutputs(DynamicSink):
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int):
        return _FileWriter(self.out_dir)
