"""movierec_recommender: collaborative-filtering models, training, registry, serving, routing, online evaluation."""
