"""Conditional training: the records' labels reach D with the reals, sampled labels reach G and D for fakes,
the encoding is saved with the run and inside every .keras generator; and ADA from the training command."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tf3dstylegan.training.options import CONDITIONAL_AUG_P, SMALL_DATA_AUG_P

REPO = Path(__file__).resolve().parent.parent
TINY = ["--override", "base_size=[2,2,3]", "--override", "resolution_log2=3", "--override", "fmap_min=4",
        "--override", "fmap_max=4", "--override", "latent_size=8", "--override", "dlatent_size=8",
        "--override", "mapping_fmaps=8", "--override", "mapping_layers=2", "--override", "tick_kimg=0.004"]


@pytest.fixture(scope="module")
def labelled_records(tmp_path_factory):
    from tf3dstylegan.data import RecordWriter
    from tf3dstylegan.data.labels import LabelEncoding, write_labels
    folder = tmp_path_factory.mktemp("labelled")
    rows = [{"age": 50.0 + 5 * i, "sex": "FM"[i % 2]} for i in range(8)]
    encoding = LabelEncoding.fit(["age", "sex"], ["continuous", "categorical"], rows)
    with RecordWriter(folder, resolution_log2=3, name="labelled") as writer:
        for volume in np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 6)).astype(np.float32):
            writer.write(volume)
    write_labels(folder, encoding.encode_rows(rows), encoding)
    return folder, encoding


@pytest.mark.slow
def test_the_step_feeds_labels_to_g_and_d(labelled_records):
    import tensorflow as tf
    import tf3dstylegan
    from tf3dstylegan.data import make_dataset
    from tf3dstylegan.data.labels import read_labels
    from tf3dstylegan.backend.tensorflow.state import build_state
    folder, encoding = labelled_records
    _, labels = read_labels(folder)
    cfg = tf3dstylegan.load_config("2mm-fd16", base_size=[2, 2, 3], resolution_log2=3, fmap_min=4, fmap_max=4,
                                   latent_size=8, dlatent_size=8, mapping_fmaps=8, mapping_layers=2,
                                   label_size=3, label_encoding=json.dumps(encoding.to_json()))
    strategy = tf.distribute.get_strategy()
    state = build_state(cfg, strategy, 4, 0, label_table=labels)
    seen = []
    call = state.D.call

    def recording_call(volumes, labels=None, checkpoint=None):
        seen.append(None if labels is None else tuple(labels.shape))
        return call(volumes, labels, checkpoint=checkpoint)
    state.D.call = recording_call
    batch = next(iter(make_dataset(folder, 4, with_labels=True)))
    embed_before = state.G.mapping.label_embed.numpy().copy()
    out = state.train_step(strategy.experimental_distribute_values_from_function(lambda ctx: batch), 0)
    assert all(np.isfinite(float(v)) for v in out.values())
    assert seen and all(shape == (4, 3) or shape == (2, 3) for shape in seen), seen  # every D call had labels
    assert not np.allclose(state.G.mapping.label_embed.numpy(), embed_before)  # G learns from its labels
    with pytest.raises(ValueError, match="label table"):
        build_state(cfg, strategy, 4, 0)


@pytest.mark.slow
def test_train_command_conditions_on_the_records_labels_and_saves_the_encoding(tmp_path, labelled_records):
    folder, encoding = labelled_records
    proc = subprocess.run([sys.executable, "train.py", "--cfg", "2mm-fd16", "--data", str(folder), "--outdir",
                           str(tmp_path), "--batch", "4", "--kimg", "0.008", *TINY], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "00000-2mm-fd16"
    options = json.loads((run / "training_options.json").read_text())
    assert options["labels"] and options["config"]["label_size"] == 3
    assert (options["aug"], options["aug_p"]) == ("fixed", CONDITIONAL_AUG_P)  # --aug auto, conditional, small
    import tf3dstylegan
    snapshot = sorted(run.glob("network-snapshot-*.keras"))[-1]
    G = tf3dstylegan.load_network(snapshot).G_ema
    assert json.loads(G.config.label_encoding)["covariates"][0]["name"] == "age"
    records = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(r["aug/p"] == pytest.approx(CONDITIONAL_AUG_P) for r in records)
    out = tmp_path / "gen"
    gen = subprocess.run([sys.executable, "generate.py", "--network", str(run), "--seeds", "0", "--cond",
                          "age=70,sex=F", "--outdir", str(out)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert gen.returncode == 0 and (out / "seed0000.nii.gz").is_file(), gen.stderr[-2000:]
    assert gen.stderr.strip() == "", gen.stderr[-2000:]  # a run folder loads quietly (no optimizer/rng warnings)
    unlabelled = subprocess.run([sys.executable, "train.py", "--cfg", "2mm-fd16", "--data", str(folder),
                                 "--outdir", str(tmp_path / "b"), "--nolabels", "--kimg", "0.004", "--batch", "4",
                                 *TINY], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert unlabelled.returncode == 0, unlabelled.stderr[-2000:]
    unlabelled_options = json.loads((tmp_path / "b" / "00000-2mm-fd16" / "training_options.json").read_text())
    assert unlabelled_options["labels"] is False and unlabelled_options["aug_p"] == SMALL_DATA_AUG_P  # auto
