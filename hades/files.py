"""The names of the files hades reads and writes, and the columns of its CSV files.

One place, so a reader (the hub, the store, the catalogue, a report script) and the writer cannot
drift apart. Importing it costs nothing: the CLI's fast commands use it too.
"""

from __future__ import annotations

# A dataset or policy folder (the same folder a Hub repository holds).
DATASET_FILE = "dataset.safetensors"
POLICY_FILE = "policy.safetensors"
CARD_FILE = "README.md"
PARQUET_FILE = "data/train.parquet"  # the Hub viewer's copy of a dataset's pairs

# What a distillation run adds to its dataset folder.
FITNESS_CSV = "fitness.csv"
FITNESS_PLOT = "fitness.png"
STATES_PLOT = "states.png"
# The validation scores. Not "validation.csv": a file named after a split keyword (train, test,
# validation, ...) becomes a split of its own when the Hub and `datasets` infer the splits of a
# folder whose card has no `configs` block, next to data/train.parquet.
VALIDATION_CSV = "scores.csv"
LEGACY_VALIDATION_CSV = "validation.csv"  # what older runs wrote; a push sends it as VALIDATION_CSV
# commands.csv: the command that started the run, then each that resumed it (not part of the
# dataset's bytes, so a resumed run's dataset file is the uninterrupted one's).
COMMANDS_CSV = "commands.csv"
COMMANDS_COLUMNS = ("generation", "command")
CHECKPOINT_FILE = "checkpoint/state.msgpack"  # relative to the run's output folder

# What `train-from --save --video` adds to the folder of the policy it recorded (its card shows them).
REPLAY_GIF = "replay.gif"
REPLAY_MP4 = "replay.mp4"

# fitness.csv: one row per generation, the population's fitness (returns) and the run's cost so far.
FITNESS_COLUMNS = ("generation", "mean", "max", "min", "sigma", "episodes", "env_steps", "seconds")
# scores.csv: one row per validation, the returns of fresh inits trained on the ES mean, and the
# seconds it took (empty in the rows of runs validated before it was recorded).
VALIDATION_COLUMNS = ("generation", "mean", "std", "min", "max", "seconds")
# The fitness.csv `hades convert` writes for a result pickle of the original code (its curves
# hold the mean and the maximum only).
CONVERTED_FITNESS_COLUMNS = ("generation", "mean_fitness", "max_fitness")
# Where a fitness plot finds each curve: the column of FITNESS_COLUMNS, then that of a converted run.
FITNESS_CURVE_COLUMNS = {
    "generation": ("generation",),
    "mean": ("mean", "mean_fitness"),
    "max": ("max", "max_fitness"),
    "min": ("min",),
    "env_steps": ("env_steps",),
}
