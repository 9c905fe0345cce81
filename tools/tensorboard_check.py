#!/usr/bin/env python3
"""Reads the TensorBoard logs gradtape wrote with TensorBoard's own event loader and checks them
against the run's history.csv: an independent reader of gradtape's event files.

    .venv/bin/pip install tensorboard
    gradtape train --data data/digits.csv.gz --target digit --out OUT --logdir LOG
    .venv/bin/python tools/tensorboard_check.py train OUT LOG
    gradtape linreg --out OUT --logdir LOG
    .venv/bin/python tools/tensorboard_check.py linreg OUT LOG

Checks, for every epoch, that the scalars TensorBoard loads (their tags, steps and values)
equal the history.csv columns, that the learning rate is logged, and that the weight
histograms hold as many values as the weights have. Exits 1 with the first difference.
"""
import csv
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator


def fail(msg):
    print("tensorboard_check: " + msg)
    sys.exit(1)


def close(a, b, digits=None):
    # scalars are stored as float32; history.csv rounds some columns to `digits` decimals
    abs_tol = 0.5 * 10 ** -digits + 1e-7 if digits else 1e-7
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=abs_tol)


def main():
    kind, out, log = sys.argv[1], sys.argv[2], sys.argv[3]
    files = [f for f in os.listdir(log) if "tfevents" in f]
    if len(files) != 1:
        fail(f"expected one event file in {log}, found {files}")
    acc = event_accumulator.EventAccumulator(
        os.path.join(log, files[0]), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    acc.Reload()
    tags = acc.Tags()
    rows = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
    run = json.load(open(os.path.join(out, "run.json")))
    if kind == "train":
        columns = {"loss": "train_loss", "accuracy": "train_accuracy", "val_loss": "val_loss", "val_accuracy": "val_accuracy"}
        digits = {"accuracy": 4, "val_loss": 4, "val_accuracy": 4}
        weights = sum(1 for _ in tags["histograms"])
        if weights < 2:
            fail(f"expected a histogram per weight, got {tags['histograms']}")
        lr = run["lr"]
    else:
        columns = {"loss": "cost", "a": "a", "b": "b"}
        digits = {}
        rows = rows[:-1]  # the last row is the state after training
        if tags["histograms"] != ["weights"]:
            fail(f"expected the weights histogram, got {tags['histograms']}")
        lr = run["lr"]
    for tag, column in columns.items():
        if tag not in tags["scalars"]:
            fail(f"no {tag!r} scalar among {tags['scalars']}")
        events = acc.Scalars(tag)
        if [e.step for e in events] != list(range(len(rows))):
            fail(f"{tag}: steps {[e.step for e in events]} for {len(rows)} epochs")
        for e, row in zip(events, rows):
            if not close(e.value, float(row[column]), digits.get(tag)):
                fail(f"{tag} at step {e.step}: {e.value} in the log, {row[column]} in history.csv")
    for e in acc.Scalars("learning_rate"):
        if not close(e.value, lr):
            fail(f"learning_rate at step {e.step}: {e.value}, run.json says {lr}")
    for tag in tags["histograms"]:
        h = acc.Histograms(tag)
        if [e.step for e in h] != list(range(len(rows))):
            fail(f"histogram {tag}: steps {[e.step for e in h]}")
        if any(e.histogram_value.num <= 0 for e in h):
            fail(f"histogram {tag} is empty")
    print(
        f"tensorboard_check: {kind}: {len(tags['scalars'])} scalar tags and {len(tags['histograms'])} histograms"
        f" over {len(rows)} epochs match history.csv"
    )


main()
