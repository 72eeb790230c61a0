"""Dynamic masking of packed blocks: token-level (transformers' own masking) or whole Chinese words.

Why not DataCollatorForLanguageModeling(whole_word_mask=True) as it is (transformers 5.24): it finds words from
the tokenizer's offsets, where a word ends at a gap between characters. Chinese has no gaps: every character of a
sentence touches the next, so a whole clause counts as one word and is masked all at once. It also turns the
80/10/10 replacement off under whole-word masking (every chosen token becomes [MASK]). Here the words come from
jieba (bertcls.pretrain.data marks the first token of each word in `word_start`), whole words are chosen with
probability p each, so about p of the tokens are masked, and each chosen token then becomes [MASK] (80%), a
random token (10%) or stays (10%), as in Google's BERT and Chinese-BERT-wwm.

The random draws for a batch come from a generator seeded by the run's seed and the batch's tokens, not from the
global random state: a block gets new masks every epoch (its batch is shuffled anew), and a run resumed from a
checkpoint draws exactly the masks the uninterrupted run drew, with or without DataLoader workers.
"""

import hashlib

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

# Per row: tokens masked, of them tokens in words of 2+ tokens (all masked together), tokens that could be masked.
MASK_STATS = "mask_stats"


class BlockMaskingCollator(DataCollatorForLanguageModeling):
    """Stacks blocks of equal length (no padding) and masks them. Blocks that already carry `labels` (held-out
    blocks masked once by `mask_once`) are only stacked."""

    def __init__(self, tokenizer, mlm_probability: float = 0.15, seed: int = 42):
        super().__init__(tokenizer, mlm=True, mlm_probability=mlm_probability, seed=seed)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def torch_call(self, examples: list[dict]) -> dict:
        input_ids = torch.tensor([e["input_ids"] for e in examples], dtype=torch.long)
        if "labels" in examples[0]:
            return {"input_ids": input_ids, "labels": torch.tensor([e["labels"] for e in examples], dtype=torch.long)}
        self.generator = torch.Generator().manual_seed(batch_seed(self.seed, input_ids))
        special = torch.isin(input_ids, self.special_ids)
        if "word_start" in examples[0]:
            word_start = torch.tensor([e["word_start"] for e in examples], dtype=torch.bool)
            input_ids, labels, in_words = self.mask_whole_words(input_ids, word_start, special)
        else:
            input_ids, labels = self.torch_mask_tokens(input_ids, special_tokens_mask=special)
            in_words = torch.zeros_like(special)
        masked = labels != -100
        stats = torch.stack([masked.sum(1), (masked & in_words).sum(1), (~special).sum(1)], dim=1)
        return {"input_ids": input_ids, "labels": labels, MASK_STATS: stats}

    def mask_whole_words(self, inputs: torch.Tensor, word_start: torch.Tensor, special: torch.Tensor):
        """Choose each word with probability mlm_probability and mask all its tokens; then 80/10/10 per token.
        Returns the inputs, the labels (-100 where not masked) and which tokens belong to words of 2+ tokens."""
        labels = inputs.clone()
        # A word starts at a marked token, or at the first token after a special one ([CLS], [SEP]).
        after_special = torch.zeros_like(special)
        after_special[:, 1:] = special[:, :-1]
        starts = ~special & (word_start | after_special)
        # Number every word of the batch: a token's word is the last start at or before it.
        word_id = torch.cumsum(starts.flatten(), 0) - 1
        n_words = int(starts.sum())
        chosen = torch.zeros(n_words + 1, dtype=torch.bool)
        draw = torch.bernoulli(torch.full(starts.shape, self.mlm_probability), generator=self.generator).bool()
        chosen[word_id[(starts & draw).flatten()]] = True
        content = ~special.flatten()
        masked = (chosen[word_id.clamp(min=0)] & content).view_as(inputs)
        sizes = torch.bincount(word_id[content], minlength=n_words)
        in_words = (sizes[word_id.clamp(min=0)] >= 2).view_as(inputs) & ~special
        labels[~masked] = -100
        return self._replace(inputs, labels, masked) + (in_words,)

    def _replace(self, inputs: torch.Tensor, labels: torch.Tensor, masked: torch.Tensor):
        # The replacement rule of DataCollatorForLanguageModeling.torch_mask_tokens, for tokens chosen by word.
        replaced = torch.bernoulli(torch.full(inputs.shape, self.mask_replace_prob), generator=self.generator).bool()
        replaced &= masked
        inputs[replaced] = self.tokenizer.mask_token_id
        share = self.random_replace_prob / (1 - self.mask_replace_prob)
        randomized = torch.bernoulli(torch.full(inputs.shape, share), generator=self.generator).bool()
        randomized &= masked & ~replaced
        random_words = torch.randint(len(self.tokenizer), inputs.shape, dtype=torch.long, generator=self.generator)
        inputs[randomized] = random_words[randomized]
        return inputs, labels


def batch_seed(seed: int, input_ids: torch.Tensor) -> int:
    """A 63-bit seed from the run's seed and the batch's tokens."""
    digest = hashlib.blake2b(np.int64(seed).tobytes(), digest_size=8)
    digest.update(input_ids.numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


def mask_once(blocks, collator: BlockMaskingCollator, batch_size: int = 256):
    """Held-out blocks with fixed masks (`input_ids` masked, `labels`), so every perplexity is measured on the same
    predictions."""

    def mask(batch):
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        out = collator.torch_call(rows)
        return {"input_ids": out["input_ids"].int().tolist(), "labels": out["labels"].int().tolist()}

    return blocks.map(
        mask, batched=True, batch_size=batch_size, remove_columns=blocks.column_names, desc="Masking held-out blocks"
    )
