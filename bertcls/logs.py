"""Logging for the entry points: bertcls talks at INFO on the main process, replicas only warn."""

import logging
import sys

import datasets
import transformers


def setup_logging(training_args=None) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    main_process = training_args is None or training_args.process_index == 0
    logging.getLogger("bertcls").setLevel(logging.INFO if main_process else logging.WARNING)
    logging.getLogger("run_classification").setLevel(logging.INFO if main_process else logging.WARNING)
    if training_args is not None:
        level = training_args.get_process_log_level()
        datasets.utils.logging.set_verbosity(level)
        transformers.utils.logging.set_verbosity(level)
