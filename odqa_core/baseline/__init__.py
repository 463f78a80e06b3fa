"""Baseline store, gate settings, paired statistics and the regression gate."""
from __future__ import annotations

from .config import GateConfig, Tolerance, load_config
from .gate import Comparison, GateResult, GateWarning, fold_group, run_gate
from .stats import adjust, benjamini_hochberg, holm, mde, paired_test
from .store import SCHEMA_VERSION, Record, build_baseline, load_baseline, merge_cells, records_to_cells, write_baseline
from .update import update_baselines

__all__ = ["Comparison", "GateConfig", "GateResult", "GateWarning", "Record", "SCHEMA_VERSION", "Tolerance", "adjust",
           "benjamini_hochberg", "build_baseline", "fold_group", "holm", "load_baseline", "load_config", "mde",
           "merge_cells", "paired_test", "records_to_cells", "run_gate", "update_baselines", "write_baseline"]
