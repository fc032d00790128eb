"""The reference harness's published results, read into records and scored our way.

`import_reference` reads a folder in the format of the PostTrainBench website's `data/`
(benchmark × base model tables, scores in [0, 1]):

- `aggregated_avg_<agent>.csv` (+ `aggregated_std_<agent>.csv`): mean (std) over seeds per cell;
- `final_<agent>.csv`: one run per cell, failed cells already holding the base model's score,
  with `aggregated_<agent>.csv` marking those cells `ERR` or `not stored`;
- `aggregated_baseline*.csv`: base and instruct model rows (v1.2's `data/v1.2/` has none: our
  copy of v1.0's table is used, over the folder's benchmarks);
- `single_metrics_aggregated.csv` (agent, avg, std, n): the site's own weighted averages;
- `factors.json`, or `factors-<version>.json` beside or above a `<version>/` folder: its weights.

Each agent's average is recomputed from its cells with `scoring.weights` (the paper weighting,
from the folder's baseline table) and `scoring.weighted_average`; the site's number is kept next
to it. A board belongs to the suite with its benchmarks. `load_published(suite)` reads the copy
shipped in `data/published/<version>/` (see its SOURCE.md); `with_published_rows` adds the
agents to a leaderboard as rows labelled "<agent> (published)". An import of a folder is stored
as `<results>/imported/<name>/published.json`.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import Field

from posttrainbench.catalog import MODELS
from posttrainbench.catalog.suites import SUITES
from posttrainbench.catalog.suites import suite as get_suite
from posttrainbench.errors import ConfigError, ResultsDirError, UnknownNameError
from posttrainbench.records import (
    AgentConfig,
    Leaderboard,
    LeaderboardCell,
    LeaderboardSection,
    Record,
    Versioned,
)
from posttrainbench.results import scoring
from posttrainbench.results.baselines import BaselineTable
from posttrainbench.results.baselines import published as published_baselines
from posttrainbench.results.store import read_json, write_json

SHIPPED_DIR = Path(__file__).parent / "data" / "published"
PUBLISHED_SUFFIX = " (published)"
REFERENCE_BUDGET_S = 10 * 3600  # every published run had the paper's 10-hour budget
Fallback = Literal["error", "not_stored", "not_available"]
# the markers of single-run tables where a cell has no score of its own
MARKERS: dict[str, Fallback] = {
    "ERR": "error",
    "not stored": "not_stored",
    "not avl.": "not_available",
}


class PublishedCell(Record):
    """One benchmark × base model cell of a published table."""

    benchmark: str
    base_model: str = Field(description="Base model as the tables name it: the repo name.")
    score: float = Field(ge=0, le=1, description="Mean over seeds (the one run's score if n=1).")
    std: float | None = Field(default=None, description="Std over seeds, where published.")
    fallback: Fallback | None = Field(
        default=None,
        description="Set where the run produced no score (`ERR`), none was kept (`not stored`)"
        " or none was available (`not avl.`): the score is then the base model's.",
    )


class PublishedAgent(Record):
    """One agent of the published results, with its average recomputed by our scoring."""

    name: str = Field(description="The name in the file names, e.g. 'Opus-4.6'.")
    sources: list[str] = Field(description="The files its cells were read from.")
    n_seeds: int | None = Field(default=None, description="Seeds behind each cell, where known.")
    cells: list[PublishedCell]
    average: float | None = Field(
        default=None,
        description="Weighted average in [0, 1] by our scoring; None if cells are missing.",
    )
    site_average: float | None = Field(
        default=None, description="The site's own average, if given."
    )
    site_std: float | None = Field(default=None, description="The site's std over seeds, if given.")


class PublishedBaseline(Record):
    """A baseline table: zero-shot or few-shot base and instruct model rows."""

    name: str = Field(description="'baseline', 'baseline_fewshot', ...")
    source: str
    models: dict[str, dict[str, float]] = Field(description="Model → benchmark → score.")


class PublishedAverage(Record):
    """One row of the site's own averages (`single_metrics_aggregated.csv`)."""

    agent: str
    average: float
    std: float | None = None
    n: int | None = None


class PublishedSource(Record):
    repo: str | None = Field(default=None, description="owner/name of the repository, where known.")
    commit: str | None = None
    folder: str = Field(description="The folder inside the repository, or the path read.")
    date: str | None = Field(default=None, description="When the tables were copied, where known.")


class PublishedBoard(Versioned):
    """Published results of the reference harness, as imported."""

    source: PublishedSource
    suite: str | None = Field(
        default=None, description="The suite with exactly these benchmarks, if any."
    )
    benchmarks: list[str]
    base_models: list[str] = Field(description="Repo names of the grid's base models.")
    weights: dict[str, float] = Field(description="Our paper weights of the benchmarks.")
    site_weights: dict[str, float] | None = Field(
        default=None, description="The site's factors.json."
    )
    agents: list[PublishedAgent] = Field(description="Best recomputed average first.")
    baselines: list[PublishedBaseline] = Field(default_factory=list)
    site_averages: list[PublishedAverage] = Field(
        default_factory=list, description="Every row of the site's averages, as published."
    )


# --- reading ------------------------------------------------------------------------------------


def _bad(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}: {problem}", "is this a data/ folder of the PostTrainBench website, unedited?"
    )


def _rows(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(benchmark columns, model → benchmark → raw value) of one grid table."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _bad(path, f"cannot read: {exc}") from exc
    if not rows or not rows[0] or rows[0][0] != "model":
        raise _bad(path, "the first column must be 'model'")
    header = rows[0]
    benchmarks = header[1:]
    if not benchmarks or len(set(benchmarks)) != len(benchmarks):
        raise _bad(path, "no benchmark columns, or a column twice")
    grid: dict[str, dict[str, str]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise _bad(path, f"line {n} has {len(row)} fields, the header {len(header)}")
        if row[0] in grid:
            raise _bad(path, f"model {row[0]!r} appears twice")
        grid[row[0]] = dict(zip(benchmarks, row[1:], strict=True))
    if not grid:
        raise _bad(path, "no rows")
    return benchmarks, grid


def _score(path: Path, model: str, benchmark: str, raw: str, *, upper: float = 1.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad(path, f"{model}/{benchmark}: {raw!r} is not a number") from None
    if not (math.isfinite(value) and 0 <= value <= upper):
        raise _bad(path, f"{model}/{benchmark}: {raw!r} is not a score in [0, {upper:g}]")
    return value


def _numbers(path: Path, *, upper: float = 1.0) -> tuple[list[str], dict[str, dict[str, float]]]:
    benchmarks, grid = _rows(path)
    return benchmarks, {
        m: {b: _score(path, m, b, v, upper=upper) for b, v in row.items()}
        for m, row in grid.items()
    }


def _markers(path: Path) -> dict[tuple[str, str], Fallback]:
    """(benchmark, model) → marker of the cells a single-run table lists as ERR / not stored."""
    _, grid = _rows(path)
    found: dict[tuple[str, str], Fallback] = {}
    for m, row in grid.items():
        for b, raw in row.items():
            if raw in MARKERS:
                found[(b, m)] = MARKERS[raw]
            else:
                _score(path, m, b, raw)
    return found


def _site_averages(path: Path) -> list[PublishedAverage]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _bad(path, f"cannot read: {exc}") from exc
    result = []
    for row in rows:
        try:
            result.append(
                PublishedAverage(
                    agent=row["agent"],
                    average=float(row["avg"]),
                    std=float(row["std"]) if row.get("std") else None,
                    n=int(row["n"]) if row.get("n") else None,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(path, f"row {row!r} is not agent,avg,std,n") from exc
    return result


def _source(folder: Path) -> PublishedSource:
    """Where the tables came from: the folder's SOURCE.md, else its git checkout, else the path."""
    source_md = folder / "SOURCE.md"
    if source_md.is_file():
        text = source_md.read_text()
        fields = dict(re.findall(r"^- ([a-z ]+): (.+)$", text, flags=re.M))
        return PublishedSource(
            repo=fields.get("repository"),
            commit=fields.get("commit"),
            folder=fields.get("folder", folder.name),
            date=fields.get("copied") or fields.get("commit date"),
        )

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() or None if done.returncode == 0 else None

    url = git("config", "--get", "remote.origin.url")
    repo = (
        re.sub(r"(\.git)?/*$", "", url).split(":")[-1].removeprefix("//github.com/")
        if url
        else None
    )
    prefix = git("rev-parse", "--show-prefix")
    return PublishedSource(
        repo=repo, commit=git("rev-parse", "HEAD"), folder=prefix or str(folder.resolve())
    )


def _data_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a directory", "pass the website's data/ folder")
    if not any(folder.glob("*.csv")) and (folder / "data").is_dir():
        return folder / "data"
    return folder


def _site_factors(folder: Path) -> Path | None:
    """The site's weights: `factors.json` in the folder, else `factors-<folder name>.json` in
    it or its parent (the website keeps `data/factors-v1.2.json` beside `data/v1.2/`)."""
    for path in (
        folder / "factors.json",
        folder / f"factors-{folder.name}.json",
        folder.parent / f"factors-{folder.name}.json",
    ):
        if path.is_file():
            return path
    return None


def suite_of(benchmarks: list[str]) -> str | None:
    """The suite whose benchmarks are exactly these, if one is."""
    return next((s.id for _, s in SUITES if sorted(s.benchmarks) == sorted(benchmarks)), None)


def _weights(table: BaselineTable, benchmarks: list[str], path: Path) -> dict[str, float]:
    w, kind = scoring.weights(table, benchmarks)
    if kind != "paper":
        raise _bad(path, "the baseline table gives no positive instruct − base gap for every"
                   " benchmark, so there are no paper weights")  # fmt: skip
    return w


def _average(cells: list[PublishedCell], w: dict[str, float], models: list[str]) -> float | None:
    grid = {(c.benchmark, c.base_model): c.score for c in cells}
    if any((b, m) not in grid for b in w for m in models):
        return None
    return scoring.weighted_average({k: v for k, v in grid.items() if k[0] in w}, w)


def import_reference(
    dir: Path, *, repo: str | None = None, commit: str | None = None
) -> PublishedBoard:
    """Read a folder of the reference harness's result tables (raises ConfigError on any
    malformed table); `repo` / `commit` override what the folder says of its origin."""
    folder = _data_folder(dir)
    files = sorted(p.name for p in folder.glob("*.csv"))
    agent_files = [f for f in files if f.startswith(("aggregated_avg_", "final_"))]
    if not agent_files:
        raise ConfigError(
            f"{folder} holds no aggregated_avg_<agent>.csv or final_<agent>.csv table",
            "pass the website's data/ folder",
        )
    baselines = _baselines(folder, files)
    site = (
        _site_averages(folder / "single_metrics_aggregated.csv")
        if "single_metrics_aggregated.csv" in files
        else []
    )
    by_site = {a.agent: a for a in site}

    agents: list[PublishedAgent] = []
    benchmarks: list[str] = []
    models: set[str] = set()
    for name in agent_files:
        agent, cols, agent_models = _agent(folder, name, files, by_site)
        if not agents:
            benchmarks = cols
        elif sorted(cols) != sorted(benchmarks):
            raise _bad(folder / name, f"benchmarks {cols} differ from {benchmarks} of the others")
        models |= agent_models
        agents.append(agent)
    base = next((b for b in baselines if b.name == "baseline"), None)
    table = base.models if base else published_baselines()
    w = _weights(table, benchmarks, folder / (base.source if base else "aggregated_baseline.csv"))
    grid_models = sorted(models)
    for a in agents:
        a.average = _average(a.cells, w, grid_models)
    agents.sort(key=lambda a: (a.average is None, -(a.average or 0.0), a.name))
    site_weights = _site_weights(folder)
    source = _source(folder)
    source.repo = repo or source.repo
    source.commit = commit or source.commit
    return PublishedBoard(
        source=source,
        suite=suite_of(benchmarks),
        benchmarks=sorted(benchmarks),
        base_models=grid_models,
        weights=w,
        site_weights=site_weights,
        agents=agents,
        baselines=baselines,
        site_averages=site,
    )


def _baselines(folder: Path, files: list[str]) -> list[PublishedBaseline]:
    baselines = []
    for name in files:
        if name.startswith("aggregated_baseline"):
            _, rows = _numbers(folder / name)
            baselines.append(
                PublishedBaseline(
                    name=name.removeprefix("aggregated_")[:-4], source=name, models=rows
                )
            )
    return baselines


def _agent(
    folder: Path, name: str, files: list[str], by_site: dict[str, PublishedAverage]
) -> tuple[PublishedAgent, list[str], set[str]]:
    """One agent's table (with its std or fallback companion): the agent, its benchmarks and
    its base models."""
    multi = name.startswith("aggregated_avg_")
    agent = name.removeprefix("aggregated_avg_" if multi else "final_")[:-4]
    cols, means = _numbers(folder / name)
    sources = [name]
    stds: dict[str, dict[str, float]] = {}
    markers: dict[tuple[str, str], Fallback] = {}
    companion = f"aggregated_std_{agent}.csv" if multi else f"aggregated_{agent}.csv"
    if companion in files:
        sources.append(companion)
        if multi:
            _, stds = _numbers(folder / companion, upper=math.inf)
        else:
            markers = _markers(folder / companion)
    cells = [
        PublishedCell(
            benchmark=b,
            base_model=m,
            score=v,
            std=stds.get(m, {}).get(b),
            fallback=markers.get((b, m)),
        )
        for m, row in means.items()
        for b, v in row.items()
    ]
    # the site names "GLM_5.2" of the file names "GLM 5.2", but keeps "GPT-5.3-Codex_High"
    known = by_site.get(agent) or by_site.get(agent.replace("_", " "))
    published = PublishedAgent(
        name=agent,
        sources=sources,
        n_seeds=known.n if known else (None if multi else 1),
        cells=cells,
        site_average=known.average if known else None,
        site_std=known.std if known else None,
    )
    return published, cols, set(means)


def _site_weights(folder: Path) -> dict[str, float] | None:
    if (factors := _site_factors(folder)) is None:
        return None
    try:
        return {str(k): float(v) for k, v in json.loads(factors.read_text()).items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise _bad(factors, f"not a benchmark → weight object: {exc}") from exc


def shipped_dir(suite: str | None = None) -> Path:
    """The shipped copy of a suite's published tables: `data/published/v1.2/` for ptb-v1.2."""
    return SHIPPED_DIR / get_suite(suite).id.removeprefix("ptb-")


def load_published(suite: str | None = None) -> PublishedBoard:
    """The published results of `suite` (default: the default suite) shipped with ptb
    (`data/published/<version>/`, see its SOURCE.md)."""
    return import_reference(shipped_dir(suite))


def published_for(board: Leaderboard, results: Path) -> list[PublishedBoard]:
    """The published boards to show next to `board`: those imported into `results` for its
    suite, else the copy shipped for it."""
    imported = [
        p for p in load_imported(results) if (p.suite or suite_of(p.benchmarks)) == board.suite
    ]
    return imported or [load_published(board.suite)]


# --- storing imports ----------------------------------------------------------------------------


def imported_path(results: Path, name: str) -> Path:
    return results / "imported" / name / "published.json"


def save_imported(results: Path, name: str, board: PublishedBoard) -> Path:
    from posttrainbench.results.layout import check_sweep_name

    check_sweep_name(name)  # one plain folder name
    path = imported_path(results, name)
    write_json(path, board)
    return path


def load_imported(results: Path) -> list[PublishedBoard]:
    """Every board imported into `results` (`imported/*/published.json`), by name."""
    boards = []
    for path in sorted((results / "imported").glob("*/published.json")):
        try:
            boards.append(read_json(path, PublishedBoard))
        except ResultsDirError:
            continue
    return boards


# --- leaderboard rows ---------------------------------------------------------------------------


def _registry_name(model: str) -> str:
    try:
        return MODELS.get(model).name
    except UnknownNameError:
        return model


def _cells(agent: PublishedAgent) -> list[LeaderboardCell]:
    return [
        LeaderboardCell(
            seed=0,
            benchmark=c.benchmark,
            base_model=_registry_name(c.base_model),
            run_id=f"published:{agent.name}",
            score=100 * c.score,
            source="fallback_eval_failed" if c.fallback else "evaluated",
            reason=f"published as {c.fallback}: the base model's score" if c.fallback else None,
            reviewed=None,
            llm=None,
        )
        for c in agent.cells
    ]


def with_published_rows(board: Leaderboard, published: PublishedBoard) -> Leaderboard:
    """A copy of `board` with every published agent as a row "<agent> (published)" of its
    `paper` section (created if the board has none), scored over that section's grid and
    weights — so a section over fewer benchmarks or other base models compares like with like.
    Raises ValueError if the two are of different suites."""
    if board.suite and published.suite and board.suite != published.suite:
        raise ValueError(f"published board of {published.suite} on a {board.suite} board")
    board = board.model_copy(deep=True)
    section = next((s for s in board.sections if s.weighting == "paper"), None)
    if section is None:
        section = LeaderboardSection(
            weighting="paper",
            weights=dict(published.weights),
            base_models=[_registry_name(m) for m in published.base_models],
            rows=[],
        )
        board.sections.insert(0, section)
    full_grid = sorted(section.weights) == sorted(published.weights) and sorted(
        section.base_models
    ) == sorted(_registry_name(m) for m in published.base_models)
    for agent in published.agents:
        cells = [
            c
            for c in _cells(agent)
            if c.benchmark in section.weights and c.base_model in section.base_models
        ]
        if not cells:
            continue
        config = AgentConfig(agent=agent.name, budget_s=REFERENCE_BUDGET_S, sandbox="published")
        row = scoring.board_row(
            agent.name + PUBLISHED_SUFFIX, config, cells, section.weights, section.base_models
        )
        if full_grid and agent.site_std is not None:
            row.std = 100 * agent.site_std
        section.rows.append(row)
    section.rows.sort(key=lambda r: (r.average is None, -(r.average or 0.0), r.label))
    return board
