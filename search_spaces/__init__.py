"""Named search spaces: define-by-run functions over an optuna.Trial returning a TrialConfig."""
