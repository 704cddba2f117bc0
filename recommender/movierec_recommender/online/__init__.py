"""Online evaluation: what served recommendations earned (engagement, online RMSE), A/B tests, fairness."""
