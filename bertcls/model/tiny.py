"""Make a small randomly initialised BERT offline: for tests, the demo and benchmarks.

    python -m bertcls tiny-model --output_dir .cache/tiny --vocab_file ../shared/data/vocab/vocab.txt
    python -m bertcls tiny-model --output_dir .cache/demo-model --vocab_from_files bertcls/demo/train.tsv

The folder looks like a pretrained checkpoint (config.json, model.safetensors, tokenizer files): the encoder
only, so fine-tuning adds a fresh classifier exactly as it does for hfl/chinese-bert-wwm-ext. The same
arguments and seed give the same weights.
"""

import os
import shutil
import sys
from dataclasses import dataclass, field

import torch
from transformers import BertConfig, BertModel, BertTokenizer, HfArgumentParser

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class TinyModelArguments:
    output_dir: str = field(metadata={"help": "Folder to write the model and tokenizer to."})
    vocab_file: str | None = field(default=None, metadata={"help": "A BERT vocab.txt to use as is."})
    vocab_from_files: list[str] | None = field(
        default=None, metadata={"help": "Text files whose characters make the vocabulary (a character vocabulary)."}
    )
    num_layers: int = field(default=2, metadata={"help": "Encoder layers."})
    hidden_size: int = field(default=128, metadata={"help": "Hidden size."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Feed-forward size (default 4 x hidden)."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Most tokens per input."})
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})
    vocab_only: bool = field(
        default=False,
        metadata={"help": "Write only vocab.txt + config.json + weights, like a converted Chinese checkpoint."},
    )


def character_vocab(paths: list[str]) -> list[str]:
    """Specials, every character of the files, and ## continuations for ASCII letters and digits."""
    chars = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            chars.update(f.read())
    chars = sorted(c for c in chars if not c.isspace())
    ascii_alnum = [c for c in chars if c.isascii() and c.isalnum()]
    return SPECIAL_TOKENS + chars + [f"##{c}" for c in ascii_alnum]


def make_tiny_bert(args: TinyModelArguments) -> str:
    """Write the tiny model to args.output_dir and return the folder."""
    os.makedirs(args.output_dir, exist_ok=True)
    vocab_path = os.path.join(args.output_dir, "vocab.txt")
    if args.vocab_file:
        shutil.copyfile(args.vocab_file, vocab_path)
    elif args.vocab_from_files:
        with open(vocab_path, "w", encoding="utf-8") as f:
            f.write("\n".join(character_vocab(args.vocab_from_files)) + "\n")
    else:
        raise SystemExit("error: pass --vocab_file or --vocab_from_files")
    tokenizer = BertTokenizer.from_pretrained(args.output_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        max_position_embeddings=args.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(args.seed)
    BertModel(config).save_pretrained(args.output_dir)
    if not args.vocab_only:
        tokenizer.model_max_length = args.max_position_embeddings
        tokenizer.save_pretrained(args.output_dir)
    return args.output_dir


def main(argv=None):
    (args,) = HfArgumentParser(TinyModelArguments).parse_args_into_dataclasses(args=argv)
    path = make_tiny_bert(args)
    print(f"tiny BERT ({args.num_layers} layers, hidden {args.hidden_size}) written to {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
