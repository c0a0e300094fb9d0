"""Build an offline text corpus with a document-level train/validation split, for recipes/pretrain_llm.py.

    python recipes/prepare_corpus.py --source debian-docs --out data/debian_docs   # ~32 MB of English reST
    python recipes/prepare_corpus.py --source path/to/folder_or_file --out data/mine
    python recipes/prepare_corpus.py --out data/stdlib                              # Python's own sources

`debian-docs` fetches the Debian packages `python3.11-doc` and `linux-doc-6.1` with `apt-get download` (no install,
no root needed beyond apt's cache) and unpacks them with `dpkg -x`; the documents are their reST sources
(`html/_sources/**/*.txt`, translations dropped). Any folder or file works the same way (see
`recipes.lm_data.read_documents`). Writes `train.jsonl` and `validation.jsonl` (one `{"text", "path"}`
document per line) and prints what it read, the sizes and the sha256 of both files; `pretrain_llm.py --data_dir`
reads them through `datasets.load_dataset("json", ...)`.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

from lm_data import read_documents

DEBIAN_PACKAGES = {"python3.11-doc": "usr/share/doc/python3.11/html/_sources",
                   "linux-doc-6.1": "usr/share/doc/linux-doc-6.1/html/_sources"}


def fetch_debian_docs(work_dir: str) -> str:
    """Download and unpack the Debian documentation packages; returns a folder of their reST sources."""
    corpus = os.path.join(work_dir, "debian-docs")
    for package, sources in DEBIAN_PACKAGES.items():
        subprocess.run(["apt-get", "download", package], cwd=work_dir, check=True, capture_output=True)
        deb = sorted(glob.glob(os.path.join(work_dir, f"{package}_*.deb")))[-1]
        unpacked = os.path.join(work_dir, package)
        subprocess.run(["dpkg", "-x", deb, unpacked], check=True)
        target = os.path.join(corpus, package)
        shutil.copytree(os.path.join(unpacked, sources), target, ignore=shutil.ignore_patterns("translations"))
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
    parser.add_argument("--source", default=None, help="'debian-docs', a folder or a file (default: Python stdlib)")
    parser.add_argument("--out", required=True, help="output folder for train.jsonl and validation.jsonl")
    parser.add_argument("--validation_every", type=int, default=20, help="about 1 document in N goes to validation")
    parser.add_argument("--max_documents", type=int, default=None, help="keep only the first N files (a small slice)")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work_dir:
        source = fetch_debian_docs(work_dir) if options.source == "debian-docs" else options.source
        splits = read_documents(source, options.validation_every, options.max_documents)
    os.makedirs(options.out, exist_ok=True)
    print(f"read {sum(map(len, splits.values())):,} documents from {options.source or 'the Python standard library'}")
    for split, documents in splits.items():
        size, digest = write_jsonl(documents, os.path.join(options.out, f"{split}.jsonl"))
        characters = sum(len(d["text"]) for d in documents)
        print(f"{split:10s} {len(documents):6,} documents {characters:12,} characters  {size:12,} bytes  "
              f"sha256 {digest}")


if __name__ == "__main__":
    main()
