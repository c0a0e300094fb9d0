"""Prepare the convex suite's data: 9 real multi-class problems, offline (no hub).

    pip install scikit-learn rdata          # the loaders (not package dependencies)
    python -m benchmarks.prepare_convex_data            # -> benchmarks/data/convex/*.safetensors + manifest.json

Sources: scikit-learn's bundled iris, wine, breast_cancer and digits; the UCI problems glass, vehicle, vowel,
satellite (satimage) and letter from Debian's `r-cran-mlbench` package (`apt-get download` + `dpkg -x`, no install;
`--deb FILE` uses a .deb you already have), read with `rdata`. Features are standardised (factors one-hot encoded),
labels are 0..k-1. Each problem is written as safetensors (`X` float64, `y` int64) and listed in manifest.json with
its shape and the sha256 of its file.
"""

import argparse
import glob
import hashlib
import json
import os
import subprocess
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MLBENCH = {"glass": ("Glass", "Type"), "vehicle": ("Vehicle", "Class"), "vowel": ("Vowel", "Class"),
           "satellite": ("Satellite", "classes"), "letter": ("LetterRecognition", "lettr")}


def sklearn_problems():
    from sklearn import datasets

    for name in ("iris", "wine", "breast_cancer", "digits"):
        bunch = getattr(datasets, f"load_{name}")()
        yield name, np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def mlbench_problems(deb):
    import rdata

    folder = tempfile.mkdtemp(prefix="mlbench_")
    if deb is None:
        subprocess.run(["apt-get", "download", "r-cran-mlbench"], cwd=folder, check=True, capture_output=True)
        deb = glob.glob(os.path.join(folder, "r-cran-mlbench_*.deb"))[0]
    subprocess.run(["dpkg", "-x", deb, folder], check=True)
    data = os.path.join(folder, "usr", "lib", "R", "site-library", "mlbench", "data")
    for name, (dataset, target) in MLBENCH.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata: "Unknown encoding. Assumed ASCII."
            frame = rdata.read_rda(os.path.join(data, f"{dataset}.rda"))[dataset]
        y = frame[target].astype("category").cat.codes.to_numpy(np.int64)
        features = frame.drop(columns=[target])
        columns = []
        for column in features.columns:
            values = features[column]
            if values.dtype.name == "category" or values.dtype == object:  # one-hot factors (Vowel's speaker V1)
                codes = values.astype("category").cat.codes.to_numpy()
                columns.append(np.eye(codes.max() + 1)[codes])
            else:
                columns.append(values.to_numpy(np.float64)[:, None])
        yield name, np.hstack(columns), y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default=os.path.join(HERE, "data", "convex"))
    parser.add_argument("--deb", default=None, help="an r-cran-mlbench .deb already downloaded")
    options = parser.parse_args()
    from safetensors.numpy import save_file

    os.makedirs(options.out_dir, exist_ok=True)
    manifest = {}
    for name, X, y in [*sklearn_problems(), *mlbench_problems(options.deb)]:
        keep = np.isfinite(X).all(axis=1)
        X, y = X[keep], y[keep]
        scale = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
        path = os.path.join(options.out_dir, f"{name}.safetensors")
        save_file({"X": np.ascontiguousarray(X), "y": y}, path, metadata={"source": name})
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        manifest[name] = {"n": int(X.shape[0]), "d": int(X.shape[1]), "classes": int(y.max() + 1), "sha256": digest}
        print(f"{name:14s} n={X.shape[0]:6d} d={X.shape[1]:3d} classes={y.max() + 1:2d}  sha256 {digest[:16]}")
    with open(os.path.join(options.out_dir, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=1)


if __name__ == "__main__":
    main()
