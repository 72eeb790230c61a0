"""Run by test_distributed.py under `torchrun --nproc_per_node 2`: train a few DDP steps with and without FGM
and R-Drop, count DDP's gradient all-reduces, and write each process's view to OUT/rank<r>.json.

    torchrun --nproc_per_node 2 tests/distributed_fgm.py MODEL_DIR OUT_DIR
"""

import json
import os
import sys

import numpy as np
import torch
from datasets import Dataset
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bertcls.config.training_arguments import ClassificationTrainingArguments  # noqa: E402
from bertcls.model.checkpoints import load_tokenizer  # noqa: E402
from bertcls.training.trainer import ClassificationTrainer  # noqa: E402


class CountAllReduces(TrainerCallback):
    """Wraps DDP's all-reduce in a hook that counts the gradient buckets it averages."""

    def __init__(self):
        self.trainer, self.calls = None, 0

    def hook(self, state, bucket):
        self.calls += 1
        return default_hooks.allreduce_hook(None, bucket)

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.model_wrapped.register_comm_hook(None, self.hook)


def rows(tokenizer):
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("好坏很不错差极了服务房间"), int(n))) for n in rng.integers(4, 20, 64)]
    enc = tokenizer(texts)
    return Dataset.from_dict({**enc, "label": [int("好" in t) for t in texts]})


def eval_loss_by_hand(model, dataset, tokenizer) -> float:
    """Mean cross-entropy over every row, in this process alone."""
    batch = DataCollatorWithPadding(tokenizer)([dataset[i] for i in range(len(dataset))])
    labels = batch.pop("labels")
    model.eval()
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(**batch).logits, labels))


def train(model_dir, out_dir, **options):
    tokenizer = load_tokenizer(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    args = ClassificationTrainingArguments(
        output_dir=out_dir,
        use_cpu=True,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        gradient_accumulation_steps=2,
        max_steps=3,
        learning_rate=1e-2,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        train_sampling_strategy="random",
        **options,
    )
    counter = CountAllReduces()
    trainer = ClassificationTrainer(
        model=model,
        args=args,
        train_dataset=rows(tokenizer),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[counter],
    )
    counter.trainer = trainer
    trainer.train()
    checksum = sum(float(p.detach().double().sum()) for p in trainer.model.parameters())
    # 32 rows = 2 processes x 2 batches of 8: no row is repeated to even out the shards.
    evaluation = rows(tokenizer).select(range(32))
    eval_loss = trainer.evaluate(evaluation)["eval_loss"]
    return {
        "all_reduces": counter.calls,
        "checksum": checksum,
        "steps": trainer.state.global_step,
        "eval_loss": eval_loss,
        "eval_loss_by_hand": eval_loss_by_hand(trainer.model, evaluation, tokenizer),
    }


if __name__ == "__main__":
    model_dir, out_dir = sys.argv[1:3]
    report = {
        "plain": train(model_dir, out_dir),
        "fgm_rdrop": train(model_dir, out_dir, adversarial="fgm", rdrop_alpha=1.0),
    }
    report["world_size"] = torch.distributed.get_world_size()
    with open(os.path.join(out_dir, f"rank{torch.distributed.get_rank()}.json"), "w") as f:
        json.dump(report, f)
