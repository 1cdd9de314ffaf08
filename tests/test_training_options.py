"""A training option is declared once: a field of TrainingOptions gives train.py's flag (name, type, default, help)
and its place in training_options.json."""
import dataclasses
from typing import Optional

from absl import flags

from tf3dstylegan import load_config
from tf3dstylegan.commands import train as train_command
from tf3dstylegan.training import loop
from tf3dstylegan.training.job import job_identity
from tf3dstylegan.training.options import CONDITIONAL_AUG_P, SMALL_DATA_AUG_P, SMALL_DATASET, TrainingOptions, option


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
    cfg = load_config("demo")
    opts = WithAnotherOption(**values).resolved(cfg)
    record = loop.options_record(cfg, opts, Trainer(), None, job_identity(cfg, None, opts))
    assert record["dummy_rate"] == 0.25 and record["dummy_mode"] == "a" and record["batch"] == cfg.batch_size


def test_every_option_has_a_flag_with_its_help_and_default():
    fv = flags.FlagValues()
    train_command.define_flags(fv)
    for field in dataclasses.fields(TrainingOptions):
        assert fv[field.name].help.endswith(field.metadata["help"]), field.name  # enums: absl prefixes the choices
        assert fv[field.name].default == field.default, field.name
    assert set(train_command.option_values(fv)) == {f.name for f in dataclasses.fields(TrainingOptions)}


def test_auto_augmentation_is_a_fixed_p_for_small_records_folders_higher_when_conditional_and_ada_speed_from_preset():
    demo, paper = load_config("demo"), load_config("2mm-fd16")
    assert TrainingOptions().aug == "auto"
    small = TrainingOptions().resolved(demo, num_volumes=32)
    assert (small.aug, small.aug_p) == ("fixed", SMALL_DATA_AUG_P)
    assert TrainingOptions().resolved(demo, num_volumes=SMALL_DATASET - 1).aug == "fixed"
    assert TrainingOptions().resolved(demo, num_volumes=SMALL_DATASET).aug == "none"
    assert TrainingOptions().resolved(demo, num_volumes=None).aug == "none"  # a dataset function: size unknown
    assert TrainingOptions(aug="none").resolved(demo, num_volumes=32).aug == "none"
    assert TrainingOptions(aug="ada").resolved(demo, num_volumes=5000).aug == "ada"
    assert TrainingOptions(aug="ada").resolved(demo, num_volumes=32).aug_p is None  # ada starts at 0 unless told
    assert TrainingOptions(aug_p=0.2).resolved(demo, 32).aug_p == 0.2
    assert TrainingOptions(aug_p=0.2).resolved(demo, SMALL_DATASET).aug == "none"
    conditional = demo.replace(label_size=3)  # the age edits need more augmentation (docs/ada.md, "The defaults")
    conditional_opts = TrainingOptions().resolved(conditional, 32)
    assert (conditional_opts.aug, conditional_opts.aug_p) == ("fixed", CONDITIONAL_AUG_P) != ("fixed", SMALL_DATA_AUG_P)
    assert TrainingOptions(aug_p=0.1).resolved(conditional, 32).aug_p == 0.1
    assert TrainingOptions().resolved(conditional, SMALL_DATASET).aug == "none"
    assert TrainingOptions(aug="ada").resolved(conditional, 32).aug_p is None
    assert TrainingOptions().resolved(demo, 32).ada_kimg == demo.ada_kimg == 10.0
    assert TrainingOptions().resolved(paper, 32).ada_kimg == paper.ada_kimg == 500.0  # stylegan2-ada's speed
    assert TrainingOptions(ada_kimg=3.0).resolved(demo, 32).ada_kimg == 3.0
    opts = TrainingOptions().resolved(demo, 32)
    job = job_identity(demo, None, opts)
    assert job["augment"] == {"aug": "fixed", "augpipe": "bc", "aug_p": SMALL_DATA_AUG_P}
    record = loop.options_record(demo, opts, Trainer(), None, job)
    assert (record["aug"], record["aug_p"]) == ("fixed", SMALL_DATA_AUG_P) and "ada_kimg" not in record
    ada = TrainingOptions(aug="ada").resolved(demo, 32)
    ada_job = job_identity(demo, None, ada)
    assert ada_job["augment"] == {"aug": "ada", "augpipe": "bc", "aug_target": 0.5, "ada_kimg": 10.0, "aug_p": None}
    assert loop.options_record(demo, ada, Trainer(), None, ada_job)["ada_kimg"] == 10.0


def test_a_preset_ada_speed_below_the_minimum_is_named():
    import pytest
    with pytest.raises(ValueError, match=r"^config field ada_kimg: must be >= 0.001, got 0.0$"):
        load_config("demo", ada_kimg=0.0)
