"""Reads a run bundle's recipes the way the tools do (YAML, JSON) and lists what transformers' TrainingArguments accepts.

usage: recipe_check.py RECIPES_DIR
Prints one JSON object: every recipe file parsed, and from the transformers this runs on
(pyref's 4.44.0 with PYREF_TRANSFORMERS=4.44.0) the TrainingArguments field names, the optimizer
names (OptimizerNames) and the scheduler names (SchedulerType).
"""
import dataclasses
import json
import os
import sys

import transformers
import yaml
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

recipes = sys.argv[1]
files = {}
for name in sorted(os.listdir(recipes)):
    with open(os.path.join(recipes, name), encoding="utf-8") as f:
        files[name] = json.load(f) if name.endswith(".json") else yaml.safe_load(f)
print(json.dumps({
    "transformers": transformers.__version__,
    "files": files,
    "training_arguments": sorted(f.name for f in dataclasses.fields(transformers.TrainingArguments)),
    "optimizers": sorted(o.value for o in OptimizerNames),
    "schedulers": sorted(s.value for s in SchedulerType),
}))
