"""Helpers shared by the tests: run the CLI in-process, write a schedule file, make a trainer_state.json."""

import json

from hf_linear_decay.core.record import NormRecord
from hf_linear_decay.core.schedule import build_schedule
from hf_linear_decay.files.schedule_file import save_schedule_file
from hf_linear_decay.tools.cli import main


def run_cli(capsys, *argv):
    """`hf-linear-decay ARGV...` in this process: `(exit code, stdout, stderr)`."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def make_file(path, settings=None, **columns):
    """A schedule file at `path` refined from a record of `columns` (e.g. `grad_norm_l2=...`) with `settings`."""
    return save_schedule_file(build_schedule(NormRecord.from_columns(columns), settings), path)


def trainer_state(num_steps, logging_steps=1, norms=None, lrs=None, callback=None) -> dict:
    """A Trainer trainer_state.json's content: a `grad_norm` and LR logged every `logging_steps` (default: falling
    norms, linear decay), the end-of-training entry, and a RefinementCallback entry when given."""
    norms = norms if norms is not None else [1.0 + 1 / step for step in range(1, num_steps + 1)]
    lrs = lrs if lrs is not None else [0.1 * (1 - step / num_steps) for step in range(1, num_steps + 1)]
    history = [{"epoch": step / num_steps, "grad_norm": norms[step - 1], "learning_rate": lrs[step - 1], "loss": 2.0,
                "step": step} for step in range(logging_steps, num_steps + 1, logging_steps)]
    history.append({"epoch": 1.0, "step": num_steps, "total_flos": 1.0, "train_loss": 2.0, "train_runtime": 1.0})
    return {"global_step": num_steps, "log_history": history, "logging_steps": logging_steps, "max_steps": num_steps,
            "train_batch_size": 8, "stateful_callbacks": {} if callback is None else {"RefinementCallback": callback}}


def write_json(path, content):
    path.write_text(json.dumps(content))
    return path
