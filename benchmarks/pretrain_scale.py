#!/usr/bin/env python
"""Pretraining at scale: the text pipeline on a million lines, and training throughput beside the classifier's.

    python benchmarks/pretrain_scale.py pipeline                      # 1,000,000 lines: read, tokenize, pack, mask
    python benchmarks/pretrain_scale.py pipeline --lines 100000 --whole_word_mask   # with jieba's words
    python benchmarks/pretrain_scale.py throughput --threads 2        # real tokens/s: pretraining vs classification
    python benchmarks/pretrain_scale.py throughput --model_size small --json

pipeline: ChnSentiCorp's training reviews repeated to --lines lines of plain text in a temporary .txt file (never
in the repository), through the product's own code: bertcls.pretrain.data.read_texts (the datasets `text` builder:
memory-mapped Arrow), tokenize_texts and pack_blocks (Arrow again), then --batches batches drawn from the
MaskedLMTrainer's training DataLoader through BlockMaskingCollator (dynamic masking). A background thread samples
/proc/self/status for each stage's peak resident memory, split into anonymous memory and file-backed pages
(memory-mapped Arrow, which the kernel can drop at any time).

throughput: the same randomly initialised BERT (--model_size, the real vocabulary) trained for --steps timed steps
(after --warmup) in fresh processes, one per way: the classifier (benchmarks/bertcls_side.py: ClassificationTrainer
on ChnSentiCorp with its defaults, length-grouped batches with dynamic padding) and masked-LM pretraining on the
same reviews packed into blocks (MaskedLMTrainer, the MLM head on masked positions only, and the full head).
Real tokens are non-padding tokens; every token of a packed block is real.
"""

import argparse
import itertools
import json
import os
import resource
import shutil
import sys
import tempfile

from measure import (
    MODEL_SIZES,
    SHARED,
    VOCAB,
    StepWindow,
    TokenCounter,
    build_model,
    fresh_workspace,
    peak_rss_mb,
    run_measured,
    set_threads,
    use_repo_package,
    write_result,
)
from scale import Stages

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REVIEWS = os.path.join(SHARED, "chnsenticorp", "train.tsv")


def write_lines(source: str, path: str, lines: int) -> None:
    """`lines` review texts (the source TSV's second column), repeated, one per line."""
    with open(source, encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] + "\n" for line in list(f)[1:] if "\t" in line]
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(itertools.islice(itertools.cycle(texts), lines))


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


def pipeline(args) -> dict:
    work, model_folder = fresh_workspace("bertcls-pretrain-scale-", args.tmp_dir, args.threads)

    import datasets

    from bertcls.model.checkpoints import load_tokenizer
    from bertcls.pretrain.args import PretrainDataArguments, PretrainingArguments, PretrainModelArguments
    from bertcls.pretrain.data import pack_blocks, read_texts, tokenize_texts
    from bertcls.pretrain.masking import BlockMaskingCollator
    from bertcls.pretrain.trainer import MaskedLMTrainer, load_mlm_model

    datasets.disable_progress_bars()
    timer = Stages()
    stages = timer.stages

    def stage(name: str, rows: int, run, unit="lines"):
        return timer.run(name, rows, run, unit)

    path = os.path.join(work, "lines.txt")
    try:
        stage("write the file (setup, not the pipeline)", args.lines, lambda: write_lines(REVIEWS, path, args.lines))
        data_args = PretrainDataArguments(
            train_file=[path],
            validation_split_percentage=0,
            max_seq_length=args.max_seq_length,
            whole_word_mask=args.whole_word_mask,
            preprocessing_num_workers=args.workers,
        )
        tokenizer = load_tokenizer(model_folder)
        texts = stage("read: every line into Arrow", args.lines, lambda: read_texts(data_args, seed=42)["train"])
        words = " + jieba words" if args.whole_word_mask else ""
        tokenized, _ = stage(
            f"tokenize{words}",
            args.lines,
            lambda: tokenize_texts(texts, tokenizer, args.whole_word_mask, "train", args.workers, False),
        )
        blocks, pack_stats = stage(
            f"pack into blocks of {args.max_seq_length}",
            args.lines,
            lambda: pack_blocks(tokenized, tokenizer, args.max_seq_length, "train", args.workers, False),
        )
        model = load_mlm_model(PretrainModelArguments(model_name_or_path=model_folder), None, 0)
        trainer = MaskedLMTrainer(
            model=model,
            args=PretrainingArguments(
                output_dir=os.path.join(work, "out"),
                per_device_train_batch_size=args.batch_size,
                eval_strategy="no",
                use_cpu=True,
                report_to="none",
            ),
            train_dataset=blocks,
            processing_class=tokenizer,
            data_collator=BlockMaskingCollator(tokenizer, seed=42),
        )

        def draw():
            masked = 0
            for batch in itertools.islice(trainer.get_train_dataloader(), args.batches):
                masked += int((batch["labels"] != -100).sum())
            return masked

        count = min(args.batches, len(blocks) // args.batch_size)
        masked = stage(
            f"{count:,} batches of {args.batch_size} blocks: shuffle, collate, mask",
            count * args.batch_size,
            draw,
            unit="blocks",
        )
        cache_bytes = sum(os.path.getsize(f["filename"]) for f in blocks.cache_files)
        mapped = isinstance(blocks.data, datasets.table.MemoryMappedTable)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "lines": args.lines,
        "whole_word_mask": args.whole_word_mask,
        "workers": args.workers,
        "stages": stages,
        "packing": {
            "texts": pack_stats.texts,
            "tokens": pack_stats.tokens,
            "blocks": pack_stats.blocks,
            "unused_tokens": pack_stats.unused_tokens,
        },
        "masked_share_drawn": masked / (count * args.batch_size * (args.max_seq_length - 2)),
        "blocks_cache_mb": cache_bytes / 2**20,
        "memory_mapped": mapped,
        "peak_rss_mb_whole_run": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return result


def pipeline_table(result: dict) -> str:
    lines = [
        f"{result['lines']:,} lines of ChnSentiCorp reviews (repeated), "
        f"{'whole-word (jieba)' if result['whole_word_mask'] else 'token-level'} masking, "
        f"{result['workers'] or 1} process(es)",
        "",
        "| stage | rows/s | peak RSS | of it anonymous | of it file-backed |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in result["stages"]:
        if s["stage"].startswith("write"):
            continue
        lines.append(
            f"| {s['stage']} | {s['rows_per_s']:,.0f} {s['unit']}/s | {s['peak_rss_mb']:,.0f} MB | "
            f"{s['peak_anon_mb']:,.0f} MB | {s['peak_file_mb']:,.0f} MB |"
        )
    p = result["packing"]
    lines += [
        "",
        f"{p['tokens']:,} tokens -> {p['blocks']:,} blocks, {p['unused_tokens']:,} tokens left over; blocks on disk "
        f"{result['blocks_cache_mb']:,.0f} MB (memory-mapped: {result['memory_mapped']}); masked share of the drawn "
        f"blocks' text tokens {result['masked_share_drawn']:.3f}; peak RSS of the whole run (ru_maxrss) "
        f"{result['peak_rss_mb_whole_run']:,.0f} MB",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Throughput


def pretrain_child(args) -> dict:
    """One process: --warmup + --steps pretraining steps on the reviews, timed like bertcls_side.py times its own."""
    set_threads(args.threads)
    use_repo_package()
    from transformers import TrainerCallback

    from bertcls.pretrain import run as tool
    from bertcls.pretrain.trainer import MaskedLMTrainer

    window = StepWindow(args.warmup, args.steps)
    tokens = TokenCounter()

    class TimeSteps(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            window.step_done(state.global_step)

    class Counting(MaskedLMTrainer):
        def __init__(self, *a, callbacks=None, **kw):
            super().__init__(*a, callbacks=[*(callbacks or []), TimeSteps()], **kw)

        def training_step(self, model, inputs, num_items_in_batch=None):
            tokens.add(inputs["input_ids"] != self.processing_class.pad_token_id)  # real tokens: all of a block
            return super().training_step(model, inputs, num_items_in_batch)

    tool.MaskedLMTrainer = Counting  # the tool's own main(), with this Trainer
    out = tempfile.mkdtemp(prefix="bertcls-pretrain-bench-")
    flags = ["--model_name_or_path", args.model, "--train_file", REVIEWS, "--text_column", "text_a"]
    flags += ["--max_seq_length", str(args.max_seq_length), "--per_device_train_batch_size", str(args.batch_size)]
    flags += ["--max_steps", str(args.warmup + args.steps), "--save_strategy", "no", "--eval_strategy", "no"]
    flags += ["--validation_split_percentage", "0", "--output_dir", out, "--report_to", "none", "--use_cpu", "true"]
    flags += ["--sparse_mlm_head", str(not args.full_head).lower(), "--disable_tqdm", "true"]
    try:
        tool.main(flags)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {"side": "pretrain", "sparse_mlm_head": not args.full_head, "threads": args.threads}
    result.update(window.report(tokens, args.batch_size))
    write_result(args.result_file, result)
    return result


def run_child(command: list[str], threads: int, name: str) -> dict:
    result = run_measured(name, command, threads)
    print(f"[{name}] {result['real_tokens_per_s']:,.0f} real tokens/s", file=sys.stderr, flush=True)
    return result


def throughput(args) -> dict:
    model = build_model(args.model_size, VOCAB)
    common = ["--model", model, "--batch_size", str(args.batch_size), "--steps", str(args.steps)]
    common += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    me = [sys.executable, os.path.abspath(__file__), "child", *common, "--max_seq_length", str(args.max_seq_length)]
    runs = {
        "classification": [
            sys.executable,
            os.path.join(HERE, "bertcls_side.py"),
            *common,
            "--train_file",
            REVIEWS,
            "--predict_ways",
        ],  # fmt: skip
        "pretraining, MLM head on masked positions": me,
        "pretraining, MLM head on every position": [*me, "--full_head"],
    }
    results = {name: run_child(command, args.threads, name) for name, command in runs.items()}
    return {"model_size": args.model_size, "layers_hidden": MODEL_SIZES[args.model_size][:2], "runs": results}


def throughput_table(result: dict) -> str:
    runs = result["runs"]
    base = runs["classification"]["real_tokens_per_s"]
    layers, hidden = result["layers_hidden"]
    lines = [
        f"BERT {layers} layers x {hidden} hidden, 21,128-token vocabulary; batch of 32 (classification: rows of "
        "ChnSentiCorp; pretraining: blocks of 128 tokens of the same reviews)",
        "",
        "| | real tokens/s | vs classification | padding share | train samples/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r['real_tokens_per_s']:,.0f} | {r['real_tokens_per_s'] / base:.2f}x | "
            f"{r['padding_share']:.1%} | {r['train_samples_per_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["pipeline", "throughput", "child"])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--whole_word_mask", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="Processes for tokenizing and packing.")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3000, help="pipeline: batches drawn through the collator.")
    parser.add_argument("--model_size", choices=list(MODEL_SIZES), default="tiny")
    parser.add_argument("--steps", type=int, default=40, help="throughput: timed steps.")
    parser.add_argument("--warmup", type=int, default=3, help="throughput: untimed steps before them.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tmp_dir", default=None, help="pipeline: where the file and Arrow cache go.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    # child mode (one timed pretraining process)
    parser.add_argument("--model")
    parser.add_argument("--full_head", action="store_true")
    parser.add_argument("--result_file")
    args = parser.parse_args(argv)
    if args.what == "child":
        return pretrain_child(args)
    result = pipeline(args) if args.what == "pipeline" else throughput(args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(pipeline_table(result) if args.what == "pipeline" else throughput_table(result))
    print(f"(peak RSS of this process: {peak_rss_mb()['peak_rss_mb']:,.0f} MB)", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
