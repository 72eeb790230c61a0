"""bertcls.pretrain.run: reading text, packing, masking (token-level and whole Chinese words), the sparse MLM head,
pretraining from scratch and from a checkpoint folder, resume, fine-tuning the result, and bad inputs."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import BertConfig, BertForMaskedLM

import run_classification
from bertcls.errors import UserError
from bertcls.model.checkpoints import load_tokenizer
from bertcls.pretrain import run as pretrain
from bertcls.pretrain.args import PretrainDataArguments, PretrainingArguments
from bertcls.pretrain.data import Packer, pack_blocks, read_texts, tokenize_texts, word_starts
from bertcls.pretrain.masking import MASK_STATS, BlockMaskingCollator, batch_seed
from bertcls.pretrain.trainer import MaskedLMTrainer

from .conftest import chnsenticorp, cli, make_tiny, shared

SENTENCE = "我们在北京大学读书"
# jieba 0.42.1's own segmentation of SENTENCE, written out here so the test pins it independently of our code.
SENTENCE_WORDS = ["我们", "在", "北京大学", "读书"]


@pytest.fixture(scope="module")
def vocab_tokenizer():
    return load_tokenizer(os.path.dirname(shared("vocab", "vocab.txt")))


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> str:
    """The first 240 ChnSentiCorp reviews as plain text, one per line."""
    path = tmp_path_factory.mktemp("text") / "reviews.txt"
    with open(shared("chnsenticorp", "train.tsv"), encoding="utf-8") as f:
        lines = [line.rstrip("\n").split("\t", 1)[1] for line in list(f)[1:241]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def pretrain_flags(out, **flags) -> list[str]:
    settings = {
        "max_seq_length": 32,
        "per_device_train_batch_size": 8,
        "max_steps": 4,
        "logging_steps": 2,
        "save_steps": 2,
        "learning_rate": 1e-3,
        "seed": 3,
        "output_dir": out,
        "report_to": "none",
        "disable_tqdm": True,
        **flags,
    }
    return cli(**settings)


# ---------------------------------------------------------------------------------------------------------------
# Reading and packing


def test_several_files_and_columns_are_read_and_empty_texts_counted(write, tmp_path):
    tsv = write("pairs.tsv", "text_a\ttext_b\tlabel\n今天天气好\t适合出门\t1\n价格便宜\t\t0\n")
    jsonl = write("news.jsonl", '{"sentence": "北京新闻", "label": 3}\n{"sentence": "体育快讯", "label": 4}\n')
    txt = write("raw.txt", "第一行\n\n   \n第二行, 有逗号\t和制表符\n")
    args = PretrainDataArguments(
        train_file=[tsv, jsonl, txt], text_column=["text_a", "text_b", "sentence"], validation_split_percentage=0
    )
    texts = read_texts(args, seed=1)
    assert list(texts) == ["train"]
    assert sorted(texts["train"]["text"]) == sorted(
        ["今天天气好", "价格便宜", "适合出门", "北京新闻", "体育快讯", "第一行", "第二行, 有逗号\t和制表符"]
    )  # an empty text_b cell and two blank lines skipped; labels never read


def test_from_task_reads_train_and_validation_text_but_test_text_only_when_asked(write, caplog):
    train = write("train.tsv", "text_a\ttext_b\tlabel\n问句一\t问句二\t1\n问句三\t问句四\t0\n")
    dev = write("dev.tsv", "text_a\ttext_b\tlabel\n问句七\t问句八\t1\n")
    test = write("test.tsv", "text_a\ttext_b\n问句五\t问句六\n")
    pairs = write("pairs.json", json.dumps({"model_name_or_path": "hfl/chinese-bert-wwm-ext", "train_file": train,
                                            "validation_file": dev, "test_file": test, "text_column": "text_a",
                                            "text_pair_column": "text_b", "learning_rate": 2e-5}))  # fmt: skip
    write("titles.txt", "标题甲\t7\n标题乙\t8\n")  # header-less label<TAB>text the other way round
    titles = write("titles.json", json.dumps({"model_name_or_path": "x", "train_file": "titles.txt",
                                              "column_names": ["text", "label"]}))  # fmt: skip
    args = PretrainDataArguments(from_task=[pairs, titles], validation_split_percentage=0)
    with caplog.at_level("INFO", logger="bertcls.pretrain.data"):
        texts = read_texts(args, seed=1)["train"]["text"]
    assert sorted(texts) == sorted(["问句一", "问句二", "问句三", "问句四", "问句七", "问句八", "标题甲", "标题乙"])
    assert f"--from_task {pairs}: texts of its train, validation split(s); not read: test" in caplog.text
    transductive = PretrainDataArguments(from_task=[pairs], validation_split_percentage=0, from_task_test_text=True)
    assert sorted(read_texts(transductive, seed=1)["train"]["text"]) == sorted(
        ["问句一", "问句二", "问句三", "问句四", "问句七", "问句八", "问句五", "问句六"]
    )


def test_from_task_with_only_test_data_says_how_to_read_it(write):
    write("titles.txt", "标题甲\t7\n标题乙\t8\n")
    titles = write("titles.json", json.dumps({"model_name_or_path": "x", "test_file": "titles.txt",
                                              "column_names": ["text", "label"]}))  # fmt: skip
    with pytest.raises(UserError, match="--from_task_test_text"):
        read_texts(PretrainDataArguments(from_task=[titles], validation_split_percentage=0), seed=1)


def test_held_out_texts_that_also_occur_in_the_training_text_are_removed(write):
    lines = [f"评论{i}号很好" for i in range(40)] * 2 + [f"独有的文本{i}" for i in range(40)]  # 40 texts twice
    corpus = write("corpus.txt", "\n".join(lines) + "\n")
    texts = read_texts(PretrainDataArguments(train_file=[corpus], validation_split_percentage=25), seed=3)
    held_out, trained = texts["validation"]["text"], set(texts["train"]["text"])
    assert held_out and not set(held_out) & trained and len(set(held_out)) == len(held_out)
    # Every text of the corpus is either trained on or held out (once); none is lost but the removed copies.
    assert set(held_out) | trained == set(lines)
    own = write("own.txt", "评论1号很好\n新的一句话\n新的一句话\n")
    texts = read_texts(PretrainDataArguments(train_file=[corpus], validation_file=[own]), seed=3)
    assert texts["validation"]["text"] == ["新的一句话"]


def test_recipe_json_reruns_from_any_folder_with_list_valued_relative_paths(tmp_path, monkeypatch):
    from bertcls.config.recipes import parse_args, recipe_of
    from bertcls.pretrain.run import DATACLASSES

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("第一条文本\n", encoding="utf-8")
    (data / "b.txt").write_text("第二条文本\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    argv = ["--tokenizer_name", os.path.relpath(os.path.dirname(shared("vocab", "vocab.txt")), tmp_path)]
    argv += ["--train_file", "data/a.txt", "data/b.txt", "--output_dir", "out", "--validation_split_percentage", "0"]
    recipe = recipe_of(*parse_args(argv, dataclass_types=DATACLASSES))
    assert recipe["train_file"] == [str(data / "a.txt"), str(data / "b.txt")]
    assert os.path.isabs(recipe["tokenizer_name"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "recipe.json").write_text(json.dumps(recipe))
    monkeypatch.chdir(elsewhere)
    _, data_args, _ = parse_args(["recipe.json"], dataclass_types=DATACLASSES)
    assert sorted(read_texts(data_args, seed=1)["train"]["text"]) == ["第一条文本", "第二条文本"]


def test_held_out_share_is_split_off_by_seed(reviews):
    args = PretrainDataArguments(train_file=[reviews], validation_split_percentage=10)
    texts = read_texts(args, seed=5)
    assert (len(texts["train"]), len(texts["validation"])) == (216, 24)
    again = read_texts(args, seed=5)
    assert again["validation"]["text"] == texts["validation"]["text"]


def test_packing_makes_full_blocks_without_padding(vocab_tokenizer):
    texts = ["这家酒店的服务很好", "房间太小了。", "早餐还可以，价格便宜", "hello world 2020年"] * 5
    tokenized, _ = tokenize_texts(Dataset.from_dict({"text": texts}), vocab_tokenizer, False, "train")
    blocks, stats = pack_blocks(tokenized, vocab_tokenizer, 16, "train")
    # The stream an independent reading gives: each text's tokens, then [SEP].
    stream = []
    for text in texts:
        stream += vocab_tokenizer(text, add_special_tokens=False)["input_ids"] + [vocab_tokenizer.sep_token_id]
    ids = np.array(blocks["input_ids"])
    assert ids.shape == (len(stream) // 14, 16)
    assert (ids[:, 0] == vocab_tokenizer.cls_token_id).all() and (ids[:, -1] == vocab_tokenizer.sep_token_id).all()
    assert not (ids == vocab_tokenizer.pad_token_id).any()
    assert ids[:, 1:-1].flatten().tolist() == stream[: ids.shape[0] * 14]
    assert stats.unused_tokens == len(stream) % 14


def test_packing_batches_each_leave_less_than_a_block(vocab_tokenizer):
    packer = Packer(block_size=8, cls_id=101, sep_id=102)
    import pyarrow as pa

    table = pa.table({"input_ids": pa.array([[1, 2, 3], [4, 5, 6, 7, 8], [9]], type=pa.list_(pa.int32()))})
    out = packer(table)  # stream 1 2 3 S 4 5 6 7 8 S 9 S: 12 tokens, 2 blocks of 6
    assert out["input_ids"].tolist() == [[101, 1, 2, 3, 102, 4, 5, 102], [101, 6, 7, 8, 102, 9, 102, 102]]


# ---------------------------------------------------------------------------------------------------------------
# Masking


def test_jieba_word_starts_follow_jiebas_segmentation(vocab_tokenizer):
    import jieba

    assert jieba.lcut(SENTENCE) == SENTENCE_WORDS  # the segmentation the next tests rely on
    encoded = vocab_tokenizer(SENTENCE, add_special_tokens=False, return_offsets_mapping=True)
    assert word_starts(SENTENCE, encoded["offset_mapping"]) == [1, 0, 1, 1, 0, 0, 0, 1, 0]
    # WordPiece pieces and digits stay inside the word jieba found for them.
    text = "2020年iPhone手机"
    encoded = vocab_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = vocab_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    starts = word_starts(text, encoded["offset_mapping"])
    words, current = [], ""
    for token, start in zip(tokens, starts):
        if start and current:
            words.append(current)
            current = ""
        current += token.removeprefix("##")
    words.append(current)
    assert words == [w.lower() for w in jieba.lcut(text)]


def sentence_block(tokenizer, copies: int) -> dict:
    """A block [CLS] SENTENCE [SEP] SENTENCE [SEP] ... with its word starts."""
    encoded = tokenizer(SENTENCE, add_special_tokens=False, return_offsets_mapping=True)
    ids = [tokenizer.cls_token_id]
    starts = [1]
    for _ in range(copies):
        ids += encoded["input_ids"] + [tokenizer.sep_token_id]
        starts += word_starts(SENTENCE, encoded["offset_mapping"]) + [1]
    return {"input_ids": ids, "word_start": starts}


def test_whole_word_masking_masks_every_character_of_a_chosen_word(vocab_tokenizer):
    collator = BlockMaskingCollator(vocab_tokenizer, mlm_probability=0.3, seed=0)
    rows = [sentence_block(vocab_tokenizer, 3) for _ in range(64)]  # each row gets its own draws
    batch = collator(rows)
    masked = (batch["labels"] != -100).numpy()
    # Token positions of each jieba word in each copy of the sentence, computed from the words themselves.
    spans, position = [], 1
    for _ in range(3):
        for word in SENTENCE_WORDS:
            spans.append(range(position, position + len(word)))
            position += len(word)
        position += 1  # [SEP]
    multi_char_words_masked = 0
    for row in masked:
        for span in spans:
            values = row[list(span)]
            assert values.all() or not values.any(), f"word {span} partly masked: {values}"
            multi_char_words_masked += bool(values.all() and len(span) > 1)
        assert not row[[0, 10, 20, 30]].any()  # [CLS] and [SEP] never
    assert multi_char_words_masked > 20
    # Every masked token's label is the original token.
    original = np.array([r["input_ids"] for r in rows])
    assert (batch["labels"].numpy()[masked] == original[masked]).all()
    stats = batch[MASK_STATS].sum(0).tolist()  # masked, in words of 2+ tokens, maskable
    assert stats[0] == masked.sum() and stats[2] == 64 * 27
    in_multi = sum(row[list(s)].sum() for row in masked for s in spans if len(s) > 1)
    assert stats[1] == in_multi


def test_masking_rates_token_level_and_whole_word(vocab_tokenizer):
    """15% of the tokens are chosen; of them 80% become [MASK], 10% a random token, 10% stay."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(256, 128)).tolist()
    collator = BlockMaskingCollator(vocab_tokenizer, mlm_probability=0.15, seed=1)
    for with_words in (False, True):
        rows = [{"input_ids": r} for r in ids]
        if with_words:  # words of 1-3 tokens
            rows = [dict(r, word_start=rng.choice([0, 1], size=128, p=[0.5, 0.5]).tolist()) for r in rows]
        batch = collator(rows)
        original = torch.tensor(ids)
        masked = batch["labels"] != -100
        share = masked.float().mean().item()
        assert 0.14 < share < 0.16, (with_words, share)
        as_mask = (batch["input_ids"] == vocab_tokenizer.mask_token_id) & masked
        unchanged = (batch["input_ids"] == original) & masked
        n = masked.sum().item()
        assert 0.77 < as_mask.sum().item() / n < 0.83
        assert 0.08 < unchanged.sum().item() / n < 0.12  # (a random token equal to the original counts here)
        assert torch.equal(batch["input_ids"][~masked], original[~masked])


def test_masks_come_from_the_batch_not_the_global_random_state(vocab_tokenizer):
    rows = [{"input_ids": list(range(1000 + 64 * i, 1064 + 64 * i))} for i in range(8)]
    collator = BlockMaskingCollator(vocab_tokenizer, seed=7)
    torch.manual_seed(1)
    first = collator(rows)["labels"]
    torch.manual_seed(2)
    assert torch.equal(collator(rows)["labels"], first)
    assert not torch.equal(collator(rows[::-1])["labels"], first.flip(0))  # another batch: other masks
    assert batch_seed(7, torch.tensor([[1, 2]])) != batch_seed(8, torch.tensor([[1, 2]]))


# ---------------------------------------------------------------------------------------------------------------
# The loss


@pytest.mark.parametrize("sparse", [True, False])
def test_loss_over_masked_tokens_equals_the_stock_mlm_loss(tmp_path, sparse):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0, attention_probs_dropout_prob=0)  # fmt: skip
    model = BertForMaskedLM(config)
    args = PretrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, eval_strategy="no")
    trainer = MaskedLMTrainer(model=model, args=args, sparse_mlm_head=sparse)
    assert (trainer.sparse is not None) == sparse
    ids = torch.randint(5, 300, (4, 16))
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(ids.shape) < 0.3
    labels[chosen] = ids[chosen]
    loss = trainer.compute_loss(model, {"input_ids": ids, "labels": labels})
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    if trainer.sparse is not None:
        trainer.sparse.remove()
    stock = model(input_ids=ids, labels=labels).loss  # transformers' own MLM loss over every position
    stock.backward()
    assert torch.allclose(loss, stock, atol=1e-6)
    for name, parameter in model.named_parameters():
        assert torch.allclose(ours[name], parameter.grad, atol=1e-6), name


@pytest.mark.parametrize("sparse", [True, False])
def test_accumulated_loss_with_num_items_in_batch_equals_the_stock_loss_over_all_masked_tokens(tmp_path, sparse):
    """The Trainer's path under gradient accumulation (and DDP): each micro-batch's loss is its masked tokens' sum
    over `num_items_in_batch`, the masked tokens of the whole accumulated batch. Summed over the micro-batches,
    loss and gradients must be the stock MLM loss of one batch holding all of them: each masked token weighs the
    same, however the tokens fall into micro-batches (here 2 and 9 masked tokens)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0, attention_probs_dropout_prob=0)  # fmt: skip
    model = BertForMaskedLM(config)
    args = PretrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, eval_strategy="no", gradient_accumulation_steps=2
    )
    trainer = MaskedLMTrainer(model=model, args=args, sparse_mlm_head=sparse)
    ids = torch.randint(5, 300, (4, 16))
    labels = torch.full_like(ids, -100)
    for row, column in [(0, 3), (1, 7), (2, 0), (2, 5), (2, 9), (2, 11), (3, 1), (3, 2), (3, 8), (3, 14), (3, 15)]:
        labels[row, column] = ids[row, column]
    micro = [slice(0, 2), slice(2, 4)]
    total = int((labels != -100).sum())
    assert total == 11
    loss = sum(
        trainer.compute_loss(model, {"input_ids": ids[m], "labels": labels[m]}, num_items_in_batch=torch.tensor(total))
        for m in micro
    )
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    if trainer.sparse is not None:
        trainer.sparse.remove()
    stock = model(input_ids=ids, labels=labels).loss  # transformers' own MLM loss: the mean over all 11 tokens
    stock.backward()
    assert torch.allclose(loss, stock, atol=1e-6)
    for name, parameter in model.named_parameters():
        assert torch.allclose(ours[name], parameter.grad, atol=1e-6), name


# ---------------------------------------------------------------------------------------------------------------
# End to end


def read_weights(folder) -> dict:
    return load_file(os.path.join(folder, "model.safetensors"))


@pytest.mark.slow
def test_from_scratch_then_run_classification_fine_tunes_the_folder_unchanged(reviews, tmp_path):
    vocab = os.path.dirname(shared("vocab", "vocab.txt"))
    out = tmp_path / "scratch"
    flags = {"tokenizer_name": vocab, "num_layers": 1, "hidden_size": 32, "num_heads": 2, "whole_word_mask": True}
    results = pretrain.main(pretrain_flags(out, train_file=reviews, **flags))
    assert 0.1 < results["masked_share"] < 0.2 and 0.3 < results["masked_in_multi_token_words"] < 0.9
    assert results["eval_perplexity"] > 1 and results["train_blocks"] > 100
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "all_results.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 32 and config["num_hidden_layers"] == 1
    pretrained = read_weights(out)

    # A learning rate of 1e-12 (0 is refused) keeps the encoder as loaded, to within ~1e-11 per step of AdamW: the
    # fine-tuned folder must hold the pretrained tensors (a fresh random encoder would differ by ~0.02).
    fine = tmp_path / "fine"
    scores = run_classification.main(
        chnsenticorp(out, fine, train=64, validation=32, test=32, max_seq_length=32, max_steps=2, learning_rate=1e-12)
    )
    assert scores["test_samples"] == 32
    tuned = read_weights(fine)
    encoder = [k for k in pretrained if k.startswith("bert.")]
    assert encoder and all(torch.allclose(tuned[k], pretrained[k], rtol=0, atol=1e-9) for k in encoder)


@pytest.mark.slow
def test_continued_pretraining_from_a_checkpoint_folder(reviews, tmp_path):
    checkpoint = make_tiny(tmp_path / "ckpt", vocab_only=True)  # config.json + weights + vocab.txt, no MLM head
    before = read_weights(checkpoint)
    out = tmp_path / "continued"
    results = pretrain.main(
        pretrain_flags(out, model_name_or_path=checkpoint, train_file=reviews, learning_rate=1e-12, max_steps=2)
    )
    assert results["eval_before_perplexity"] == pytest.approx(results["eval_perplexity"])  # lr 1e-12: unchanged
    after = read_weights(out)
    for name, tensor in before.items():  # encoder tensors (no `bert.` prefix in an encoder-only folder)
        if name.startswith("pooler."):
            assert f"bert.{name}" not in after  # a masked-LM model has no pooler (README)
        else:
            assert torch.allclose(after[f"bert.{name}"], tensor, rtol=0, atol=1e-9), name
    assert "cls.predictions.transform.dense.weight" in after

    # The output, MLM head included, continues in turn: its head is loaded, not made anew.
    again = tmp_path / "again"
    pretrain.main(pretrain_flags(again, model_name_or_path=str(out), train_file=reviews, learning_rate=1e-12))
    head = "cls.predictions.transform.dense.weight"
    assert torch.allclose(read_weights(again)[head], after[head], rtol=0, atol=1e-9)


@pytest.mark.slow
def test_resume_after_a_kill_matches_the_uninterrupted_run(reviews, tiny_model, tmp_path):
    flags = {"model_name_or_path": tiny_model, "train_file": reviews, "max_steps": 6, "save_steps": 3}
    whole = pretrain.main(pretrain_flags(tmp_path / "whole", **flags))
    killed = tmp_path / "killed"
    pretrain.main(pretrain_flags(killed, **flags))
    # What a run killed after its checkpoint at step 3 leaves behind: that checkpoint, no model, no results.
    shutil.rmtree(killed / "checkpoint-6")
    for name in glob.glob(str(killed / "*.*")):
        os.remove(name)
    with pytest.raises(SystemExit):  # the same command refuses to mix into the unfinished run
        pretrain.main(pretrain_flags(killed, **flags))
    resumed = pretrain.main(pretrain_flags(killed, **flags, resume_from_checkpoint="auto"))
    assert resumed["eval_perplexity"] == whole["eval_perplexity"]
    # train_results.json says which steps its loss and speeds cover: 4-6, the resumed part
    written = json.loads((killed / "train_results.json").read_text())
    assert (written["train_resumed_from_step"], written["train_steps_covered"], written["train_global_step"]) == (
        3,
        3,
        6,
    )
    assert "train_resumed_from_step" not in json.loads((tmp_path / "whole" / "train_results.json").read_text())
    reference = read_weights(tmp_path / "whole")
    assert all(torch.equal(tensor, reference[name]) for name, tensor in read_weights(killed).items())


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs


@pytest.fixture
def fails(capsys, tmp_path):
    """fails(*argv) -> the error line; asserts one line, exit status 2, no traceback, nothing finished."""

    def _fails(*argv):
        with pytest.raises(SystemExit) as exit_info:
            pretrain.main(list(argv))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and "Fix: " in lines[0], err[-2000:]
        assert not glob.glob(str(tmp_path / "**" / "all_results.json"), recursive=True)
        return lines[0]

    return _fails


def test_bad_inputs_are_one_line_errors(fails, tiny_model, reviews, write, tmp_path):
    out = str(tmp_path / "out")
    vocab = os.path.dirname(shared("vocab", "vocab.txt"))
    tsv = write("t.tsv", "label\ttext_a\n1\t很好\n")
    assert "no model given" in fails("--train_file", reviews, "--output_dir", out)
    assert "no text given" in fails("--model_name_or_path", tiny_model, "--output_dir", out)
    assert "--config_name builds a new model" in fails(
        "--model_name_or_path", tiny_model, "--config_name", tiny_model, "--train_file", reviews, "--output_dir", out
    )
    assert "--num_layers sets the size of a new model" in fails(
        "--model_name_or_path", tiny_model, "--num_layers", "2", "--train_file", reviews, "--output_dir", out
    )
    assert "t.tsv: no column 'text' (--text_column); its columns are ['label', 'text_a']" in fails(
        "--model_name_or_path", tiny_model, "--train_file", tsv, "--output_dir", out
    )
    assert "none of the text columns ['x', 'y']" in fails(
        "--model_name_or_path", tiny_model, "--train_file", tsv, "--text_column", "x", "y", "--output_dir", out
    )
    numbers = write("n.jsonl", '{"text": 1}\n{"text": 2}\n')
    assert "column 'text' holds int64 values, not text" in fails(
        "--model_name_or_path", tiny_model, "--train_file", numbers, "--output_dir", out
    )
    assert "data file is empty" in fails(
        "--model_name_or_path", tiny_model, "--train_file", write("e.txt", "\n"), "--output_dir", out
    )
    assert "data file not found" in fails(
        "--model_name_or_path", tiny_model, "--train_file", str(tmp_path / "nope.txt"), "--output_dir", out
    )
    assert "--max_seq_length 600 is over the limit" in fails(
        "--model_name_or_path", tiny_model, "--train_file", reviews, "--max_seq_length", "600", "--output_dir", out
    )
    assert "does not fill one block" in fails(
        "--tokenizer_name", vocab, "--train_file", write("short.txt", "很短\n太短了\n"), "--output_dir", out,
        "--validation_split_percentage", "0",
    )  # fmt: skip
    assert "--hidden_size 100 is not a multiple of --num_heads 3" in fails(
        "--tokenizer_name", vocab, "--hidden_size", "100", "--num_heads", "3", "--train_file", reviews,
        "--output_dir", out,
    )  # fmt: skip
    recipe = write("r.json", json.dumps({"model_name_or_path": tiny_model, "train_files": [reviews]}))
    assert "unknown key 'train_files'" in fails(recipe, "--output_dir", out)
    task = write("task.json", json.dumps({"model_name_or_path": "x", "train_file": "missing.tsv"}))
    assert "data file not found" in fails("--model_name_or_path", tiny_model, "--from_task", task, "--output_dir", out)
    assert "model folder not found" in fails(
        "--model_name_or_path", str(tmp_path / "nothing"), "--train_file", reviews, "--output_dir", out
    )


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_over_gloo_count_every_held_out_block_once(reviews, tiny_model, write, tmp_path):
    """accelerate launch -m bertcls pretrain on 2 CPU processes; the held-out perplexity it reports equals the one
    a single process computes for the saved model (accelerate repeats rows to even out the last batches)."""
    import socket
    import subprocess
    import sys

    from .conftest import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(shared("chnsenticorp", "dev.tsv"), encoding="utf-8") as f:  # reviews the training text lacks
        lines = [line.rstrip("\n").split("\t", 1)[1] for line in list(f)[1:]]
    held_out = write("held_out.txt", "\n".join(lines[:17]) + "\n")
    out = tmp_path / "two"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "recipes" / "accelerate" / "multi_gpu.yaml"), "--num_processes", "2",
               "--main_process_port", str(port), "-m", "bertcls", "pretrain",
               *pretrain_flags(out, model_name_or_path=tiny_model, train_file=reviews, validation_file=held_out,
                               per_device_train_batch_size=4, per_device_eval_batch_size=4)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((out / "all_results.json").read_text())
    assert two["validation_blocks"] % 8
    # The starting checkpoint was evaluated too; that used to leave the model out of DDP (see pretrain.main).
    assert two["eval_before_perplexity"] > two["eval_perplexity"]
    one = pretrain.main(
        pretrain_flags(tmp_path / "one", model_name_or_path=str(out), validation_file=held_out, do_train=False)
    )
    assert one["eval_masked_tokens"] == two["eval_masked_tokens"]
    assert one["eval_perplexity"] == pytest.approx(two["eval_perplexity"], rel=1e-5)
