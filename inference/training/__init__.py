"""Training, export and evaluation of the shipped demonstration models (torch; never on a worker).

`metrics`, `specs` and `data` are torch-free; `model`, `train`, `export` and `build` need torch.
"""
