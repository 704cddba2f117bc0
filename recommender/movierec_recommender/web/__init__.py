"""The HTTP edge shared by the recommender and the router: replies, headers, admission, worker."""
