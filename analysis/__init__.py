"""Reading a study into pandas and making sense of it: k-vs-C fit, Pareto fronts, report, export."""
