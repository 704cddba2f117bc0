"""The retraining pipeline (`movierec retrain`): gate, snapshot, fit, evaluate, log, register, promote."""
