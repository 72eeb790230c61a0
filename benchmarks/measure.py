"""What both sides of the benchmark measure, measured the same way on both.

- Training time: wall time from the end of warm-up step W to the end of step W + N (optimizer step, scheduler
  step and everything the loop does between steps included: data loading, collation, the baseline's per-batch
  metrics). Model loading, tokenization and the first W steps (lazy initialisation, the optimizer's state) are
  outside the window.
- Tokens: `attention_mask` of every training batch, summed on the device without a sync. Real tokens are its
  sum, all tokens its size; padding share = 1 - real / all, over the timed steps.
- Memory: the process's peak resident set (ru_maxrss), and the peak of any child processes (DataLoader workers).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("BERTCLS_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
VOCAB = os.path.join(SHARED, "vocab", "vocab.txt")
MODEL_SIZES = {  # layers, hidden, heads, feed-forward
    "tiny": (2, 128, 2, 512),
    "small": (4, 256, 4, 1024),
    "base": (12, 768, 12, 3072),
}


def build_model(size: str, vocab: str = VOCAB, env: dict | None = None) -> str:
    """A randomly initialised BERT of `size` with the real vocabulary, built once into .cache/ and reused.
    Speed does not depend on the weights, only on the shapes and the vocabulary (which sets the token lengths)."""
    layers, hidden, heads, ffn = MODEL_SIZES[size]
    folder = os.path.join(REPO, ".cache", "bench-models", size)
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        command = [sys.executable, "-m", "bertcls", "tiny-model", "--output_dir", folder, "--vocab_file", vocab]
        command += ["--num_layers", str(layers), "--hidden_size", str(hidden), "--num_heads", str(heads)]
        command += ["--intermediate_size", str(ffn)]
        subprocess.run(command, cwd=REPO, check=True, env=env, stdout=sys.stderr)
    return folder


def use_repo_package() -> None:
    """Import this checkout's `bertcls`, not an installed copy: `python benchmarks/x.py` puts benchmarks/ first."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)


def offline() -> None:
    """Before transformers or datasets is imported: never touch the Hub; this checkout's package."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    use_repo_package()


def fresh_workspace(prefix: str, tmp_dir: str | None, threads: int) -> tuple[str, str]:
    """A new temporary folder whose datasets cache is empty (so every stage really runs), offline, `threads` torch
    threads: (the folder, the tiny model). Call before datasets is imported."""
    work = tempfile.mkdtemp(prefix=prefix, dir=tmp_dir)
    os.environ.update(HF_DATASETS_CACHE=os.path.join(work, "datasets"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    offline()
    set_threads(threads)
    return work, build_model("tiny", VOCAB)


def child_env(threads: int, cache_dir: str) -> dict:
    """The environment of a measured child process: `threads` OpenMP/MKL threads, the same single-threaded
    tokenizer on every side, offline, and its own datasets cache (a fresh one: a side reads and tokenizes, never
    loads a cached result)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["HF_DATASETS_CACHE"] = cache_dir
    return env


def run_measured(name: str, command: list[str], threads: int, verbose: bool = False) -> dict:
    """Run `command --result_file FILE` once in a fresh process (child_env) and return the JSON it wrote, with its
    wall time and the load average before it started. Its output is shown with `verbose`, else only on failure."""
    with tempfile.TemporaryDirectory(prefix="bertcls-bench-") as tmp:
        result_file, log_file = os.path.join(tmp, "result.json"), os.path.join(tmp, "log.txt")
        env = child_env(threads, os.path.join(tmp, "datasets"))
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        load, start = os.getloadavg()[0], time.perf_counter()
        with open(log_file, "w") as log:
            output = None if verbose else log
            command = [*command, "--result_file", result_file]
            done = subprocess.run(command, cwd=REPO, env=env, stdout=output, stderr=output)
        if done.returncode != 0:
            with open(log_file) as log:
                raise SystemExit(f"[{name}] failed (exit {done.returncode}):\n{log.read()[-4000:]}")
        with open(result_file) as f:
            result = json.load(f)
    result.update(wall_seconds=round(time.perf_counter() - start, 1), load_average_before=load)
    return result


def seeded_task_parser(doc: str, tasks) -> argparse.ArgumentParser:
    """The flags of the benchmarks that train on the shared tasks over several seeds: --json, --seeds, --tasks."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the tables.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--tasks", nargs="+", choices=list(tasks), default=list(tasks))
    return parser


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads. The orchestrator also sets OMP_NUM_THREADS before the child starts."""
    import torch

    torch.set_num_threads(threads)


def peak_rss_mb() -> dict:
    """Peak resident memory of this process and of its (waited-for) children, e.g. DataLoader workers, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "children_peak_rss_mb": round(children, 1)}


def write_rows(source: str, path: str, rows: int) -> None:
    """`rows` data rows, the source's rows over and over, under the source's header line."""
    import itertools

    with open(source, encoding="utf-8") as f:
        header, *lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        out.write(header)
        out.writelines(itertools.islice(itertools.cycle(lines), rows))


def device_name(device) -> str:
    """The GPU's name for cuda, the CPU's model name otherwise."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor()


def synchronize(device) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize()


class TokenCounter:
    """Real and all tokens of each training batch, in step order. Sums stay on the device until read."""

    def __init__(self):
        self.real, self.total = [], []

    def add(self, attention_mask) -> None:
        self.real.append(attention_mask.sum())
        self.total.append(attention_mask.numel())

    def window(self, first: int, last: int) -> tuple[int, int]:
        """(real, all) tokens of batches first .. last - 1 (0-based)."""
        real = sum(int(x) for x in self.real[first:last])
        return real, sum(self.total[first:last])


class StepWindow:
    """Times training steps warmup + 1 .. warmup + steps: call step_done(k) after optimizer step k (1-based)."""

    def __init__(self, warmup: int, steps: int, device="cpu"):
        self.warmup, self.steps, self.device = warmup, steps, device
        self.start = self.end = None

    def step_done(self, step: int) -> None:
        if step == self.warmup:
            synchronize(self.device)
            self.start = (time.perf_counter(), time.process_time())
        elif step == self.warmup + self.steps:
            synchronize(self.device)
            self.end = (time.perf_counter(), time.process_time())

    def report(self, tokens: TokenCounter, batch_size: int) -> dict:
        """Throughput over the window. Batch k (0-based) is the input of step k + 1.

        CPU seconds (this process, all its threads; DataLoader workers not included) are less disturbed than wall
        time when other jobs share the cores: the knob table on a shared machine uses them as a second opinion."""
        if self.start is None or self.end is None:
            raise RuntimeError(f"the timing window did not close: ran fewer than {self.warmup + self.steps} steps")
        seconds, cpu_seconds = self.end[0] - self.start[0], self.end[1] - self.start[1]
        real, total = tokens.window(self.warmup, self.warmup + self.steps)
        return {
            "train_seconds": round(seconds, 3),
            "train_cpu_seconds": round(cpu_seconds, 3),
            "train_samples_per_cpu_s": self.steps * batch_size / cpu_seconds,
            "train_steps": self.steps,
            "warmup_steps": self.warmup,
            "train_samples_per_s": self.steps * batch_size / seconds,
            "real_tokens_per_s": real / seconds,
            "tokens_per_s": total / seconds,
            "real_tokens": real,
            "all_tokens": total,
            "padding_share": 1 - real / total if total else 0.0,
            "window_mean_length": real / (self.steps * batch_size),  # real tokens per row in the timed steps
        }


def encoder_parameters(model) -> int:
    """Parameters of the transformer layers (no embeddings, pooler or head): the N of the 6 * N * tokens rule."""
    base = getattr(model, model.base_model_prefix, model)
    encoder = getattr(base, "encoder", base)
    return sum(p.numel() for p in encoder.parameters())


def write_result(path: str, result: dict) -> None:
    result.update(peak_rss_mb())
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


def add_common_arguments(parser) -> None:
    """Flags both sides take, with the same meaning."""
    parser.add_argument("--model", required=True, help="Model folder (config.json, weights, vocab).")
    parser.add_argument("--train_file", required=True, help="Training data (.tsv/.txt tab-separated or .csv).")
    parser.add_argument("--text_column", default="text_a")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--batch_size", type=int, default=32, help="Training batch size.")
    parser.add_argument("--steps", type=int, default=100, help="Timed training steps.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed training steps before the timed ones.")
    parser.add_argument("--predict_rows", type=int, default=1200, help="Rows predicted (the first N training rows).")
    parser.add_argument("--predict_batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--result_file", required=True, help="Where to write the JSON result.")
