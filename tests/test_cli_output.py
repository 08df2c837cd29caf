"""What the command line prints when all goes well, as a user sees it in a terminal of a given
width: whole model descriptions, titles on one line, "1 thread"."""

from __future__ import annotations

import re

from clitools import run_mgnm

from mgnm.models import MODELS


def test_models_shows_each_description_whole_within_the_width():
    res = run_mgnm("models", env={"COLUMNS": "80"})
    assert res.code == 0 and res.err == ""
    blocks: dict[str, list[str]] = {}
    for line in res.out.splitlines():
        assert len(line) <= 80, line
        if line.startswith(" "):
            blocks[list(blocks)[-1]].append(line.strip())
        else:
            blocks[line.split()[0]] = [line.split("]", 1)[1].strip()]
    assert list(blocks) == list(MODELS)
    for name, cls in MODELS.items():
        doc = cls.__doc__.split("\n\n")[0]  # the docstring's first paragraph, every word
        assert " ".join(blocks[name]).split() == doc.replace("``", "").split(), name
    # MMGCN's paragraph was cut after "(or nrm([P_m ; F_m]) for a"
    assert " ".join(blocks["mmgcn"]).endswith("s(u, i) = Z_u . Z_i.")


def test_train_and_evaluate_titles_stay_on_one_line_and_one_thread_is_singular(tiny_dir,
                                                                               tmp_path):
    run = tmp_path / "a-run-directory-with-a-rather-long-name-for-the-table"
    res = run_mgnm("train", "--model", "lightgcn", "--data", tiny_dir, "--set", "epochs=2",
                   "--set", "batch_size=64", "--threads", "1", "--out", run,
                   env={"COLUMNS": "60"})
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert re.match(r"training lightgcn on tiny \(cpu, 1 thread, [\d,]+ parameters, "
                    r"\d+ batches/epoch\)", res.err), res.err
    assert re.fullmatch(r"lightgcn on tiny: best epoch [12] of 2", res.out.splitlines()[0])
    res = run_mgnm("evaluate", run, env={"COLUMNS": "60"})
    assert res.code == 0, res.err
    assert res.out.splitlines()[0] == f"lightgcn: {run}"  # longer than the terminal: unbroken
