"""Training: a trial's state (state.py) and a lone trial's steps on it (trial.py), the one clustering loop
(cluster_epochs.py) with its two engines, a lone trial end to end (train.py) and a population (population/),
pretraining, a trial's records and times, and the trained model it leaves (model.py)."""
