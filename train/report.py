"""A short markdown report of training runs: accuracy by length per configuration.

The analysis layer will grow this into the full report; until then it shows what
training produced: each run's length-generalization table and curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from train import plots
from train.callbacks import LENGTH_TABLE


def load_runs(run_dirs: list[Path]) -> pd.DataFrame:
    """The final length-generalization rows of every run, with the run's settings as columns."""
    frames = []
    for run_dir in run_dirs:
        table = pd.read_csv(run_dir / LENGTH_TABLE)
        table = table[table.step == table.step.max()].copy()
        info = json.loads((run_dir / "run_info.json").read_text())
        table["run"] = run_dir.name
        table["language"] = info["language"]
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def write_report(run_dirs: list[Path], out_dir: Path, title: str = "softhard runs") -> Path:
    """report.md plus one accuracy-by-length PNG per language, in ``out_dir``."""
    import matplotlib.pyplot as plt

    runs = load_runs(run_dirs)
    lines = [f"# {title}", "", "Accuracy by test length (final step of each run).", ""]
    for language, rows in runs.groupby("language", sort=False):
        figure, axes = plt.subplots(figsize=(6.5, 3.8))
        for run, run_rows in rows.groupby("run", sort=False):
            plots.accuracy_by_length(run_rows, title=f"{language}: accuracy by length", label=run, axes=axes)
        image = plots.save(figure, out_dir / f"accuracy_by_length_{language}.png")
        summary = rows.groupby(["run", "split"], sort=False)[["string_accuracy", "position_accuracy"]].mean()
        lines += [f"## {language}", "", f"![accuracy by length]({image.name})", "", _markdown(summary.reset_index()), ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    rows = ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
            for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
