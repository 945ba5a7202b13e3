"""How far Frey Face test frames are from the training set, under two splits.

`python benchmarks/frey_face_split.py` prints, for the interleaved split of
tfvae 0.1 (test frame i when i % 10 == 9) and for the block split with gaps
(`tfvae.datasets.frey_face_split`), the mean Euclidean distance from each test
frame to its nearest training frame, pixels in [0, 1]. A small distance means
the test set mostly re-measures training frames: the video's neighbouring
frames are near copies.
"""

import argparse

import numpy as np

from tfvae import datasets


def nearest_distances(x: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Distance `[len(test)]` from each test frame to its nearest training frame."""
    squared = ((x[test][:, None] - x[train][None]) ** 2).sum(axis=-1)
    return np.sqrt(squared.min(axis=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None, help="default: $TFVAE_DATA_DIR")
    args = parser.parse_args(argv)
    frames = datasets.read_frey_mat(datasets.find_file("frey_rawface.mat", args.data_dir))
    x = frames.astype(np.float64) / 255
    index = np.arange(len(x))
    interleaved = (index[index % 10 != 9], index[index % 10 == 9])
    splits = {
        "interleaved (i % 10 == 9)": interleaved,
        "blocks with gaps (tfvae)": datasets.frey_face_split(len(x)),
    }
    adjacent = np.sqrt(((x[1:] - x[:-1]) ** 2).sum(axis=-1))
    print(f"consecutive frames: mean distance {adjacent.mean():.3f}")
    for name, (train, test) in splits.items():
        distance = nearest_distances(x, train, test)
        print(
            f"{name:28s} train {len(train)}, test {len(test)}: nearest training frame "
            f"at {distance.mean():.3f} on average (median {np.median(distance):.3f})"
        )


if __name__ == "__main__":
    main()
