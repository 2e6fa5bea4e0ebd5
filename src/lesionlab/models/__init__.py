"""Models: the model-family registry (``families/``) and what the families are built from (backbones and their
weights, the Keras and PyTorch trainers, the stage modules train / transfer / tabular / ensemble), the run record
every family writes and the :class:`~lesionlab.models.predictor.Predictor` its loader returns."""
