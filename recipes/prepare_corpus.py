"""Build an offline text corpus with a document-level train/validation split, for recipes/pretrain_llm.py.

    python recipes/prepare_corpus.py --source docs --out data/docs       # ~14 MB of English reST, pinned by version
    python recipes/prepare_corpus.py --source path/to/folder_or_file --out data/mine
    python recipes/prepare_corpus.py --out data/stdlib                   # Python's own sources

`docs` is the documentation shipped in four source distributions on PyPI, each at an exact version (a PyPI release's
files never change): Django 5.2.8 (`docs/**/*.txt`), SQLAlchemy 2.0.36 (`doc/**/*.rst`), SymPy 1.14.0 (`doc/src/**`
`.rst`/`.md`) and Sphinx 8.1.3 (`doc/**/*.rst`). `pip download --no-deps --no-binary :all:` fetches them through
whatever index pip is configured with; each archive's sha256 is checked before it is read, and the written corpus is
checked against its pinned sha256, so a corpus that would not reproduce the committed runs stops here with the
reason instead of giving other numbers later. Any folder or file works the same way, unchecked (see
`recipes.lm_data.read_documents`). Writes `train.jsonl` and `validation.jsonl` (one `{"text", "path"}` document per
line) and prints what it read, the sizes and the sha256 of both files; `pretrain_llm.py --data_dir` reads them
through `datasets.load_dataset("json", ...)`.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass

try:  # run as a script (python recipes/prepare_corpus.py) or imported as recipes.prepare_corpus
    from lm_data import read_documents
except ImportError:
    from recipes.lm_data import read_documents


@dataclass(frozen=True)
class PinnedSdist:
    """A PyPI source distribution at an exact version, its archive's sha256, and which of its members are text."""

    name: str
    version: str
    sha256: str
    folder: str  # inside the archive's top folder
    suffixes: tuple


#: The `docs` corpus: each archive pinned by version and digest; the written splits pinned by digest.
DOCS_SOURCES = (
    PinnedSdist("Django", "5.2.8", "23254866a5bb9a2cfa6004e8b809ec6246eba4b58a7589bc2772f1bcc8456c7f", "docs",
                (".txt",)),
    PinnedSdist("SQLAlchemy", "2.0.36", "7f2767680b6d2398aea7082e45a774b2b0767b5c8d8ffb9c8b683088ea9b29c5", "doc",
                (".rst",)),
    PinnedSdist("sympy", "1.14.0", "d3d3fe8df1e5a0b42f0e7bdf50541697dbe7d23746e894990c030e2b05e72517", "doc/src",
                (".rst", ".md")),
    PinnedSdist("Sphinx", "8.1.3", "43c1911eecb0d3e161ad78611bc905d1ad0e523e4ddc202a58a821773dc4c927", "doc",
                (".rst",)),
)
#: sha256 of the `docs` corpus's train.jsonl and validation.jsonl as this script writes them.
DOCS_DIGESTS = {"train": "d2bfca338e743e169cb023c37c2c844dd29b9bc27920c63a8422de999ffe157e",
                "validation": "714b599e7650dc330866aeed2a53d041377bc148132656ab9b3ee8d0b4cc0348"}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_docs(work_dir: str) -> str:
    """Download the pinned source distributions, check their digests, and unpack their documentation into one folder
    (`<name>-<version>/<path inside the archive>`); returns that folder."""
    corpus = os.path.join(work_dir, "docs")
    for source in DOCS_SOURCES:
        download = os.path.join(work_dir, "sdists")
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                               "--dest", download, f"{source.name}=={source.version}"], capture_output=True, text=True)
        archives = glob.glob(os.path.join(download, f"{source.name.lower()}-{source.version}.tar.gz"))
        if done.returncode != 0 or not archives:
            raise SystemExit(f"prepare_corpus: could not download {source.name}=={source.version} from the package "
                             f"index ({done.stderr.strip()[-300:] or 'no archive'}); the docs corpus needs it.")
        if _sha256(archives[0]) != source.sha256:
            raise SystemExit(f"prepare_corpus: {os.path.basename(archives[0])} has sha256 {_sha256(archives[0])}, "
                             f"not the pinned {source.sha256}: the index served another file for "
                             f"{source.name}=={source.version}; the corpus would not reproduce the committed runs.")
        top = f"{source.name.lower()}-{source.version}"
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                inside = member.name.split("/", 1)[1] if "/" in member.name else ""
                if member.isfile() and inside.startswith(source.folder + "/") and inside.endswith(source.suffixes):
                    target = os.path.join(corpus, top, inside)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with archive.extractfile(member) as data, open(target, "wb") as handle:
                        handle.write(data.read())
    return corpus


def write_jsonl(documents, path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "w", encoding="utf-8") as handle:
        for document in documents:
            line = json.dumps({"text": document["text"], "path": document["path"]}, ensure_ascii=False) + "\n"
            handle.write(line)
            digest.update(line.encode())
    return os.path.getsize(path), digest.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="'docs' (pinned), a folder or a file (default: Python stdlib)")
    parser.add_argument("--out", required=True, help="output folder for train.jsonl and validation.jsonl")
    parser.add_argument("--validation_every", type=int, default=20, help="about 1 document in N goes to validation")
    parser.add_argument("--max_documents", type=int, default=None, help="keep only the first N files (a small slice)")
    options = parser.parse_args(argv)
    pinned = options.source == "docs"
    if pinned and (options.validation_every != 20 or options.max_documents is not None):
        parser.error("--source docs is pinned: it takes neither --validation_every nor --max_documents")
    with tempfile.TemporaryDirectory() as work_dir:
        source = fetch_docs(work_dir) if pinned else options.source
        splits = read_documents(source, options.validation_every, options.max_documents)
    os.makedirs(options.out, exist_ok=True)
    print(f"read {sum(map(len, splits.values())):,} documents from {options.source or 'the Python standard library'}")
    for split, documents in splits.items():
        path = os.path.join(options.out, f"{split}.jsonl")
        size, digest = write_jsonl(documents, path)
        characters = sum(len(d["text"]) for d in documents)
        print(f"{split:10s} {len(documents):6,} documents {characters:12,} characters  {size:12,} bytes  "
              f"sha256 {digest}")
        if pinned and digest != DOCS_DIGESTS[split]:
            os.replace(path, path + ".mismatch")
            raise SystemExit(f"prepare_corpus: {split}.jsonl has sha256 {digest}, not the pinned "
                             f"{DOCS_DIGESTS[split]}: the same archives gave another corpus (a changed "
                             f"recipes/lm_data.py split or reader?). Kept as {path}.mismatch; the committed runs "
                             "would not reproduce on it.")


if __name__ == "__main__":
    main()
