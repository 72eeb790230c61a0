"""TinyBERT's data augmentation for Chinese: new transfer-set texts made by replacing a share of a text's words
(jieba's segmentation) with a masked-LM's predictions.

Each chosen word's tokens are all masked at once (whole-word masking, as the Chinese-BERT-wwm checkpoints were
trained) and each masked token takes the masked-LM's most probable token other than the original one, so a chosen
word always changes. Which words change is drawn from a generator seeded by --seed: the same run makes the same
texts. The teacher labels the new texts (soft targets only); texts equal to an original, or to another new text,
are dropped and counted.
"""

import logging
import re

import numpy as np
import torch
from transformers import AutoModelForMaskedLM

from bertcls.errors import UserError
from bertcls.model.checkpoints import from_pretrained, load_tokenizer

logger = logging.getLogger(__name__)

WORD = re.compile(r"[\w\u4e00-\u9fff]")  # a word with a letter, digit or CJK character (not punctuation or space)


def load_masked_lm(name: str | None, teacher_path: str, cache_dir=None):
    """The masked-LM that proposes words and its tokenizer: `name`, or the teacher folder when it holds an MLM head."""
    source = name or teacher_path
    try:
        model, info = from_pretrained(AutoModelForMaskedLM, source, cache_dir=cache_dir)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(
            f"--augment_model: could not load a masked-LM from {source}: {str(e).splitlines()[0]}",
            fix="pass a masked-LM checkpoint (e.g. a `bertcls pretrain` folder, or hfl/chinese-bert-wwm-ext)",
        ) from None
    if info["missing_keys"]:
        what = "the teacher folder" if name is None else source
        raise UserError(
            f"--augment_copies needs a masked-LM, and {what} has no trained masked-LM head "
            f"({', '.join(sorted(info['missing_keys'])[:2])} missing)",
            fix="pass --augment_model CHECKPOINT (e.g. the checkpoint the teacher was fine-tuned from)",
        )
    return model.eval(), load_tokenizer(source)


class Augmenter:
    """`augmenter(texts, copies)` -> `copies` new versions of every text, in order (copy 0 of each text first)."""

    def __init__(self, model, tokenizer, share: float, seed: int, max_length: int = 128, batch_size: int = 32):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self.cut = jieba.lcut
        self.model, self.tokenizer = model, tokenizer
        self.share, self.max_length, self.batch_size = share, max_length, batch_size
        self.rng = np.random.default_rng(seed)
        self.device = next(model.parameters()).device
        # Never proposed: special tokens ([CLS], [MASK], [UNK] ...), which are not text.
        self.banned = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=self.device)

    def __call__(self, texts: list[str], copies: int) -> list[str]:
        jobs = [self._mask(text) for _ in range(copies) for text in texts]
        out = []
        for start in range(0, len(jobs), self.batch_size):
            out += self._fill(jobs[start : start + self.batch_size])
        return out

    def _mask(self, text: str):
        """The text's words, their tokens, and the words chosen for replacement (those within max_length)."""
        words = self.cut(text)
        pieces = [self.tokenizer.tokenize(w) for w in words]
        budget, ends, total = self.max_length - 2, [], 0
        for p in pieces:
            total += len(p)
            ends.append(total)
        candidates = [i for i, w in enumerate(words) if WORD.search(w) and pieces[i] and ends[i] <= budget]
        count = min(len(candidates), max(1, round(self.share * len(candidates)))) if candidates else 0
        chosen = set(self.rng.choice(candidates, size=count, replace=False).tolist()) if count else set()
        return words, pieces, chosen

    @torch.inference_mode()
    def _fill(self, jobs) -> list[str]:
        mask_id = self.tokenizer.mask_token_id
        batch_ids, positions = [], []
        for _, pieces, chosen in jobs:
            ids, where = [self.tokenizer.cls_token_id], {}
            for i, p in enumerate(pieces):
                piece_ids = self.tokenizer.convert_tokens_to_ids(p)
                if i in chosen:
                    where[i] = (len(ids), piece_ids)
                    ids += [mask_id] * len(p)
                else:
                    ids += piece_ids
            batch_ids.append(ids[: self.max_length - 1] + [self.tokenizer.sep_token_id])
            positions.append(where)
        width = max(map(len, batch_ids))
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch_ids], device=self.device)
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch_ids], device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention).logits.float()
        logits[:, :, self.banned] = -float("inf")
        texts = []
        for row, ((words, _, _), where) in enumerate(zip(jobs, positions)):
            new_words = list(words)
            for i, (start, original) in where.items():
                scores = logits[row, start : start + len(original)].clone()
                scores[torch.arange(len(original)), torch.tensor(original)] = -float("inf")  # always a change
                tokens = self.tokenizer.convert_ids_to_tokens(scores.argmax(-1).tolist())
                new_words[i] = "".join(t.removeprefix("##") for t in tokens)
            texts.append("".join(new_words))
        return texts


def new_texts(originals: list[str], augmented: list[str]) -> tuple[list[int], int]:
    """Indices of the augmented texts that are new (neither an original nor an earlier augmented text), and how many
    were dropped."""
    seen, keep = set(originals), []
    for i, text in enumerate(augmented):
        if text and text not in seen:
            seen.add(text)
            keep.append(i)
    return keep, len(augmented) - len(keep)
