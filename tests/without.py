"""Run a module as if some packages were not installed: `python tests/without.py torch,datasets -m bertcls serve ...`.

Their top-level names are hidden from the path finder, so `import torch` fails and importlib.util.find_spec("torch")
is None (transformers and scipy then take their no-torch paths, as on a machine without it); nothing else changes.
"""

import importlib.machinery
import runpy
import sys

HIDDEN = set(sys.argv[1].split(","))


class Absent(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else super().find_spec(name, path, target)


sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = Absent
assert sys.argv[2] == "-m", "usage: without.py PACKAGES -m MODULE ARGS..."
sys.argv = sys.argv[3:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
