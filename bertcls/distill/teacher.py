"""The teacher's logits, computed once per text and kept in the datasets cache as a memory-mapped .npy file.

The file's name is a hash of everything the logits depend on: the teacher's weights and config, how its inputs are
built (its stored preprocessing, as the run uses it) and the texts themselves, in order. A second run, a resumed
run, or another process of a distributed run reads the same file instead of running the teacher again; change any
of those inputs and the hash, hence the file, changes. Rank 0 writes it (inside main_process_first), atomically, so
a reader never sees half a file.
"""

import hashlib
import json
import logging
import os

import numpy as np
from datasets import Dataset

from bertcls.model.checkpoints import WEIGHT_FILES
from bertcls.model.classifier import TrainedClassifier
from bertcls.model.runtime import PREPROCESSING_KEYS

logger = logging.getLogger(__name__)

CACHE_FOLDER = "bertcls_teacher_logits"


def cache_root(cache_dir: str | None = None) -> str:
    """Where teacher logits are kept: --cache_dir, else the datasets cache (HF_DATASETS_CACHE)."""
    if cache_dir:
        return os.path.join(cache_dir, CACHE_FOLDER)
    import datasets

    return os.path.join(str(datasets.config.HF_DATASETS_CACHE), CACHE_FOLDER)


def teacher_fingerprint(folder: str) -> str:
    """A hash of the teacher folder's config.json and weight files' contents (not their paths or times)."""
    digest = hashlib.sha256()
    shards = sorted(n for n in os.listdir(folder) if n.endswith((".safetensors", ".bin")) and n not in WEIGHT_FILES)
    for name in ("config.json", *WEIGHT_FILES, *shards):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            digest.update(name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def cache_key(teacher: TrainedClassifier, rows: Dataset, data_args) -> str:
    digest = hashlib.sha256(teacher_fingerprint(teacher.path).encode())
    settings = {k: getattr(data_args, k) for k in PREPROCESSING_KEYS}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for column in ("text", "text_pair"):
        if column in rows.column_names:
            digest.update(column.encode())
            for text in rows[column][:]:
                digest.update(text.encode("utf-8"))
                digest.update(b"\x00")
    return digest.hexdigest()[:32]


def teacher_logits(
    teacher: TrainedClassifier, rows: Dataset, data_args, cache_dir=None, batch_size: int = 64, overwrite=False
) -> np.ndarray:
    """The teacher's logits for every row of `rows` (text / text_pair columns), [rows, labels] float32, memory-mapped
    from the cache; computed and stored on first use (or with `overwrite`)."""
    path = os.path.join(cache_root(cache_dir), f"{cache_key(teacher, rows, data_args)}.npy")
    if os.path.isfile(path) and not overwrite:
        logits = np.load(path, mmap_mode="r")
        if logits.shape == (len(rows), teacher.config.num_labels):
            logger.info("teacher logits of %d texts read from the cache: %s", len(rows), path)
            return logits
    logger.info("teacher forward pass over %d texts (once; cached in %s)", len(rows), path)
    encoded = teacher.encode(rows, data_args)
    logits = teacher.logits(encoded, len(rows), data_args, batch_size).astype(np.float32)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial.npy"
    np.save(partial, logits)
    os.replace(partial, path)  # atomic: a process that reads the cache sees the whole file or none
    return np.load(path, mmap_mode="r")
