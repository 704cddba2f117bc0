"""movierec_operator: the Kopf operator that rolls RecommenderModel versions out as canaries."""
