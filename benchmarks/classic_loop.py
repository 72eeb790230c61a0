#!/usr/bin/env python
"""The baseline: the hand-written BERT fine-tuning loop of the classic walkthroughs, kept as they wrote it.

- every row tokenized up front, padded to the longest row of the whole dataset (512 tokens for ChnSentiCorp);
- TensorDataset + RandomSampler + DataLoader, all padded tensors held in memory;
- torch.optim.AdamW with parameter groups keyed `weight_decay_rate` (torch ignores that key: every parameter gets
  the default weight decay), get_linear_schedule_with_warmup, clip_grad_norm_ 1.0;
- per-batch training accuracy with scikit-learn on logits.detach().cpu().numpy(); fp32;
- prediction: unsorted batches of the padded tensors under torch.no_grad.

Run by benchmarks/run.py in its own process; see measure.py for what is timed.
"""

import argparse
import csv
import sys
import time

from measure import (
    StepWindow,
    TokenCounter,
    add_common_arguments,
    device_name,
    encoder_parameters,
    peak_rss_mb,
    set_threads,
    write_result,
)


def read_rows(path: str, text_column: str, label_column: str):
    import pandas as pd

    if path.endswith(".csv"):
        df = pd.read_csv(path)
    else:  # review texts contain `"`: tab-separated files are read with quoting off
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)
    texts = df[text_column].astype(str).tolist()
    labels = df[label_column]
    if labels.dtype.kind not in "iu":
        names = sorted(labels.astype(str).unique())
        labels = labels.astype(str).map({name: i for i, name in enumerate(names)})
    return texts, labels.to_numpy()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset
    from transformers import BertForSequenceClassification, BertTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device)
    result = {
        "side": "classic loop",
        "threads": args.threads,
        "device": str(device),
        "device_name": device_name(device),
    }

    # -- load + tokenize: every row, padded to the longest row of the dataset, kept as tensors ---------------
    start = time.perf_counter()
    texts, labels = read_rows(args.train_file, args.text_column, args.label_column)
    tokenizer = BertTokenizer.from_pretrained(args.model)
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    input_ids, attention_masks = encoded["input_ids"], encoded["attention_mask"]
    labels = torch.tensor(labels)
    dataset = TensorDataset(input_ids, attention_masks, labels)
    seconds = time.perf_counter() - start
    result.update(
        rows=len(texts),
        tokenize_seconds=round(seconds, 3),
        tokenize_rows_per_s=len(texts) / seconds,
        padded_length=int(input_ids.shape[1]),
        rss_after_tokenize=peak_rss_mb()["peak_rss_mb"],
    )

    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=int(labels.max()) + 1)
    model.to(device)
    result["encoder_params"] = encoder_parameters(model)

    # -- train ----------------------------------------------------------------------------------------------
    dataloader = DataLoader(dataset, sampler=RandomSampler(dataset), batch_size=args.batch_size)
    param_optimizer = list(model.named_parameters())
    no_decay = ["bias", "gamma", "beta"]
    optimizer_grouped_parameters = [
        {
            "params": [p for n, p in param_optimizer if not any(nd in n for nd in no_decay)],
            "weight_decay_rate": 0.01,
        },
        {"params": [p for n, p in param_optimizer if any(nd in n for nd in no_decay)], "weight_decay_rate": 0.0},
    ]
    optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=2e-5, eps=1e-8)
    total_steps = args.warmup + args.steps
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total_steps)

    window, tokens = StepWindow(args.warmup, args.steps, device), TokenCounter()
    step, total_loss, accuracies = 0, 0.0, []
    model.train()
    while step < total_steps:
        for batch in dataloader:
            b_input_ids, b_input_mask, b_labels = (t.to(device) for t in batch)
            tokens.add(b_input_mask)
            model.zero_grad()
            outputs = model(b_input_ids, token_type_ids=None, attention_mask=b_input_mask, labels=b_labels)
            loss = outputs.loss
            total_loss += loss.item()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            logits = outputs.logits.detach().cpu().numpy()
            label_ids = b_labels.to("cpu").numpy()
            accuracies.append(accuracy_score(label_ids, np.argmax(logits, axis=1)))
            step += 1
            window.step_done(step)
            if step == total_steps:
                break
    result.update(window.report(tokens, args.batch_size))
    result["train_loss"] = total_loss / step
    result["rss_after_train"] = peak_rss_mb()["peak_rss_mb"]

    # -- predict: unsorted batches of the padded tensors ----------------------------------------------------
    rows = min(args.predict_rows, len(dataset))
    predict_set = TensorDataset(input_ids[:rows], attention_masks[:rows], labels[:rows])
    predict_loader = DataLoader(
        predict_set, sampler=SequentialSampler(predict_set), batch_size=args.predict_batch_size
    )
    model.eval()
    predictions, true_labels = [], []
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in predict_loader:
        b_input_ids, b_input_mask, b_labels = (t.to(device) for t in batch)
        with torch.no_grad():
            outputs = model(b_input_ids, token_type_ids=None, attention_mask=b_input_mask)
        predictions.append(outputs.logits.detach().cpu().numpy())
        true_labels.append(b_labels.to("cpu").numpy())
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    accuracy = accuracy_score(np.concatenate(true_labels), np.argmax(np.concatenate(predictions), axis=1))
    result.update(
        predict_rows=rows,
        predict_seconds=round(seconds, 3),
        predict_rows_per_s=rows / seconds,
        predict_rows_per_cpu_s=rows / cpu_seconds,
        predict_accuracy=float(accuracy),
    )
    write_result(args.result_file, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
