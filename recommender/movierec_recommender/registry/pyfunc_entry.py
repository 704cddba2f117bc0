"""MLflow models-from-code entry: logged with every model, it declares the pyfunc wrapper to load."""

import mlflow.models

from movierec_recommender.registry.pyfunc import RecommenderPyfunc

mlflow.models.set_model(RecommenderPyfunc())
