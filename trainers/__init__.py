"""Training one stage of a cascade: trainer, EMA, checkpoints and resume, data sets, the train CLI."""
