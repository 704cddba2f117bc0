"""The recommender HTTP service: model loading and hot swap, answers within budget, metrics."""
