"""Study runners: local (Optuna in-process) and ray (Ray Tune), with the same study semantics."""
