"""The Trainer integration: registration of `linear_refined`, the scheduler, `RefinementCallback`, the automatic
recorder of the flag alone, every private Trainer/DeepSpeed touch, and the norm measurement on every backend.
Importing this folder imports nothing heavy: `registration` is what `import hf_linear_decay` runs."""
