"""Overrides that make a training run take seconds: tiny crops and batches, no extras."""

TINY_RUN = [
    "run.tensorboard=false",
    "run.progress=false",
    "run.num_workers=0",
    "data.image_size=32",
    "data.heatmap_size=32",
    "train.batch_size=4",
]
# The same on a built-in benchmark of a few images a split.
TINY_BENCHMARK = [
    *TINY_RUN,
    "data.benchmark_sizes={source_train: 32, source_test: 8, target_train: 32, target_test: 8, target_val: 8}",
]
