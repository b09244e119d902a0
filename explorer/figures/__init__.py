"""Plotly figures: Pareto fronts, pruning plans, EFTNAS fronts, search spaces and importance."""
