"""Run results on disk: `metrics.csv` and `summary.json` per run, `results.csv` per sweep."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
METRICS = "metrics.csv"
SWEEP_TABLE = "results.csv"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or infinity, so they are written as strings that every reader can parse.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write `summary.json` into the run directory, replacing any earlier one atomically."""
    path = Path(run_dir) / SUMMARY
    _write_atomically(path, json.dumps(_json_safe(summary), indent=2, sort_keys=False) + "\n")
    return path


def write_metrics_table(run_dir: Path, history: list[dict[str, float]]) -> Path:
    """Write one row per epoch of `history` to `metrics.csv`; missing values stay empty."""
    path = Path(run_dir) / METRICS
    columns: list[str] = []
    for record in history:
        columns.extend(key for key in record if key not in columns)
    _write_atomically(path, _csv_text(columns, history))
    return path


def _csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """Split Hydra task overrides such as `model=lif` or `+trainer.x=1` into `{key: value}`."""
    parsed = {}
    for override in overrides:
        key, _, value = override.partition("=")
        parsed[key.lstrip("+~")] = value
    return parsed


def collect_sweep_rows(sweep_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Read every `summary.json` below a sweep directory into table rows.

    **Returns:** the columns and one row per job, sorted by job number. The columns
    start with the job number, the status and each override key. The epochs
    completed, the best epoch and each metric follow in order of first appearance.
    The last columns are the error message of a failed job and the job's directory
    relative to the sweep directory.
    """
    rows = []
    for path in sorted(Path(sweep_dir).rglob(SUMMARY)):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("Skipping %s in the sweep table: %s", path, error)
            continue
        row = {"job": summary.get("job"), "status": summary.get("status"),
               "run_dir": os.path.relpath(path.parent, sweep_dir)}
        row.update(summary.get("overrides", {}))
        for key in ("epochs_completed", "best_epoch"):
            if key in summary:
                row[key] = summary[key]
        row.update(summary.get("metrics", {}))
        if summary.get("error"):
            row["error"] = summary["error"]
        rows.append(row)
    rows.sort(key=lambda row: (row["job"] is None, row["job"] if row["job"] is not None else 0))

    columns = ["job", "status"]
    for row in rows:
        columns.extend(key for key in row if key not in columns and key not in ("error", "run_dir"))
    if any("error" in row for row in rows):
        columns.append("error")
    columns.append("run_dir")
    return columns, rows


def update_sweep_table(sweep_dir: Path) -> Path:
    """Rewrite `results.csv` in the sweep directory from all job summaries written so far.

    Each job calls this after writing its own summary, under an exclusive lock, so
    the table is complete after the last job even when jobs run in parallel.
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / f".{SWEEP_TABLE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        columns, rows = collect_sweep_rows(sweep_dir)
        path = sweep_dir / SWEEP_TABLE
        _write_atomically(path, _csv_text(columns, rows))
    return path
