"""The ``mgnm`` command line: a thin layer over :mod:`mgnm.api` and :mod:`mgnm.experiments`.

Errors caused by input (data, config, checkpoints) print one line and exit with status 2.
"""

from __future__ import annotations

import sys
import warnings

import click

from mgnm.cli import benchmark, compare, experiments, info, predict, serve, train
from mgnm.cli.prepare import features, prepare
from mgnm.cli.track import track
from mgnm.errors import MgnmError

AFTER_INTERRUPT = {
    "train": "interrupted (continue the run with `mgnm train --resume RUN_DIR`)",
    "experiment": "interrupted (run the same `mgnm experiment` command again: finished runs "
                  "are reused and interrupted ones resume)",
    "tune": "interrupted (run the same `mgnm tune` command again to continue the search: "
            "the interrupted trial is re-queued and resumes from its checkpoint)",
    "benchmark": "interrupted (run the same `mgnm benchmark` command again: the studies "
                 "continue, finished runs are reused and interrupted ones resume)",
    "serve": "stopped",
}


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"warning: {message}", file=sys.stderr)



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mgnm")
def cli() -> None:
    """MGNM and its baselines for multimodal recommendation on MMRec-format data."""



for _command in (train.train, train.evaluate, train.plot, info.info, info.models, info.presets,
                 predict.recommend, predict.export, predict.cold_split, predict.evaluate_cold,
                 serve.serve, experiments.experiment, experiments.tune, compare.compare,
                 benchmark.benchmark, benchmark.spaces,
                 prepare, features, track):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    try:
        rv = cli.main(args=argv, prog_name="mgnm", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except MgnmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:  # one line, like every other error
        where = exc.ctx.command_path if exc.ctx is not None else "mgnm"
        print(f"error: {exc.format_message()} (see '{where} --help')", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:  # an OS refusal the code did not name more precisely
        from mgnm.errors import os_error_message

        where = exc.filename if exc.filename is not None else "mgnm"
        print(f"error: {os_error_message(where, exc, 'failed')}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        args = sys.argv[1:] if argv is None else argv
        command = next((a for a in args if not a.startswith("-")), "")
        print(AFTER_INTERRUPT.get(command, "interrupted"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
