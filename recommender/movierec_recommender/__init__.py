"""movierec_recommender: package."""
