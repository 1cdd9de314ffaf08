"""Notes on a records folder before training on it: fewer volumes than a batch, values outside [0, 1]."""
from tf3dstylegan.data.records import first_record


def data_notes(info, batch_size):
    """Lines to show before training on a records folder (its DatasetInfo, records.dataset_info) at `batch_size`
    (empty when all is as expected): the first record of every file is checked for values outside [0, 1]."""
    path, notes = info.path, []
    if info.num_volumes < batch_size:
        notes.append(f"note: {path} holds {info.num_volumes} volume(s), fewer than the batch of {batch_size}: "
                     f"every batch repeats them")
    for file in info.files:
        values = first_record(file)[1]
        low, high = float(values.min()), float(values.max())
        if not (0.0 <= low and high <= 1.0):
            notes.append(f"warning: {file}: its first record holds values {low:.4g} .. {high:.4g}, outside the "
                         f"[0, 1] the records store; training maps [0, 1] to [-1, 1]: remake the records with "
                         f"dataset_tool.py create-from-images3d --normalize percentile")
            break
    return notes
