"""Ctrl-C (SIGINT) or SIGTERM during training: finish the step, save a checkpoint, stop cleanly.

The run then exits with status 130 and the same command with `--resume_from_checkpoint auto` continues it.
A second signal aborts at once. Under DDP every rank agrees on the stop, so no rank waits forever for another
that already stopped: an all-reduce of the flag every CHECK_EVERY steps (not every step: each one is a
collective and, on GPUs, a host sync), so a stop comes at most CHECK_EVERY - 1 steps after the signal.
"""

import logging
import signal
import sys

import torch
import torch.distributed as dist
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

INTERRUPTED_EXIT_CODE = 130  # the shell's code for a run ended by SIGINT
CHECK_EVERY = 10  # steps between the ranks' agreements on a stop under DDP


class GracefulInterrupt(TrainerCallback):
    def __init__(self):
        self.requested = False
        self.stopped_at_step: int | None = None
        self._previous = {}

    def install(self) -> "GracefulInterrupt":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def exit_if_stopped(self, output_dir: str) -> None:
        """After trainer.train(): a run stopped by a signal has saved a checkpoint and no final model or results;
        say how to continue it and exit with 130."""
        if self.stopped_at_step is None:
            return
        logger.warning(
            "interrupted at step %d; checkpoint saved in %s. Continue with the same command plus "
            "--resume_from_checkpoint auto",
            self.stopped_at_step,
            output_dir,
        )
        sys.exit(INTERRUPTED_EXIT_CODE)

    def _handle(self, signum, frame):
        if self.requested:  # second signal: the user means it
            self.uninstall()
            raise KeyboardInterrupt
        self.requested = True
        print(
            f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
            "(send it again to abort without saving)",
            file=sys.stderr,
            flush=True,
        )

    def _agreed(self, step: int) -> bool:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            if step % CHECK_EVERY:
                return False
            flag = torch.tensor([1.0 if self.requested else 0.0], device=_collective_device())
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return self.requested

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(state.global_step):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped_at_step is not None:  # the checkpoint is saved; skip the epoch-end evaluation and save
            control.should_evaluate = False
            control.should_save = False
        return control


def _collective_device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
