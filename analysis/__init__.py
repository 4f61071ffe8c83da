"""Analysis of training runs against the theory: tables, figures, notebooks and `softhard report` (docs/analysis.md)."""
