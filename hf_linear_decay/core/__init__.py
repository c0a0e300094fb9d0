"""The maths and the records, numpy/scipy only: the norm table, `NormRecord`, the paper's refinement, the methods,
the schedule shapes. Nothing here imports torch, transformers or any other layer of the package."""
