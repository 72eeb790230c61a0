#!/usr/bin/env python
"""The data pipeline on a large file: load -> tokenize -> length-grouped batches, with peak memory per stage.

    python benchmarks/scale.py                    # 1,000,000 rows (ChnSentiCorp train repeated), several minutes
    python benchmarks/scale.py --rows 100000      # a quick look

The rows are written to a temporary file (never into the repository), then go through the product's own code:
bertcls.data.loading.load_task_data (datasets reads the file into a memory-mapped Arrow cache, standardize checks every
row), bertcls.data.tokenization.tokenize_splits (Arrow again, no padding), the ClassificationTrainer's training
DataLoader (LengthGroupedSampler over the precomputed `length` column) and DataCollatorWithPadding for
--batches batches. No padded tensor of all rows is ever built. A background thread samples /proc/self/status to
report each stage's peak resident memory, split into anonymous memory (the process's own) and file-backed pages
(memory-mapped Arrow data, which the kernel can drop at any time).
"""

import argparse
import itertools
import os
import resource
import shutil
import sys
import threading
import time

from measure import SHARED, fresh_workspace, write_rows


class MemorySampler(threading.Thread):
    """Peak VmRSS / RssAnon / RssFile (MB) since the last reset, sampled every `interval` seconds."""

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        self.interval = interval
        self.reset()

    @staticmethod
    def read() -> dict:
        values = {}
        with open("/proc/self/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in MemorySampler.FIELDS:
                    values[name] = int(rest.split()[0]) / 1024
        return values

    def reset(self) -> None:
        self.peak = self.read()

    def run(self) -> None:
        while True:
            for name, value in self.read().items():
                if value > self.peak.get(name, 0):
                    self.peak[name] = value
            time.sleep(self.interval)


class Stages:
    """Each stage's time and peak memory (read by a MemorySampler thread), kept in `stages` and printed."""

    def __init__(self):
        self.memory = MemorySampler()
        self.memory.start()
        self.stages: list[dict] = []

    def run(self, name: str, rows: int, work, unit: str = "rows"):
        self.memory.reset()
        start = time.perf_counter()
        value = work()
        seconds = time.perf_counter() - start
        peak = dict(self.memory.peak)
        self.stages.append(
            {
                "stage": name,
                "rows": rows,
                "unit": unit,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "peak_rss_mb": peak["VmRSS"],
                "peak_anon_mb": peak["RssAnon"],
                "peak_file_mb": peak["RssFile"],
            }
        )
        print(f"[{name}] {rows:,} {unit} in {seconds:.1f} s, peak RSS {peak['VmRSS']:,.0f} MB", file=sys.stderr)
        return value


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--source", default=os.path.join(SHARED, "chnsenticorp", "train.tsv"))
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--max_seq_length", type=int, default=512, help="The product's default.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3000, help="Batches drawn through the collator.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tmp_dir", default=None, help="Where the data file and Arrow cache go (default: $TMPDIR).")
    args = parser.parse_args(argv)

    work, model = fresh_workspace("bertcls-scale-", args.tmp_dir, args.threads)

    import datasets
    from transformers import AutoModelForSequenceClassification

    from bertcls.config.arguments import DataArguments
    from bertcls.config.training_arguments import ClassificationTrainingArguments
    from bertcls.data.loading import load_task_data
    from bertcls.data.tokenization import tokenize_splits
    from bertcls.model.checkpoints import load_tokenizer
    from bertcls.training.trainer import ClassificationTrainer, make_data_collator

    datasets.disable_progress_bars()
    timer = Stages()
    stage, stages = timer.run, timer.stages

    path = os.path.join(work, "rows.tsv")
    try:
        stage("write the file (setup, not the pipeline)", args.rows, lambda: write_rows(args.source, path, args.rows))
        data_args = DataArguments(
            train_file=path,
            text_column=args.text_column,
            label_column=args.label_column,
            validation_split_percentage=0,
            max_seq_length=args.max_seq_length,
        )
        tokenizer = load_tokenizer(model)
        task = stage("load: read + check every row", args.rows, lambda: load_task_data(data_args, seed=42))
        tokenized, _ = stage(
            "tokenize (no padding)",
            args.rows,
            lambda: tokenize_splits(task.splits, tokenizer, data_args, load_from_cache=False),
        )
        train = tokenized["train"]
        training_args = ClassificationTrainingArguments(
            output_dir=os.path.join(work, "out"),
            per_device_train_batch_size=args.batch_size,
            eval_strategy="no",
            use_cpu=True,
        )
        trainer = ClassificationTrainer(
            model=AutoModelForSequenceClassification.from_pretrained(model, num_labels=len(task.labels)),
            args=training_args,
            train_dataset=train,
            processing_class=tokenizer,
            data_collator=make_data_collator(tokenizer, training_args),
        )

        def first_batch():
            batches = iter(trainer.get_train_dataloader())
            next(batches)
            return batches

        batches = stage("length-grouped sampler over all rows", args.rows, first_batch)

        def draw():
            tokens = 0
            for batch in itertools.islice(batches, args.batches):
                tokens += batch["input_ids"].numel()
            return tokens

        count = min(args.batches, len(train) // args.batch_size - 1)
        stage(f"{count:,} batches through DataCollatorWithPadding", count * args.batch_size, draw)
        cache_bytes = sum(os.path.getsize(f["filename"]) for f in train.cache_files)
        mapped = isinstance(train.data, datasets.table.MemoryMappedTable)
        peak_total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.rows:,} rows of {args.source} (repeated), max_seq_length {args.max_seq_length}, "
          f"batch {args.batch_size}, {args.threads} thread(s)")  # fmt: skip
    widths = (44, 10, 9, 12, 14, 14, 14)
    print(
        *(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(
                zip(("stage", "rows", "seconds", "rows/s", "peak RSS MB", "of it anon MB", "of it file MB"), widths)
            )
        )
    )
    for s in stages:
        cells = (s["stage"], f"{s['rows']:,}", f"{s['seconds']:.1f}", f"{s['rows_per_s']:,.0f}")
        cells += (f"{s['peak_rss_mb']:,.0f}", f"{s['peak_anon_mb']:,.0f}", f"{s['peak_file_mb']:,.0f}")
        print(*(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    pipeline = [s for s in stages if not s["stage"].startswith("write")]
    seconds = sum(s["seconds"] for s in pipeline[:3])
    print(
        f"\nload + tokenize + sampler: {args.rows / seconds:,.0f} rows/s; peak RSS of the process "
        f"{peak_total:,.0f} MB (ru_maxrss, whole run); tokenized Arrow cache {cache_bytes / 2**20:,.0f} MB on disk, "
        f"memory-mapped: {mapped}"
    )
    padded = args.rows * args.max_seq_length * 8 * 3 / 2**30
    print(
        f"for comparison (computed, not run): the classic loop's padded int64 input_ids + token_type_ids + "
        f"attention_mask for {args.rows:,} rows x {args.max_seq_length} tokens would take {padded:,.1f} GiB"
    )
    return stages


if __name__ == "__main__":
    main()
