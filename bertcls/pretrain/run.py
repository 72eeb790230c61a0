"""Masked-LM pretraining on your own text: continue a checkpoint (DAPT/TAPT), or make a small model from scratch.

    python -m bertcls pretrain --model_name_or_path hfl/chinese-bert-wwm-ext --train_file reviews.txt \\
        --whole_word_mask --output_dir outputs/bert-reviews
    python -m bertcls pretrain --from_task recipes/chnsenticorp/chinese-bert-wwm-ext.json --model_name_or_path \\
        hfl/chinese-bert-wwm-ext --output_dir outputs/bert-tapt   # the task's train and validation texts, no labels
    python -m bertcls pretrain --tokenizer_name ../shared/data/vocab --num_layers 4 --hidden_size 256 \\
        --train_file a.tsv b.jsonl --text_column text_a sentence --learning_rate 5e-4 --output_dir outputs/small
    accelerate launch -m bertcls pretrain RECIPE.json --resume_from_checkpoint auto
    python -m bertcls pretrain --help           # every flag; a recipe's keys are the same names

parse -> tokenizer and config -> read, tokenize and pack the text -> model -> Trainer -> save -> perplexity.
The output folder (config.json, model.safetensors with the MLM head, tokenizer files) is a checkpoint that
`python run_classification.py --model_name_or_path OUTPUT_DIR ...` fine-tunes as it is.
"""

import json
import logging
import os
import sys

from transformers import CONFIG_MAPPING, AutoConfig, set_seed

from bertcls.config.recipes import given_fields, parse_args, recipe_of
from bertcls.data.tokenization import position_limit
from bertcls.errors import UserError, exit_on_user_error, load_error
from bertcls.evaluation import outputs
from bertcls.logs import setup_logging
from bertcls.model.checkpoints import (
    apply_config_overrides,
    check_vocabulary,
    load_config,
    load_tokenizer,
)
from bertcls.pretrain.args import PretrainDataArguments, PretrainingArguments, PretrainModelArguments, check_arguments
from bertcls.pretrain.data import make_blocks, read_texts
from bertcls.pretrain.masking import BlockMaskingCollator, mask_once
from bertcls.pretrain.trainer import MaskedLMTrainer, load_mlm_model
from bertcls.training.interrupt import GracefulInterrupt

logger = logging.getLogger("bertcls.pretrain.run")

DATACLASSES = (PretrainModelArguments, PretrainDataArguments, PretrainingArguments)


@exit_on_user_error
def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(argv, dataclass_types=DATACLASSES)
    setup_logging(training_args)
    check_arguments(model_args, data_args, training_args, given_fields(model_args))
    tokenizer, config = load_tokenizer_and_config(model_args, data_args)
    sources = (model_args.model_name_or_path, model_args.tokenizer_name, model_args.config_name)
    resume_from = outputs.check_output_dir(training_args, reads_from=sources)
    set_seed(training_args.seed)

    collator = BlockMaskingCollator(tokenizer, data_args.mlm_probability, seed=training_args.seed)
    # Rank 0 reads, tokenizes and packs first and fills the datasets cache; the other ranks then read the cache.
    with training_args.main_process_first(desc="read, tokenize and pack text"):
        texts = read_texts(data_args, training_args.seed, model_args.cache_dir)
        blocks, packing = {}, {}
        for split, ds in texts.items():
            blocks[split], packing[split] = make_blocks(ds, tokenizer, data_args, split, not data_args.overwrite_cache)
        if "validation" in blocks:
            blocks["validation"] = mask_once(blocks["validation"], collator)
    if "validation" not in blocks:
        training_args.eval_strategy = "no"
    elif model_args.model_name_or_path and not resume_from:
        # What the checkpoint made of this text before: the gain of continued pretraining shows. Inside train():
        # Trainer.evaluate() before train() marks the bare model as prepared, and under DDP train() then never
        # wraps it (transformers 5.24, accelerate 1.15): every process would train its own copy.
        training_args.eval_on_start = True
    model = load_mlm_model(model_args, config, training_args.seed)
    outputs.clear_output_dir(training_args)  # everything is checked: only now may an earlier run's files go

    interrupt = GracefulInterrupt()  # Ctrl-C / SIGTERM: save a checkpoint and stop cleanly
    trainer = MaskedLMTrainer(
        model=model,
        args=training_args,
        train_dataset=blocks.get("train"),
        eval_dataset=blocks.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[interrupt],
        sparse_mlm_head=model_args.sparse_mlm_head,
    )
    out, main_process = training_args.output_dir, trainer.is_world_process_zero()
    results = {f"{split}_{k}": v for split, stats in packing.items() for k, v in stats.items()}

    if training_args.do_train:
        interrupt.install()
        try:
            train_result = trainer.train(resume_from_checkpoint=resume_from)
        finally:
            interrupt.uninstall()
        interrupt.exit_if_stopped(out)
        tokenizer.model_max_length = position_limit(config) or tokenizer.model_max_length
        trainer.save_model()  # model with its MLM head, and the tokenizer; main process only
        metrics = dict(train_result.metrics)
        metrics.update(resumed_part(resume_from, trainer.state.global_step))
        metrics.update(evaluation_before(trainer.state.log_history))
        metrics["train_tokens_per_second"] = metrics["train_samples_per_second"] * data_args.max_seq_length
        metrics.update(trainer.mask_summary())
        results.update(metrics)
        if main_process:
            trainer.state.save_to_json(os.path.join(out, "trainer_state.json"))
            outputs.write_json(os.path.join(out, "train_results.json"), metrics)
    if "validation" in blocks:
        evaluation = trainer.evaluate()
        results.update(evaluation)
        if main_process:
            outputs.write_json(os.path.join(out, "eval_results.json"), evaluation)

    if main_process:
        recipe = recipe_of(model_args, data_args, training_args)
        outputs.write_json(os.path.join(out, "recipe.json"), recipe)
        if training_args.do_train:
            outputs.write_text(os.path.join(out, "README.md"), model_card(model_args, data_args, results, recipe))
        outputs.write_json(os.path.join(out, outputs.FINISHED_MARKER), results)  # written last: the run finished
        print_summary(results, out, training_args.do_train)
    return results


def resumed_part(resume_from: str | None, global_step: int) -> dict:
    """After a resume the Trainer's train_loss, train_runtime and speeds cover the steps this process ran, not
    the whole run: say so in train_results.json, with the steps they cover."""
    if not resume_from:
        return {}
    with open(os.path.join(resume_from, "trainer_state.json"), encoding="utf-8") as f:
        start = int(json.load(f)["global_step"])
    logger.info(
        "resumed at step %d: train_loss, train_runtime and the speeds cover steps %d-%d, the resumed part only",
        start,
        start + 1,
        global_step,
    )
    return {
        "train_resumed_from_step": start,
        "train_steps_covered": global_step - start,
        "train_global_step": global_step,
    }


def evaluation_before(log_history: list[dict]) -> dict:
    """The held-out loss and perplexity of the starting checkpoint (eval_on_start), from the Trainer's log."""
    first = next((entry for entry in log_history if "eval_perplexity" in entry and entry.get("step") == 0), None)
    if first is None:
        return {}
    return {"eval_before_loss": first["eval_loss"], "eval_before_perplexity": first["eval_perplexity"]}


def load_tokenizer_and_config(model_args, data_args):
    """The checkpoint's tokenizer and config, or a tokenizer and a new config for a model from scratch; checked
    against each other and against the block length before any text is read."""
    name = model_args.model_name_or_path
    if name:
        config = load_config(model_args)
        tokenizer = load_tokenizer(model_args.tokenizer_name or name, model_args, config)
    else:
        tokenizer = load_tokenizer(model_args.tokenizer_name, model_args)
        config = new_config(model_args, data_args, tokenizer)
        tokenizer.model_max_length = position_limit(config) or tokenizer.model_max_length
    what = name or model_args.config_name or "the new model"
    check_vocabulary(tokenizer, config, what)
    if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise UserError(
            f"the tokenizer of {what} has no [MASK], [CLS] or [SEP] token, which masked-LM pretraining needs",
            fix="use a BERT-family checkpoint or vocabulary",
        )
    limit = position_limit(config)
    if limit is not None and data_args.max_seq_length > limit:
        raise UserError(
            f"--max_seq_length {data_args.max_seq_length} is over the limit of {what}: {limit} tokens (its "
            "position embeddings)",
            fix=f"use --max_seq_length {limit} or less",
        )
    return tokenizer, config


def new_config(model_args, data_args, tokenizer):
    """The config of a model from scratch: --config_name's, or one of --model_type of the size flags' size."""
    if model_args.config_name:
        try:
            config = AutoConfig.from_pretrained(model_args.config_name, **model_args.hub_options())
        except (OSError, ValueError) as e:
            raise load_error(
                model_args.config_name, "model config", e, fix="pass a folder with config.json to --config_name"
            ) from None
    else:
        config = CONFIG_MAPPING[model_args.model_type](
            vocab_size=len(tokenizer),
            hidden_size=model_args.hidden_size,
            num_hidden_layers=model_args.num_layers,
            num_attention_heads=model_args.num_heads,
            intermediate_size=model_args.intermediate_size or 4 * model_args.hidden_size,
            max_position_embeddings=model_args.max_position_embeddings or data_args.max_seq_length,
            pad_token_id=tokenizer.pad_token_id,
        )
    if model_args.config_overrides:
        apply_config_overrides(config, model_args.config_overrides)
    return config


def model_card(model_args, data_args, results: dict, recipe: dict) -> str:
    """README.md of the output folder: what the checkpoint is, how to fine-tune it, and the recipe that made it."""
    start = f"continued from `{model_args.model_name_or_path}`" if model_args.model_name_or_path else "from scratch"
    perplexity = results.get("eval_perplexity")
    held_out = f"Held-out perplexity (masked tokens): {perplexity:.2f}." if perplexity else "No held-out text."
    return f"""---
library_name: transformers
pipeline_tag: fill-mask
---

# Masked-LM checkpoint pretrained {start} by bertcls

{results.get("train_blocks", 0):,} blocks of {data_args.max_seq_length} tokens,
{"whole-word" if data_args.whole_word_mask else "token-level"} masking. {held_out}

Fine-tune it as any checkpoint:

```bash
python run_classification.py --model_name_or_path path/to/this/folder --train_file train.tsv ...
```

## Recipe (`recipe.json` re-runs it with `python -m bertcls pretrain recipe.json`)

```json
{json.dumps(recipe, indent=2, ensure_ascii=False)}
```
"""


def print_summary(results: dict, out: str, trained: bool) -> None:
    print("\nresults:")
    for key in (
        "eval_before_perplexity",
        "eval_perplexity",
        "train_loss",
        "train_tokens_per_second",
        "masked_share",
        "masked_in_multi_token_words",
        "train_blocks",
    ):
        if key in results:
            value = results[key]
            print(f"  {key:<32} {value:.4f}" if isinstance(value, float) else f"  {key:<32} {value}")
    if trained:
        print(f"pretrained model and tokenizer: {os.path.abspath(out)}")
        print(f"fine-tune it:  python run_classification.py --model_name_or_path {os.path.abspath(out)} ...")


if __name__ == "__main__":
    main(sys.argv[1:])
