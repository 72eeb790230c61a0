"""Docs that cannot drift: README.md, docs/*.md and recipes/README.md are checked against the code.

- every relative link and image resolves, #anchors included (GitHub's heading slugs);
- every `--flag` in a fenced shell block exists for the command it follows. The parsers are the real ones: each
  command's own `main` is called and the argparse parser it builds is taken before it parses anything;
- every ```json block is a recipe the real recipe parser accepts (```json pretrain: a `bertcls pretrain` recipe;
  ```json output: JSON a command prints or writes, only checked to be JSON);
- the README's copy-paste blocks run as written on a tiny model (slow): small data files are written where the
  blocks expect them, and only the model, the process count and the server port are substituted.
"""

import argparse
import functools
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from bertcls.cli import COMMANDS
from bertcls.config.recipes import make_parser, parse_args, run_dataclasses

from .conftest import REPO, shared

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "recipes" / "README.md"]
SHELL = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*(.*)$")


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


# ---------------------------------------------------------------------------------------------------- markdown


def blocks(text: str):
    """(info string, body, first line number) of every fenced code block."""
    lines, i = text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start, body = m.group(2), m.group(3).strip(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[0] * len(fence)):
            body.append(lines[i])
            i += 1
        yield info, "\n".join(body), start + 1
        i += 1


def prose(text: str, keep_code: bool = False) -> str:
    """The text outside fenced blocks (and outside inline code, unless keep_code), where links are links."""
    out, inside = [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m and (inside is None or m.group(2).startswith(inside)):
            inside = None if inside else m.group(2)
            out.append("")
            continue
        out.append("" if inside else line if keep_code else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters of any script, digits, _ and - stay),
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen, out = {}, set()
    for line in prose(path.read_text(encoding="utf-8"), keep_code=True).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*\b(?:src|href)=\"([^\"]+)\"")


def links(path: Path) -> list[str]:
    text = prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + HTML_LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_and_images_resolve(page):
    assert not broken_links(page), f"{page_id(page)}: broken links:\n" + "\n".join(broken_links(page))


# ------------------------------------------------------------------------------------------------- the parsers


class _Parsed(Exception):
    """Raised instead of parsing: carries the parser a command's main built."""


def parser_of(main, argv=("--help",)) -> argparse.ArgumentParser:
    """The argparse parser `main` builds, taken when it starts parsing (nothing after that runs)."""

    def grab(self, *args, **kwargs):
        raise _Parsed(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", grab):
        try:
            main(list(argv))
        except _Parsed as taken:
            return taken.args[0]
    raise AssertionError(f"{main.__module__}.main never parsed its arguments")


def option_names(parser: argparse.ArgumentParser, positionals=()) -> set[str]:
    names = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:  # a subcommand named on the line adds its own flags
        if isinstance(action, argparse._SubParsersAction):
            for word in positionals:
                if word in action.choices:
                    names |= option_names(action.choices[word])
    return names


@functools.cache
def training_parser() -> argparse.ArgumentParser:
    import run_classification

    return parser_of(run_classification.main)


@functools.cache
def tool_parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(COMMANDS[name][0])
    return parser_of(module.main)


@functools.cache
def benchmark_parser(script: str) -> argparse.ArgumentParser:
    path = REPO / script
    sys.path[:0] = [str(REPO / "benchmarks")]  # benchmarks import their sibling `measure`
    try:
        spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return parser_of(module.main)


@functools.cache
def launcher_parser(name: str) -> argparse.ArgumentParser:
    if name == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        return launch_command_parser()
    from torch.distributed.run import get_args_parser

    return get_args_parser()


@functools.cache
def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


# ----------------------------------------------------------------------------------------- commands in a block

SEPARATORS = {";", "&&", "||", "|", "&"}
# This repo's script (transformers' own examples/.../run_classification.py, which a page may quote, is not it).
TRAINING_SCRIPT = {"run_classification.py", "./run_classification.py"}
# Inline code that starts like this is a command too, and its flags are checked like a block's.
INLINE_COMMAND = re.compile(
    r"^(python3? (-m bertcls\b|run_classification\.py|benchmarks/)|bertcls |accelerate launch |bash scripts/)"
)
KEYWORDS = {"do", "then", "else", "time", "exec", "nice"}


def shell_commands(body: str):
    """Each simple command of a shell block as a token list (continuations joined, comments dropped)."""
    for line in re.sub(r"\\\n", " ", body).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        command = []
        for token in [*lexer, ";"]:
            if token in SEPARATORS:
                while command and (command[0] in KEYWORDS or re.match(r"^[A-Za-z_]\w*=", command[0])):
                    command.pop(0)
                if command:
                    yield command
                command = []
            else:
                command.append(token)


def launcher_split(name: str, tokens: list[str]):
    """Split `accelerate launch [flags] SCRIPT ...` / `torchrun [flags] SCRIPT ...`: bad launcher flags, the rest."""
    parser = launcher_parser(name)
    actions = parser._option_string_actions
    bad, i = [], 0
    while i < len(tokens) and tokens[i].startswith("-") and tokens[i] != "-m":
        flag = tokens[i].split("=")[0]
        action = actions.get(flag)
        if action is None:
            bad.append(f"{name}: unknown flag {flag}")
        i += 1
        if action is not None:
            takes_value = action.nargs != 0
        else:  # an unknown flag: take a following word that is not a flag or the script as its value
            takes_value = i < len(tokens) and not tokens[i].startswith("-") and not tokens[i].endswith(".py")
        if takes_value and "=" not in tokens[i - 1]:
            i += 1  # its value
    return bad, tokens[i:]


def placeholder(word: str) -> bool:
    """RECIPE, X, TASK, ...: a word the reader fills in, not a name to check."""
    return word == "..." or bool(re.fullmatch(r"[A-Z][A-Z_]*", word))


def check_command(tokens: list[str]) -> list[str]:
    """Problems with one command's flags: [] when every --flag exists for the command it is given to."""
    tokens = [t for t in tokens if t != "..."]
    head, rest = tokens[0], tokens[1:]
    if head in ("python", "python3") and rest[:1] == ["-m"]:
        if len(rest) > 1 and rest[1].startswith("bertcls.") and not placeholder(rest[1].split(".")[-1]):
            return [f"`{' '.join(tokens[:3])}`: write the command as `bertcls SUBCOMMAND` (bertcls/cli.py)"]
        if rest[1:2] == ["bertcls"]:
            return check_tool(rest[2:])
        return []
    if head in ("python", "python3") and rest and rest[0] in TRAINING_SCRIPT:
        return check_flags("run_classification.py", training_parser(), rest[1:])
    if head in ("python", "python3") and rest and re.match(r"^benchmarks/\w+\.py$", rest[0]):
        if placeholder(Path(rest[0]).stem):
            return []
        return check_flags(rest[0], benchmark_parser(rest[0]), rest[1:])
    if head == "bertcls":
        return check_tool(rest)
    if head in ("accelerate", "torchrun"):
        if head == "accelerate":
            if rest[:1] != ["launch"]:
                return []
            rest = rest[1:]
        bad, script = launcher_split(head, rest)
        if script[:1] == ["-m"] and script[1:2] == ["bertcls"]:
            return bad + check_tool(script[2:])
        if script and script[0] in TRAINING_SCRIPT:
            return bad + check_flags("run_classification.py", training_parser(), script[1:])
        return bad + ([f"{head}: launches {script[:1]}, which this test does not know"] if script else [])
    if head == "bash" and rest and rest[0] in ("scripts/run_recipe.sh", "scripts/run_pair_task.sh"):
        return check_flags(rest[0], training_parser(), rest[2:])  # after the recipe or task: run_classification's
    if head == "make":
        targets = [t for t in rest if not t.startswith("-") and "=" not in t]
        return [f"make: no target '{t}' in the Makefile" for t in targets if t not in make_targets()]
    return []


def check_tool(argv: list[str]) -> list[str]:
    if not argv or argv[0].startswith("-") or placeholder(argv[0]):
        return []
    if argv[0] not in COMMANDS:
        return [f"bertcls: no command '{argv[0]}' (bertcls/cli.py COMMANDS)"]
    return check_flags(f"bertcls {argv[0]}", tool_parser(argv[0]), argv[1:])


def check_flags(command: str, parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    positionals = [a for a in argv if not a.startswith("-")]
    known = option_names(parser, positionals)
    return [
        f"{command}: unknown flag {flag}"
        for flag in (a.split("=")[0] for a in argv if a.startswith("--"))
        if flag not in known
    ]


def shell_blocks(page: Path):
    for info, body, line in blocks(page.read_text(encoding="utf-8")):
        if info.split(" ")[0] in SHELL:
            yield body, line


def inline_commands(page: Path):
    """Inline code spans that are commands (`bertcls predict --input_file x`), with their line numbers."""
    for number, line in enumerate(prose(page.read_text(encoding="utf-8"), keep_code=True).splitlines(), 1):
        for span in re.findall(r"`([^`]+)`", line):
            if INLINE_COMMAND.match(span):
                yield span, number


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_flag_in_a_shell_block_exists_for_its_command(page):
    problems = [
        f"{page_id(page)}, {where} at line {line}: {problem}"
        for where, found in (("block", shell_blocks(page)), ("inline code", inline_commands(page)))
        for body, line in found
        for command in shell_commands(body)
        for problem in check_command(command)
    ]
    assert not problems, "\n".join(problems)


# -------------------------------------------------------------------------------------------------- json blocks


@functools.cache
def recipe_dataclasses(kind: str):
    if kind == "pretrain":
        from bertcls.pretrain import run as pretrain

        return pretrain.DATACLASSES
    return run_dataclasses()


def check_json_block(info: str, body: str, tmp_path: Path) -> None:
    """Parse a ```json block: as JSON, and unless marked `output`, as a recipe with the real recipe parser."""
    words = info.split()
    kind = words[1] if len(words) > 1 else "recipe"
    text = body.strip()
    if not text.startswith(("{", "[")):  # a fragment of a recipe: its keys, as they go inside the object
        text = "{" + text + "}"
    value = json.loads(text)
    if kind == "output":
        return
    assert kind in ("recipe", "pretrain"), f"unknown json block kind {kind!r} (recipe, pretrain or output)"
    dataclass_types = recipe_dataclasses(kind)
    path = tmp_path / "block.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    # A block may leave out what every run names (the model, output_dir): fill in placeholders for those alone.
    required = [a.dest for a in make_parser(dataclass_types)._actions if a.required and a.dest not in value]
    fillers = {"output_dir": str(tmp_path / "out")}
    argv = [str(path)] + [x for dest in required for x in (f"--{dest}", fillers.get(dest, "placeholder"))]
    parse_args(argv, dataclass_types=dataclass_types)


def json_blocks(page: Path):
    for info, body, line in blocks(page.read_text(encoding="utf-8")):
        if info.split(" ")[0] == "json":
            yield info, body, line


@pytest.mark.parametrize("page", [p for p in PAGES if any(json_blocks(p))], ids=page_id)
def test_every_json_recipe_block_parses(page, tmp_path):
    for info, body, line in json_blocks(page):
        try:
            check_json_block(info, body, tmp_path)
        except Exception as e:  # UserError (bad key or value), JSONDecodeError, SystemExit from argparse
            pytest.fail(f"{page_id(page)}, json block at line {line}: {type(e).__name__}: {e}")


# ------------------------------------------------------------------ the checks see what they should (fast, pure)


def test_the_checks_catch_a_broken_link_a_wrong_flag_and_a_bad_recipe_key(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading, with `code`\n", encoding="utf-8")
    page.write_text(
        "# Title\n[ok](there.md#a-heading-with-code) [self](#title) [gone](missing.md) [bad](there.md#nope)\n"
        "`[not a link](inline.md)`\n```bash\n[x](in-a-block.md)\n```\n",
        encoding="utf-8",
    )
    assert [b.split(":")[0] for b in broken_links(page)] == ["missing.md", "there.md#nope"]
    # flags: checked per command, the tool's own parser, the launcher's own flags, the old module form refused
    line = "python run_classification.py R.json --learning_rate 1 --learning_rte 2 && bertcls predict --input_fle x"
    problems = [p for c in shell_commands(line) for p in check_command(c)]
    assert problems == [
        "run_classification.py: unknown flag --learning_rte",
        "bertcls predict: unknown flag --input_fle",
    ]
    assert check_command(shlex.split("accelerate launch --num_procs 2 run_classification.py --do_eval")) == [
        "accelerate: unknown flag --num_procs"
    ]
    assert check_command(shlex.split("python -m bertcls.shipping.predict --model_name_or_path m"))
    assert not check_command(shlex.split("bash scripts/run_pair_task.sh lcqmc --seed 2"))
    assert check_command(shlex.split("bash scripts/run_pair_task.sh lcqmc --sed 2"))
    assert not check_command(shlex.split("python -m bertcls pretrain R.json --whole_word_mask"))
    # recipes: the real parser refuses an unknown key and a value of the wrong type
    with pytest.raises(Exception, match="num_train_epoch"):
        check_json_block("json", '{"num_train_epoch": 3}', tmp_path)
    with pytest.raises(Exception, match="learning_rate"):
        check_json_block("json", '"learning_rate": "fast"', tmp_path)
    check_json_block("json output", '{"anything": 1}', tmp_path)


# --------------------------------------------------------------------------- the README's blocks, run as written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_table(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)


def shared_table(*parts, rows: int) -> pd.DataFrame:
    return pd.read_csv(shared(*parts), sep="\t", quoting=3, dtype=str, keep_default_na=False).head(rows)


def readme_commands() -> list[list[str]]:
    """Every command of the README's shell blocks but `make` (make test would run this test again)."""
    return [c for body, _ in shell_blocks(README) for c in shell_commands(body) if c[0] != "make"]


def substitute(tokens: list[str], model: str, port: int) -> list[str]:
    """What a CPU test machine needs changed, and nothing else: the model, the process count, the port."""
    out = [model if t == "hfl/chinese-bert-wwm-ext" else t for t in tokens]
    out = [t.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for t in out]
    for i, t in enumerate(out[:-1]):
        if t == "--num_processes":
            out[i + 1] = "2"  # no GPUs here: 2 CPU processes over gloo
        if t == "--port":
            out[i + 1] = str(port)
    trains = any(t.endswith(("run_classification.py", "run_recipe.sh", "run_pair_task.sh")) for t in out)
    if trains and "--model_name_or_path" not in out:
        out += ["--model_name_or_path", model]  # the recipe names a Hub model
    return out


@pytest.mark.slow
def test_readme_blocks_run_as_written(tiny_model, tmp_path):
    # A checkout as a user has it, with their data where the README's commands expect it.
    for name in ("run_classification.py", "recipes", "scripts"):
        (tmp_path / name).symlink_to(REPO / name)
    # Few rows: the blocks must run, not learn (each command is a fresh process; most of its time is imports).
    reviews = shared_table("chnsenticorp", "train.tsv", rows=128).rename(columns={"text_a": "text"})
    write_table(tmp_path / "train.csv", reviews[:64])
    write_table(tmp_path / "dev.csv", reviews[64:96])
    write_table(tmp_path / "test.csv", reviews[96:])
    pairs = shared_table("lcqmc", "dev.tsv", rows=128)
    question_pairs = pairs.set_axis(["question1", "question2", "label"], axis=1)
    write_table(tmp_path / "pairs_train.csv", question_pairs[:96])
    write_table(tmp_path / "pairs_dev.csv", question_pairs[96:])
    for split, part in (("train", pairs[:64]), ("dev", pairs[64:96]), ("test", pairs[96:])):
        write_table(tmp_path / "data" / "lcqmc" / f"{split}.tsv", part)
    sentiment = shared_table("chnsenticorp", "dev.tsv", rows=128)
    for split, part in (("train", sentiment[:64]), ("dev", sentiment[64:96]), ("test", sentiment[96:])):
        write_table(tmp_path / "data" / "chnsenticorp" / f"{split}.tsv", part)

    bin_dir = os.path.dirname(sys.executable)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(tmp_path / "hf"),  # no accelerate default config of this machine's user
        "OMP_NUM_THREADS": "1",
    }
    port, server, log, answers = free_port(), None, None, []
    try:
        for tokens in readme_commands():
            command = substitute(tokens, tiny_model, port)
            if command[:2] == ["bertcls", "serve"]:
                log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (open while the server runs)
                server = subprocess.Popen(
                    command, cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True
                )
                wait_for(f"http://127.0.0.1:{port}/health", server, tmp_path / "serve.log")
                continue
            started = time.monotonic()
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            print(f"{time.monotonic() - started:6.1f} s  {shlex.join(tokens)[:100]}")  # shown with pytest -s
            assert done.returncode == 0, f"{shlex.join(tokens)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            if command[0] == "curl":
                answers.append(json.loads(done.stdout))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if log is not None:
            log.close()

    # what each job promises
    for folder in ("outputs/my-task", "outputs/my-pairs", "outputs/lcqmc/chinese-bert-wwm-ext"):
        assert (tmp_path / folder / "all_results.json").is_file(), folder
    assert (tmp_path / "outputs/chnsenticorp/chinese-bert-wwm-ext/all_results.json").is_file()
    assert (tmp_path / "outputs/my-task-onnx/model.onnx").is_file()
    predictions = pd.read_csv(tmp_path / "preds.csv", dtype=str, keep_default_na=False)
    assert len(predictions) == 32 and set(predictions["prediction"]) <= {"0", "1"}
    assert answers and len(answers[0]["predictions"]) == 1


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with status {process.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds} s")


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < 220, f"README.md has {lines} lines: move detail into docs/"


def test_the_committed_pictures_are_small_and_drawn_by_make_demo():
    from PIL import Image

    from bertcls.demo import figures

    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "bertcls.demo.figures outputs/demo docs/images" in makefile  # `make demo` redraws them
    for name in (*figures.FIGURES, figures.EXCERPT):
        path = REPO / "docs" / "images" / name
        with Image.open(path) as image:
            assert image.width <= 640, (name, image.size)
        assert path.stat().st_size <= figures.MAX_BYTES, (name, path.stat().st_size)


def test_the_analysis_excerpt_is_the_table_under_its_heading():
    from bertcls.demo.figures import markdown_table

    text = "# t\n\n## Most confident mistakes on test (2 of 9 rows wrong)\n\n| row | text |\n|---|---|\n| 3 | 好 |\n"
    text += "| 7 | 差 |\n\n## Next\n\n| x |\n|---|\n| y |\n"
    title, rows = markdown_table(text, "## Most confident mistakes on test")
    assert title == "Most confident mistakes on test (2 of 9 rows wrong)"
    assert rows == [["row", "text"], ["3", "好"], ["7", "差"]]
