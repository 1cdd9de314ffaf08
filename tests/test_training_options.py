"""A training option is declared once: a field of TrainingOptions gives train.py's flag (name, type, default, help)
and its place in training_options.json."""
import dataclasses
from typing import Optional

from absl import flags

from tf3dstylegan import load_config
from tf3dstylegan.commands import train as train_command
from tf3dstylegan.training import loop
from tf3dstylegan.training.job import job_identity
from tf3dstylegan.training.options import TrainingOptions, option


@dataclasses.dataclass(frozen=True)
class WithAnotherOption(TrainingOptions):
    dummy_rate: Optional[float] = option(None, "A new option, declared only here.")
    dummy_mode: str = option("b", "Another one, with choices.", ("a", "b"))


class Trainer:
    description, num_replicas = "one device", 1


def test_a_new_field_is_a_flag_and_a_recorded_option():
    fv = flags.FlagValues()
    train_command.define_flags(fv, WithAnotherOption)
    assert fv["dummy_rate"].help == "A new option, declared only here." and fv["dummy_rate"].default is None
    assert isinstance(fv["dummy_mode"], flags.Flag) and fv["dummy_mode"].parser.enum_values == ["a", "b"]
    fv(["train.py", "--dummy_rate", "0.25", "--dummy_mode=a"])
    values = train_command.option_values(fv, WithAnotherOption)
    assert values["dummy_rate"] == 0.25 and values["dummy_mode"] == "a" and values["kimg"] is None
    opts = WithAnotherOption(**values)
    cfg = load_config("demo")
    record = loop.options_record(cfg, opts.resolved(cfg), Trainer(), None, job_identity(cfg, None, opts))
    assert record["dummy_rate"] == 0.25 and record["dummy_mode"] == "a" and record["batch"] == cfg.batch_size


def test_every_option_has_a_flag_with_its_help_and_default():
    fv = flags.FlagValues()
    train_command.define_flags(fv)
    for field in dataclasses.fields(TrainingOptions):
        assert fv[field.name].help.endswith(field.metadata["help"]), field.name  # enums: absl prefixes the choices
        assert fv[field.name].default == field.default, field.name
    assert set(train_command.option_values(fv)) == {f.name for f in dataclasses.fields(TrainingOptions)}
