"""The command line (`hf-linear-decay`) and what it shows: `inspect`'s summary, `plot`, `compare`. No torch."""
