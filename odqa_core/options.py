"""The gate's options, declared once: the pytest plugin adds each as ``--odqa-<name>``, the CLI
commands that read baselines add the shared ones as ``--<name>``; defaults and help are the same.
Imports nothing heavy: the plugin reads it in every pytest session."""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CORRECTIONS", "GateOption", "GATE_OPTIONS", "add_pytest_options", "add_cli_options",
           "given_pytest_options"]

# multiple-comparison corrections: holm (family-wise error), bh (false discovery rate), none
CORRECTIONS = ("holm", "bh", "none")


@dataclass(frozen=True)
class GateOption:
    """One option: ``name`` (``baseline-dir``), help, default, and whether the CLI has it too."""

    name: str
    help: str
    default: Any = None
    flag: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    cli: bool = False

    @property
    def pytest_flag(self) -> str:
        return f"--odqa-{self.name}"

    @property
    def cli_flag(self) -> str:
        return f"--{self.name}"

    def kwargs(self) -> dict[str, Any]:
        if self.flag:
            return {"action": "store_true", "default": False, "help": self.help}
        kw: dict[str, Any] = {"default": self.default, "help": self.help}
        if self.choices:
            kw["choices"] = self.choices
        if self.metavar:
            kw["metavar"] = self.metavar
        return kw


GATE_OPTIONS: tuple[GateOption, ...] = (
    GateOption("profile", "baseline profile: baselines/<profile>/<suite>.json. Default: %(default)r", "quick",
               metavar="NAME", cli=True),
    GateOption("baseline-dir", "folder of baseline profiles. Default: baselines/ in the project root",
               metavar="DIR", cli=True),
    GateOption("strict", "fail on cells with no baseline or a refused comparison (on in CI). Default: off",
               flag=True, cli=True),
    GateOption("update-baselines", "write this run's records into the baseline files (refused if any test failed)",
               flag=True),
    GateOption("prune", "with an update: a written suite keeps only the cells this run recorded (tests renamed "
               "or removed lose their baseline)", flag=True),
    GateOption("no-gate", "record only; do not compare", flag=True),
    GateOption("correction", "multiple-comparison correction across the run. Default: from [tool.odqa_bench], "
               "else 'holm'", choices=CORRECTIONS, cli=True),
    GateOption("report", "write markdown, HTML, CSV, JUnit XML and plots comparing the run with its baseline, and "
               "let the suites write their tables and plots there (they write nothing otherwise)", metavar="DIR"),
    GateOption("save-run", "save this run's records (baseline format, all suites) for 'odqa-bench report'",
               metavar="FILE"),
    GateOption("data-dir", "data folder for named datasets. Default: $ODQA_DATA_DIR, else ../shared/data",
               metavar="DIR"),
    GateOption("encoder-backend", "the encoder backend that 'auto' stands for in this run (e.g. openvino-int8): "
               "the gate then says whether it moves any dense cell. Default: $ODQA_ENCODER_BACKEND, else the "
               "built-in rule", metavar="NAME"),
)


def add_pytest_options(group: Any) -> None:
    """Every gate option on a pytest option group, as ``--odqa-<name>``."""
    for opt in GATE_OPTIONS:
        group.addoption(opt.pytest_flag, **opt.kwargs())


def add_cli_options(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """The shared options (or those named) on an argparse parser, as ``--<name>``."""
    wanted = set(names) if names is not None else None
    for opt in GATE_OPTIONS:
        if (wanted is None and opt.cli) or (wanted is not None and opt.name in wanted):
            parser.add_argument(opt.cli_flag, **opt.kwargs())


def given_pytest_options(getoption: Any) -> list[str]:
    """The ``--odqa-*`` options whose value differs from the default (the plugin acts when any is)."""
    return [opt.pytest_flag for opt in GATE_OPTIONS
            if getoption(opt.pytest_flag) != (False if opt.flag else opt.default)]
