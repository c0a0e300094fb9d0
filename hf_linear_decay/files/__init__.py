"""File formats and readers, no torch: the schedule and record files (safetensors + metadata), atomic writes, the
record's pointer in a checkpoint, and the readers of the inputs users already have (trainer_state.json, CSV)."""
